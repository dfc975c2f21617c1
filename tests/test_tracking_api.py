import gc
import json
import math
import re
import tracemalloc

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from teams.api_input import MAX_LIMIT
from tracking.history import log_history, read_history_page
from tracking.models import ArtifactCollection, MetricPoint, Run, RunMetric, create_version
from tracking.serializers import MAX_METRIC_TEXT

from .conftest import P, T
from .token_client import token_client

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
    # a later batch at the same step is the latest: MLflow clients log a step again to correct it
    api(bob).post(f"{P}/runs/r/history/", {"rows": [{"step": 10, "metrics": {"loss": 0.7}}]}, format="json")
    loss.refresh_from_db()
    assert (loss.last_step, loss.last_value, loss.count) == (10, 0.7, 3)


def test_a_batch_of_more_metrics_than_one_statement_holds_records_each(api, team, project, bob):
    """The metric records are written in statements of at most 999 parameters on SQLite (a
    standard build's limit; this one's is higher): 1,000 metrics in one row, twice, all kept."""
    api(bob).post(f"{P}/runs/", {"id": "r"}, format="json")
    for step in (1, 2):
        row = {"step": step, "metrics": {f"m{i:04}": float(i * step) for i in range(1000)}}
        with CaptureQueriesContext(connection) as captured:
            assert api(bob).post(f"{P}/runs/r/history/", {"rows": [row]}, format="json").status_code == 201
        upserts = [q for q in captured if q["sql"].startswith('INSERT INTO "tracking_runmetric"')]
        assert len(upserts) == (1 if connection.vendor == "postgresql" else 8)  # 142 metrics × 7 parameters
    records = RunMetric.objects.filter(run__run_id="r")
    assert records.count() == 1000
    assert set(records.values_list("count", "last_step").distinct()) == {(2, 2)}
    assert records.get(key="m0999").last_value == 1998.0


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
        ({"rows": [{"step": 1, "metrics": {"loss\n": 1}}]}, "metric name"),  # could never be asked for by name
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


# --- Hardening: non-finite values, text metrics, bounded reads, pagination, writable fields.


def client_for_pages(user):
    client = Client()
    assert client.login(username=user.username, password=f"{user.username}-password")
    return client


def snapshot_counts():
    return {m.__name__: m.objects.count() for m in (Run, MetricPoint, RunMetric)}


def post_raw(client, url, text):
    return client.post(url, data=text, content_type="application/json")


def test_json_nan_and_infinity_literals_are_kept_and_read_back_as_strings(team, project, bob):
    """Python's json.dumps writes NaN and Infinity literals; SPEC.md keeps them as logged."""
    c = token_client(bob)
    Run.objects.create(project=project, run_id="r", name="r")
    body = '{"rows": [{"step": 0, "metrics": {"loss": NaN, "up": Infinity, "down": -Infinity, "acc": 0.5}}, {"step": 1, "metrics": {"loss": 0.25}}]}'
    assert post_raw(c, f"{P}/runs/r/history/", body).json() == {"accepted": 2}
    history = c.get(f"{P}/runs/r/history/?keys=loss,up,down,acc")
    assert history.status_code == 200
    assert history.json() == {"loss": [[0, "NaN"], [1, 0.25]], "up": [[0, "Infinity"]], "down": [[0, "-Infinity"]], "acc": [[0, 0.5]]}
    assert RunMetric.objects.get(run__run_id="r", key="up").last_value is None  # never satisfies a condition
    assert c.get(f"{P}/runs/r/history/?samples=1").status_code == 200
    assert client_for_pages(bob).get("/acme/projects/vision/runs/r/").status_code == 200


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 400])
@pytest.mark.parametrize("where", ["summary", "config"])
def test_non_finite_and_out_of_range_numbers_are_refused_outside_history(team, project, bob, literal, where):
    c = token_client(bob)
    Run.objects.create(project=project, run_id="r", name="r")
    before = snapshot_counts()
    method, body = (c.patch, '{"summary": {"best": %s}}') if where == "summary" else (c.post, '{"id": "r2", "config": {"lr": %s}}')
    url = f"{P}/runs/r/" if where == "summary" else f"{P}/runs/"
    response = method(url, data=body % literal, content_type="application/json")
    assert response.status_code == 400
    assert f"{where}.{'best' if where == 'summary' else 'lr'}" in response.json()[where][0]
    assert snapshot_counts() == before and Run.objects.get(run_id="r").summary == {}


