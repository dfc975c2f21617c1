import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tracking.models import ArtifactCollection, MetricPoint, Run, RunMetric, create_version

from .conftest import P, T

pytestmark = pytest.mark.django_db

ROLE_STATUS = {  # who -> (read, write)
    "alice": (200, 201),
    "bob": (200, 201),
    "vic": (200, 403),
    "charlie": (404, 404),
}


def user(name):
    return get_user_model().objects.get(username=name)


@pytest.mark.parametrize("who", ROLE_STATUS)
def test_role_matrix_for_projects_runs_and_history(api, team, project, who):
    read, write = ROLE_STATUS[who]
    c = api(user(who))
    Run.objects.create(project=project, run_id="r1", name="r1")
    assert c.get(f"{T}/projects/").status_code == read
    assert c.get(f"{P}/runs/").status_code == read
    assert c.get(f"{P}/runs/r1/history/").status_code == read
    assert c.post(f"{T}/projects/", {"name": f"p-{who}"}, format="json").status_code == write
    assert c.post(f"{P}/runs/", {"id": f"run-{who}"}, format="json").status_code == write
    rows = {"rows": [{"step": 0, "metrics": {"loss": 1.0}}]}
    assert c.post(f"{P}/runs/r1/history/", rows, format="json").status_code == write
    assert c.patch(f"{P}/runs/r1/", {"state": "finished"}, format="json").status_code == (200 if write == 201 else write)


@pytest.mark.parametrize("who", ROLE_STATUS)
def test_role_matrix_for_artifacts_and_registries(api, team, project, registry, who):
    read, write = ROLE_STATUS[who]
    c = api(user(who))
    collection = ArtifactCollection.objects.create(team=team, project=project, name="mnist", type="model")
    create_version(collection)
    registry.collections.create(team=team, name="clf", type="model")
    assert c.get(f"{P}/artifacts/").status_code == read
    assert c.get(f"{P}/artifacts/mnist/versions/latest/").status_code == read
    assert c.get(f"{T}/registries/models/collections/clf/versions/").status_code == read
    assert c.post(f"{P}/artifacts/", {"name": "mnist", "type": "model"}, format="json").status_code == write
    assert c.post(f"{P}/artifacts/mnist/versions/v0/aliases/", {"alias": f"a-{who}"}, format="json").status_code == write
    assert c.post(f"{P}/artifacts/mnist/versions/v0/tags/", {"tag": f"t-{who}"}, format="json").status_code == write
    assert c.post(f"{T}/registries/", {"name": f"r-{who}"}, format="json").status_code == write
    link = c.post(f"{T}/registries/models/collections/clf/links/", {"artifact": "vision/mnist:v0"}, format="json")
    assert link.status_code == write


def test_run_creation_defaults_and_fields(api, team, project, bob):
    created = api(bob).post(f"{P}/runs/", {"config": {"lr": 0.1}, "tags": ["baseline"]}, format="json")
    assert created.status_code == 201
    run = created.json()
    assert run["state"] == "running" and run["user"] == "bob" and run["name"] == run["id"]
    assert run["config"] == {"lr": 0.1} and run["tags"] == ["baseline"] and run["summary"] == {}
    assert run["url"].endswith(f"/acme/projects/vision/runs/{run['id']}/")
    named = api(bob).post(f"{P}/runs/", {"id": "exp-1", "name": "first"}, format="json").json()
    assert (named["id"], named["name"]) == ("exp-1", "first")
    assert api(bob).post(f"{P}/runs/", {"id": "exp-1"}, format="json").status_code == 409
    patched = api(bob).patch(f"{P}/runs/exp-1/", {"state": "finished", "summary": {"acc": 0.9}}, format="json").json()
    assert patched["state"] == "finished" and patched["summary"] == {"acc": 0.9}


def test_history_round_trip_keeps_non_finite_values_as_logged(api, team, project, bob):
    api(bob).post(f"{P}/runs/", {"id": "r"}, format="json")
    rows = [{"step": 0, "metrics": {"loss": 0.9, "acc": 0.1}}, {"step": 5, "metrics": {"loss": "NaN", "note": "warmup"}}]
    response = api(bob).post(f"{P}/runs/r/history/", {"rows": rows}, format="json")
    assert response.status_code == 201 and response.json() == {"accepted": 2}
    history = api(bob).get(f"{P}/runs/r/history/?keys=loss,acc").json()
    assert history == {"loss": [[0, 0.9], [5, "NaN"]], "acc": [[0, 0.1]]}
    loss = RunMetric.objects.get(run__run_id="r", key="loss")
    assert (loss.last_step, loss.last_value, loss.count) == (5, None, 2)
    assert set(api(bob).get(f"{P}/runs/r/history/").json()) == {"loss", "acc", "note"}


