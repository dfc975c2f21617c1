from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.e2e


def test_16_concurrent_version_creations_get_16_distinct_indexes(live):
    bob = live.session("bob")
    base = f"{live.url}/api/v1/teams/acme"
    assert bob.post(f"{base}/projects/", json={"name": "race"}).status_code == 201

    def create(i):
        return bob.post(f"{base}/projects/race/artifacts/", json={"name": "model", "type": "model", "metadata": {"i": i}})

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(create, range(16)))
    assert [r.status_code for r in responses] == [201] * 16, [r.text for r in responses if r.status_code != 201]
    assert sorted(r.json()["index"] for r in responses) == list(range(16))
    versions = bob.get(f"{base}/projects/race/artifacts/model/").json()["versions"]
    assert len(versions) == 16
    latest = [v["version"] for v in versions if "latest" in v["aliases"]]
    assert latest == ["v15"]


def test_concurrent_links_get_distinct_registry_indexes(live):
    bob = live.session("bob")
    base = f"{live.url}/api/v1/teams/acme"
    bob.post(f"{base}/projects/", json={"name": "linkrace"})
    for _ in range(8):
        bob.post(f"{base}/projects/linkrace/artifacts/", json={"name": "m", "type": "model"})
    bob.post(f"{base}/registries/", json={"name": "reg"})
    bob.post(f"{base}/registries/reg/collections/", json={"name": "c", "type": "model"})

    def link(i):
        return bob.post(f"{base}/registries/reg/collections/c/links/", json={"artifact": f"linkrace/m:v{i}"})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(link, range(8)))
    assert [r.status_code for r in responses] == [201] * 8
    assert sorted(r.json()["index"] for r in responses) == list(range(8))


def test_viewer_and_outsider_over_http(live):
    base = f"{live.url}/api/v1/teams/acme"
    assert live.session("vic").post(f"{base}/projects/", json={"name": "nope"}).status_code == 403
    assert live.session("charlie").get(f"{base}/projects/").status_code == 404