@pytest.mark.parametrize("literal", ["1e999", "-1e999", "9" * 400, "-" + "9" * 330])
def test_numbers_beyond_a_float_are_refused_in_history_naming_the_value(team, project, bob, literal):
    c = token_client(bob)
    Run.objects.create(project=project, run_id="r", name="r")
    body = '{"rows": [{"step": 0, "metrics": {"ok": 1}}, {"step": 1, "metrics": {"big": %s}}]}' % literal
    response = post_raw(c, f"{P}/runs/r/history/", body)
    assert response.status_code == 400
    assert response.json()["rows"][0].startswith("rows[1].metrics.big: the number")
    assert MetricPoint.objects.count() == 0 and c.get(f"{P}/runs/r/history/").json() == {}


TEXT_CLASSES = {
    "accents": "é", "quotes": '"', "backslashes": "\\", "emoji (astral, a surrogate pair in JSON)": "😀",
    "newlines": "\n", "cjk": "漢", "mixed": 'é"\\\n漢😀<>&\'',
}


@pytest.mark.parametrize("name", TEXT_CLASSES)
def test_text_metrics_are_kept_whole_up_to_the_documented_length(team, project, bob, name):
    """Before: cut at 256 bytes of JSON, so 150 é (900 escaped) broke every later read."""
    c = token_client(bob)
    Run.objects.create(project=project, run_id="r", name="r")
    unit = TEXT_CLASSES[name]
    longest = (unit * MAX_METRIC_TEXT)[:MAX_METRIC_TEXT]
    for ensure_ascii in (True, False):
        body = json.dumps({"rows": [{"step": 0, "metrics": {"note": longest}}]}, ensure_ascii=ensure_ascii)
        assert post_raw(c, f"{P}/runs/r/history/", body).status_code == 201
    assert c.get(f"{P}/runs/r/history/?keys=note").json() == {"note": [[0, longest], [0, longest]]}
    assert client_for_pages(bob).get("/acme/projects/vision/runs/r/").status_code == 200
    too_long = json.dumps({"rows": [{"step": 1, "metrics": {"note": longest + unit}}]})
    response = post_raw(c, f"{P}/runs/r/history/", too_long)
    assert response.status_code == 400 and f"kept up to {MAX_METRIC_TEXT} characters" in response.json()["rows"][0]
    assert MetricPoint.objects.count() == 2


def test_history_reads_at_most_a_page_per_metric_and_links_the_rest(team, project, bob):
    c = token_client(bob)
    run = Run.objects.create(project=project, run_id="r", name="r")
    # 25,002 loss points on even steps, with the step at the first page's edge logged twice;
    # acc on every 100th step. Steps need not be contiguous.
    rows = [{"step": 2 * i, "metrics": {"loss": float(i)}} for i in range(25_000)]
    rows += [{"step": 2 * 9_999, "metrics": {"loss": -1.0}}, {"step": 2 * 20_000, "metrics": {"loss": -2.0}}]
    rows += [{"step": s, "metrics": {"acc": s / 50_000}} for s in range(0, 50_000, 100)]
    for start in range(0, len(rows), 10_000):
        log_history(run, rows[start:start + 10_000])
    expected = {"loss": sorted((r["step"], r["metrics"]["loss"]) for r in rows if "loss" in r["metrics"]),
                "acc": [(s, s / 50_000) for s in range(0, 50_000, 100)]}
    got, url, pages = {"loss": [], "acc": []}, f"{P}/runs/r/history/?keys=loss,acc", 0
    while url:
        response = c.get(url)
        assert response.status_code == 200
        page = response.json()
        assert all(len(points) <= 10_000 for points in page.values())
        for key, points in page.items():
            got[key] += [tuple(p) for p in points]
        link = response.headers.get("Link")
        url = re.fullmatch(r'<(.+)>; rel="next"', link).group(1) if link else None
        pages += 1
    assert pages == 3
    assert sorted(got["loss"]) == expected["loss"] and got["loss"] == sorted(got["loss"], key=lambda p: p[0])
    assert got["acc"] == expected["acc"]