def test_latest_values_follow_the_highest_step_across_batches(api, team, project, bob):
    api(bob).post(f"{P}/runs/", {"id": "r"}, format="json")
    api(bob).post(f"{P}/runs/r/history/", {"rows": [{"step": 10, "metrics": {"loss": 0.5}}]}, format="json")
    api(bob).post(f"{P}/runs/r/history/", {"rows": [{"step": 3, "metrics": {"loss": 0.9}}]}, format="json")
    loss = RunMetric.objects.get(run__run_id="r", key="loss")
    assert (loss.last_step, loss.last_value, loss.count) == (10, 0.5, 2)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"rows": []}, "non-empty"),
        ({"rows": "nope"}, "non-empty"),
        ({"rows": [{"metrics": {"a": 1}}]}, "row 0: step"),
        ({"rows": [{"step": -1, "metrics": {"a": 1}}]}, "row 0: step"),
        ({"rows": [{"step": True, "metrics": {"a": 1}}]}, "row 0: step"),
        ({"rows": [{"step": 1, "metrics": [1]}]}, "row 0: metrics"),
        ({"rows": [{"step": 1, "metrics": {"bad key": 1}}]}, "metric name"),
        ({"rows": [{"step": 1, "metrics": {"a": {"x": 1}}}]}, "must be a number"),
        ({"rows": [{"step": 1, "metrics": {"a": 1}, "timestamp": "yesterday"}]}, "timestamp"),
    ],
)
def test_bad_history_is_refused_naming_the_row(api, team, project, bob, body, message):
    Run.objects.create(project=project, run_id="r", name="r")
    response = api(bob).post(f"{P}/runs/r/history/", body, format="json")
    assert response.status_code == 400
    assert message in response.json()["rows"][0]
    assert MetricPoint.objects.count() == 0


def test_logging_1000_rows_costs_a_constant_number_of_queries(api, team, project, bob):
    run = Run.objects.create(project=project, run_id="r", name="r")
    client = api(bob)

    def log(n, start):
        rows = [{"step": start + i, "metrics": {"loss": 1.0 / (i + 1), "acc": i / n}} for i in range(n)]
        with CaptureQueriesContext(connection) as queries:
            assert client.post(f"{P}/runs/r/history/", {"rows": rows}, format="json").status_code == 201
        return len(queries)

    log(5, 0)  # first batch creates the per-metric records
    small, large = log(10, 100), log(1000, 1000)
    assert small == large, (small, large)
    assert MetricPoint.objects.filter(run=run).count() == 2 * (5 + 10 + 1000)


def test_artifact_versions_aliases_and_latest(api, team, project, bob):
    c = api(bob)
    v0 = c.post(f"{P}/artifacts/", {"name": "mnist", "type": "model", "aliases": ["best"], "metadata": {"acc": 0.9}}, format="json")
    assert v0.status_code == 201
    assert v0.json() | {"created_at": None, "id": None} == {
        "id": None, "name": "mnist", "type": "model", "version": "v0", "index": 0, "aliases": ["best", "latest"],
        "tags": [], "metadata": {"acc": 0.9}, "digest": "", "description": "", "created_by": "bob",
        "created_at": None, "run": None,
    }
    v1 = c.post(f"{P}/artifacts/", {"name": "mnist", "type": "model"}, format="json").json()
    assert (v1["version"], v1["aliases"]) == ("v1", ["latest"])
    assert c.get(f"{P}/artifacts/mnist/versions/v0/").json()["aliases"] == ["best"]
    # Adding an alias another version holds moves it.
    moved = c.post(f"{P}/artifacts/mnist/versions/v1/aliases/", {"alias": "best"}, format="json").json()
    assert moved["aliases"] == ["best", "latest"]
    assert c.get(f"{P}/artifacts/mnist/versions/v0/").json()["aliases"] == []
    assert c.get(f"{P}/artifacts/mnist/versions/best/").json()["version"] == "v1"
    # Tags: many versions may share one.
    c.post(f"{P}/artifacts/mnist/versions/v0/tags/", {"tag": "europe"}, format="json")
    c.post(f"{P}/artifacts/mnist/versions/v1/tags/", {"tag": "europe"}, format="json")
    detail = c.get(f"{P}/artifacts/mnist/").json()
    assert [(v["version"], v["tags"]) for v in detail["versions"]] == [("v1", ["europe"]), ("v0", ["europe"])]
    assert c.delete(f"{P}/artifacts/mnist/versions/v1/aliases/best/").status_code == 204
    assert c.delete(f"{P}/artifacts/mnist/versions/v0/tags/europe/").status_code == 204
    assert c.get(f"{P}/artifacts/mnist/versions/best/").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({"type": "model"}, "name"),
        ({"name": "mnist"}, "type"),
        ({"name": "mn ist", "type": "model"}, "name"),
        ({"name": "m" * 129, "type": "model"}, "name"),
        ({"name": "mnist", "type": "model", "metadata": [1]}, "metadata"),
        ({"name": "mnist", "type": "model", "aliases": ["v3"]}, "aliases"),
        ({"name": "mnist", "type": "model", "aliases": "best"}, "aliases"),
        ({"name": "mnist", "type": "model", "run": "missing"}, "run"),
        ({"name": "mnist", "type": "dataset"}, "type"),
    ],
)
def test_bad_artifact_input_names_the_field(api, team, project, bob, body, field):
    api(bob).post(f"{P}/artifacts/", {"name": "mnist", "type": "model"}, format="json")
    response = api(bob).post(f"{P}/artifacts/", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


def test_unknown_versions_and_aliases_are_404(api, team, project, bob):
    api(bob).post(f"{P}/artifacts/", {"name": "mnist", "type": "model"}, format="json")
    assert api(bob).get(f"{P}/artifacts/mnist/versions/v9/").status_code == 404
    assert api(bob).get(f"{P}/artifacts/mnist/versions/nope/").status_code == 404
    assert api(bob).post(f"{P}/artifacts/mnist/versions/v9/aliases/", {"alias": "x"}, format="json").status_code == 404
    assert api(bob).get(f"{P}/artifacts/other/").status_code == 404
    assert api(bob).post(f"{P}/artifacts/mnist/versions/v0/aliases/", {"alias": "bad alias"}, format="json").status_code == 400
    assert api(bob).post(f"{P}/artifacts/mnist/versions/v0/aliases/", {}, format="json").status_code == 400


def test_links_get_the_registry_collections_own_index_and_aliases(api, team, project, registry, bob):
    c = api(bob)
    for _ in range(3):
        c.post(f"{P}/artifacts/", {"name": "mnist", "type": "model"}, format="json")
    assert c.post(f"{T}/registries/models/collections/", {"name": "clf", "type": "model"}, format="json").status_code == 201
    links = f"{T}/registries/models/collections/clf/links/"
    first = c.post(links, {"artifact": "vision/mnist:v2", "aliases": ["production"]}, format="json")
    assert first.status_code == 201
    assert first.json()["version"] == "v0" and first.json()["artifact"] == "vision/mnist:v2"
    assert first.json()["aliases"] == ["latest", "production"]
    second = c.post(links, {"artifact": "vision/mnist:v0"}, format="json").json()
    assert (second["version"], second["index"]) == ("v1", 1)
    again = c.post(links, {"artifact": "vision/mnist:v2", "aliases": ["staging"]}, format="json")
    assert again.status_code == 200 and again.json()["version"] == "v0"
    versions = c.get(f"{T}/registries/models/collections/clf/versions/").json()
    assert versions["count"] == 2
    tagged = c.post(f"{T}/registries/models/collections/clf/versions/v0/tags/", {"tag": "europe"}, format="json")
    assert tagged.json()["tags"] == ["europe"]
    aliased = c.post(f"{T}/registries/models/collections/clf/versions/v1/aliases/", {"alias": "production"}, format="json")
    assert aliased.json()["aliases"] == ["latest", "production"]


@pytest.mark.parametrize(
    "body, status",
    [
        ({"artifact": "vision/mnist:v7"}, 400),
        ({"artifact": "nope/mnist:v0"}, 400),
        ({"artifact": "not a reference"}, 400),
        ({}, 400),
        ({"artifact": "vision/data:v0"}, 400),  # type mismatch
    ],
)
def test_bad_links_are_refused(api, team, project, registry, bob, body, status):
    c = api(bob)
    c.post(f"{P}/artifacts/", {"name": "mnist", "type": "model"}, format="json")
    c.post(f"{P}/artifacts/", {"name": "data", "type": "dataset"}, format="json")
    c.post(f"{T}/registries/models/collections/", {"name": "clf", "type": "model"}, format="json")
    response = c.post(f"{T}/registries/models/collections/clf/links/", body, format="json")
    assert response.status_code == status and "artifact" in response.json()


def test_malformed_json_and_wrong_types_are_400(api, team, project, bob):
    c = api(bob)
    response = c.post(f"{T}/projects/", data="{not json", content_type="application/json")
    assert response.status_code == 400 and "detail" in response.json()
    assert c.post(f"{T}/projects/", {"name": 5}, format="json").status_code in (201, 400)
    assert c.post(f"{T}/projects/", {"name": ["x"]}, format="json").status_code == 400
    assert c.post(f"{P}/runs/", {"config": "x"}, format="json").status_code == 400
    assert c.post(f"{P}/runs/", {"id": "bad id"}, format="json").status_code == 400
    assert c.patch(f"{P}/runs/nope/", {"state": "finished"}, format="json").status_code == 404
    Run.objects.create(project=project, run_id="r", name="r")
    assert c.patch(f"{P}/runs/r/", {"state": "exploded"}, format="json").status_code == 400
    assert c.post(f"{P}/runs/r/history/", data="[1,2]", content_type="application/json").status_code == 400
    assert c.post(f"{T}/projects/", {"name": "vision"}, format="json").status_code == 409


def test_schema_and_docs_are_served(api, alice, team):
    assert api(alice).get("/api/schema/").status_code == 200
    assert api(alice).get("/api/docs/").status_code == 200