def test_history_range_selects_steps(team, project, bob):
    c = token_client(bob)
    run = Run.objects.create(project=project, run_id="r", name="r")
    log_history(run, [{"step": s, "metrics": {"loss": s / 10}} for s in range(100)])
    got = c.get(f"{P}/runs/r/history/?keys=loss&min_step=10&max_step=12").json()
    assert got == {"loss": [[10, 1.0], [11, 1.1], [12, 1.2]]}
    assert c.get(f"{P}/runs/r/history/?min_step=95").json() == {"loss": [[s, s / 10] for s in range(95, 100)]}
    assert c.get(f"{P}/runs/r/history/?keys=nothing").json() == {"nothing": []}


def test_samples_keep_each_buckets_first_minimum_and_maximum(team, project, bob):
    c = token_client(bob)
    run = Run.objects.create(project=project, run_id="r", name="r")
    values = {s: math.sin(s / 500) for s in range(20_000)}
    values[7_777], values[15_001] = 50.0, -50.0  # one-step spikes
    log_history(run, [{"step": s, "metrics": {"loss": v}} for s, v in values.items()])
    log_history(run, [{"step": 20_000, "metrics": {"loss": "NaN"}}])
    for samples in (1, 2, 3, 30, 300, 10_000):
        points = c.get(f"{P}/runs/r/history/?keys=loss&samples={samples}").json()["loss"]
        assert 1 <= len(points) <= samples
        assert points == sorted(points, key=lambda p: p[0]) and len({p[0] for p in points}) == len(points)
        assert all(values.get(step, "NaN") == value for step, value in points)  # real points, as logged
        if samples >= 2:
            assert [7_777, 50.0] in points and [15_001, -50.0] in points
        if samples >= 3:
            assert points[0] == [0, 0.0]
    assert len(c.get(f"{P}/runs/r/history/?keys=loss&samples=10000&min_step=19990").json()["loss"]) == 11


def test_downsampling_streams_rather_than_loading_the_history(team, project, bob):
    """100,000 points sampled to 300: peak memory stays far below the points' own size."""
    run = Run.objects.create(project=project, run_id="r", name="r")
    for start in range(0, 100_000, 50_000):
        log_history(run, [{"step": s, "metrics": {"loss": s % 1000 / 1000}} for s in range(start, start + 50_000)])
    tracemalloc.start()
    try:
        history, _ = read_history_page(run, ["loss"], samples=300)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(history["loss"]) <= 300
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB"  # the 100,000 rows as tuples would take ~17 MiB


@pytest.mark.parametrize(
    "query, field",
    [("samples=0", "samples"), ("samples=10001", "samples"), ("samples=x", "samples"), ("min_step=-" + "9" * 20, "min_step"),
     ("min_step=1e3", "min_step"), ("max_step=" + "9" * 30, "max_step"), ("min_step=5&max_step=4", "max_step"),
     ("keys=bad%0Akey", "keys"), ("keys=" + "k" * 251, "keys"), ("keys=" + ",".join(f"m{i}" for i in range(101)), "keys"), ("keys=a%00", "keys"),
     ("samples=NaN", "samples")],
)
def test_bad_history_parameters_are_refused_naming_them(team, project, bob, query, field):
    Run.objects.create(project=project, run_id="r", name="r")
    response = token_client(bob).get(f"{P}/runs/r/history/?{query}")
    assert response.status_code == 400 and field in response.json(), response.content


def test_list_limit_is_clamped_and_bad_limits_and_offsets_are_refused(team, project, bob):
    c = token_client(bob)
    for i in range(3):
        Run.objects.create(project=project, run_id=f"r{i}", name=f"r{i}")
    page = c.get(f"{P}/runs/?limit={10**30}")
    assert page.status_code == 200 and len(page.json()["results"]) == 3
    page = c.get(f"{P}/runs/?limit=1&offset=1").json()
    assert len(page["results"]) == 1 and "limit=1" in page["next"] and "offset=2" in page["next"]
    for query, field in [("limit=0", "limit"), ("limit=-1", "limit"), ("limit=abc", "limit"), ("limit=1.5", "limit"),
                         ("offset=-1", "offset"), ("offset=x", "offset"), (f"offset={2**70}", "offset"), ("limit=" + "9" * 200, "limit")]:
        response = c.get(f"{P}/runs/?{query}")
        assert response.status_code == 400 and field in response.json(), query


def test_limit_above_the_maximum_reads_as_the_maximum(team, project, bob):
    for i in range(MAX_LIMIT + 5):
        Run(project=project, run_id=f"r{i}", name=f"r{i}").save()
    page = token_client(bob).get(f"{P}/runs/?limit=5000").json()
    assert len(page["results"]) == MAX_LIMIT and f"limit={MAX_LIMIT}" in page["next"]


def test_patch_never_renames_a_run_nor_rewrites_its_config(team, project, bob):
    c = token_client(bob)
    run = Run.objects.create(project=project, run_id="r", name="r", config={"lr": 0.1})
    log_history(run, [{"step": 0, "metrics": {"loss": 1.0}}])
    for field, value in [("id", "renamed"), ("config", {"lr": 9}), ("user", "alice"), ("created_at", "2020-01-01T00:00:00Z"), ("url", "x")]:
        response = c.patch(f"{P}/runs/r/", {field: value, "name": "new name"}, format="json")
        assert response.status_code == 400 and "name, state, summary, tags" in response.json()[field][0]
    run.refresh_from_db()
    assert (run.run_id, run.name, run.config) == ("r", "r", {"lr": 0.1})
    assert c.get(f"{P}/runs/r/history/").json() == {"loss": [[0, 1.0]]}
    created = c.post(f"{P}/runs/", {"id": "r2", "state": "finished"}, format="json")
    assert created.status_code == 400 and "state" in created.json() and not Run.objects.filter(run_id="r2").exists()


@pytest.mark.parametrize("state", ["FINISHED", "Finished", "finished"])
def test_run_states_are_accepted_in_either_case(team, project, bob, state):
    Run.objects.create(project=project, run_id="r", name="r")
    response = token_client(bob).patch(f"{P}/runs/r/", {"state": state}, format="json")
    assert response.status_code == 200 and response.json()["state"] == "finished"


@pytest.mark.parametrize("state", ["done", "", "FINISHED ", None, ["finished"], {"state": "finished"}])
def test_a_bad_run_state_lists_the_valid_ones(team, project, bob, state):
    Run.objects.create(project=project, run_id="r", name="r")
    response = token_client(bob).patch(f"{P}/runs/r/", {"state": state}, format="json")
    assert response.status_code == 400
    assert "running, finished, failed, crashed, killed (either case)" in response.json()["state"][0]
    assert Run.objects.get(run_id="r").state == "running"


@pytest.mark.parametrize("method, path, body, status", [
    ("post", "runs/r/history/", {"rows": [{"step": s, "metrics": {"loss": 1 / (s + 1)}} for s in range(500)]}, 201),
    ("post", "runs/r/history/", {"rows": [{"step": -1, "metrics": {"loss": 1}}]}, 400),
    ("get", "runs/r/history/?keys=loss", None, 200),
])
def test_a_history_request_and_the_body_it_parsed_are_freed_with_the_response(team, project, bob, method, path, body, status):
    """No reference cycle keeps DRF's request (and the body it parsed) or its view past the
    response: with the collector off, none is left once the call returns. Kept in cycles, a
    history batch's rows waited for a full collection, which walked them all. (A view that hands
    the request to a serializer's context still leaves it to the collector: serializers and their
    fields refer to each other. Their bodies are small.)"""
    from rest_framework.request import Request
    from rest_framework.views import APIView

    c = token_client(bob)
    Run.objects.create(project=project, run_id="r", name="r")
    def alive():  # the objects themselves, so that none of their ids is reused meanwhile
        return {id(o): o for o in gc.get_objects() if isinstance(o, (Request, APIView))}

    gc.collect()
    gc.disable()
    try:
        before = alive()  # kept by earlier tests' objects, not by this call
        response = c.post(f"{P}/{path}", body, format="json") if method == "post" else c.get(f"{P}/{path}")
        left = [type(o).__name__ for ident, o in alive().items() if ident not in before]
    finally:
        gc.enable()
    assert response.status_code == status
    assert left == []
