"""The MLflow endpoints through Django's request handling with a real token header: MLflow's
shapes and error codes, the mapping onto native objects, and the events they record."""

import base64
import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from events.models import Event
from mlflow_server.models import Experiment
from tracking.models import ArtifactCollection, MetricPoint, Project, Run, create_version, link_version

pytestmark = pytest.mark.django_db
API = "/mlflow/acme/api/2.0/mlflow"
ARTIFACTS = "/mlflow/acme/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def ml(team):
    """ml(user) -> call(method, path, body=None, **query) -> (status, JSON), with the user's token."""

    def make(username):
        token = Token.objects.get_or_create(user=get_user_model().objects.get(username=username))[0].key

        def call(method, endpoint, body=None, raw=None, **query):
            client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
            url = endpoint if endpoint.startswith("/") else f"{API}/{endpoint}"
            if method == "GET":
                response = client.get(url, query)
            else:
                data = raw if raw is not None else json.dumps(body or {})
                response = getattr(client, method.lower())(url, data, content_type="application/json")
            content = b"".join(response.streaming_content) if response.streaming else response.content
            try:
                return response.status_code, json.loads(content)
            except ValueError:
                return response.status_code, content

        return call

    return make


@pytest.fixture
def as_bob(ml):
    return ml("bob")


def new_run(call, experiment="0", **fields):
    status, body = call("POST", "runs/create", {"experiment_id": experiment, "start_time": 1_700_000_000_000, **fields})
    assert status == 200, body
    return body["run"]["info"]["run_id"]


def events(kind):
    return Event.objects.filter(type=kind).count()


# --- The door


def test_unknown_endpoints_answer_endpoint_not_found_in_json(as_bob, ml):
    for method, path in [("GET", "nope"), ("GET", "runs/create"), ("POST", "traces"), ("GET", "/mlflow/acme/"),
                         ("GET", "/mlflow/"), ("GET", "/mlflow/acme/ajax-api/2.0/mlflow/runs/get"), ("DELETE", "runs/get")]:
        status, body = as_bob(method, path)
        assert (status, body["error_code"]) == (404, "ENDPOINT_NOT_FOUND"), (method, path)


def test_authentication_is_a_tripline_token_as_bearer_or_basic(team, as_bob):
    anonymous = Client().get(f"{API}/experiments/get", {"experiment_id": "0"})
    assert anonymous.status_code == 401 and anonymous.json()["error_code"] == "UNAUTHENTICATED"
    assert "Bearer" in anonymous["WWW-Authenticate"]
    token = Token.objects.get_or_create(user=team.members.get(username="bob"))[0].key

    def basic(user, password):
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    for header, status in [(f"Bearer {token}", 200), (f"Token {token}", 200), (basic("bob", token), 200), (basic("alice", token), 401),
                           ("Bearer nope", 401), (basic("bob", "bob-password"), 401), ("Basic !!!", 401), ("Digest x", 401)]:
        response = Client(HTTP_AUTHORIZATION=header).get(f"{API}/experiments/get", {"experiment_id": "0"})
        assert response.status_code == status, header


def test_roles_viewers_read_members_write_outsiders_see_nothing(ml):
    run_id = new_run(ml("bob"))
    assert ml("vic")("GET", "runs/get", run_id=run_id)[0] == 200
    status, body = ml("vic")("POST", "runs/log-metric", {"run_id": run_id, "key": "x", "value": 1, "timestamp": 1})
    assert (status, body["error_code"]) == (403, "PERMISSION_DENIED")
    status, body = ml("charlie")("GET", "runs/get", run_id=run_id)
    assert (status, body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert MetricPoint.objects.count() == 0


# --- Experiments


def test_every_project_is_an_experiment_and_free_text_names_get_a_slug(as_bob, project):
    status, body = as_bob("GET", "experiments/get-by-name", experiment_name="vision")
    assert status == 200 and body["experiment"]["experiment_id"] == str(project.pk)
    assert body["experiment"]["artifact_location"] == f"mlflow-artifacts:/{project.pk}"
    status, body = as_bob("GET", "experiments/get-by-name", experiment_name="Digits / 2024")
    assert (status, body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    status, body = as_bob("POST", "experiments/create", {"name": "Digits / 2024", "tags": [{"key": "owner", "value": "bob"}]})
    assert status == 200
    made = Project.objects.get(pk=int(body["experiment_id"]))
    assert made.name == "Digits-2024"
    assert as_bob("POST", "experiments/create", {"name": "Digits / 2024"})[1]["error_code"] == "RESOURCE_ALREADY_EXISTS"
    assert as_bob("POST", "experiments/create", {"name": "vision"})[1]["error_code"] == "RESOURCE_ALREADY_EXISTS"
    status, body = as_bob("GET", "experiments/get-by-name", experiment_name="Digits / 2024")
    assert body["experiment"]["tags"] == [{"key": "owner", "value": "bob"}]


def test_the_default_experiment_is_zero_and_made_on_first_use(as_bob, team):
    run_id = new_run(as_bob)  # the client falls back to experiment "0"
    status, body = as_bob("GET", "experiments/get", experiment_id="0")
    assert body["experiment"]["name"] == "Default" and body["experiment"]["experiment_id"] == "0"
    assert as_bob("GET", "runs/get", run_id=run_id)[1]["run"]["info"]["experiment_id"] == "0"
    assert Experiment.objects.filter(team=team, is_default=True).count() == 1
    assert as_bob("POST", "experiments/delete", {"experiment_id": "0"})[1]["error_code"] == "INVALID_PARAMETER_VALUE"


def test_deleting_an_experiment_deletes_its_runs_and_restoring_brings_back_only_those(as_bob):
    experiment = as_bob("POST", "experiments/create", {"name": "exp"})[1]["experiment_id"]
    kept_deleted, restored = new_run(as_bob, experiment), new_run(as_bob, experiment)
    as_bob("POST", "runs/delete", {"run_id": kept_deleted})
    assert as_bob("POST", "experiments/delete", {"experiment_id": experiment})[0] == 200
    assert as_bob("GET", "runs/get", run_id=restored)[1]["run"]["info"]["lifecycle_stage"] == "deleted"
    status, body = as_bob("POST", "runs/create", {"experiment_id": experiment})
    assert (status, body["error_code"]) == (400, "INVALID_STATE")
    search = {"view_type": "DELETED_ONLY", "filter": "name = 'exp'"}
    assert [e["name"] for e in as_bob("POST", "experiments/search", search)[1]["experiments"]] == ["exp"]
    as_bob("POST", "experiments/restore", {"experiment_id": experiment})
    assert as_bob("GET", "runs/get", run_id=restored)[1]["run"]["info"]["lifecycle_stage"] == "active"
    assert as_bob("GET", "runs/get", run_id=kept_deleted)[1]["run"]["info"]["lifecycle_stage"] == "deleted"
    as_bob("POST", "experiments/update", {"experiment_id": experiment, "new_name": "renamed exp"})
    assert as_bob("GET", "experiments/get", experiment_id=experiment)[1]["experiment"]["name"] == "renamed exp"


# --- Runs


def test_states_map_and_record_one_run_state_event_per_change(as_bob):
    run_id = new_run(as_bob, run_name="first")
    assert events("RUN_STATE") == 1
    as_bob("POST", "runs/update", {"run_id": run_id, "run_name": "renamed"})
    assert events("RUN_STATE") == 1
    status, body = as_bob("POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 1_700_000_100_000})
    assert body["run_info"]["status"] == "FINISHED" and body["run_info"]["end_time"] == 1_700_000_100_000
    assert body["run_info"]["run_name"] == "renamed" and body["run_info"]["start_time"] == 1_700_000_000_000
    assert Run.objects.get(run_id=run_id).state == "finished" and events("RUN_STATE") == 2
    for status_name, state in [("FAILED", "failed"), ("KILLED", "killed"), ("SCHEDULED", "running"), ("RUNNING", "running")]:
        as_bob("POST", "runs/update", {"run_id": run_id, "status": status_name})
        assert Run.objects.get(run_id=run_id).state == state
    assert events("RUN_STATE") == 5  # SCHEDULED then RUNNING is one change


def test_params_are_the_config_and_immutable(as_bob):
    run_id = new_run(as_bob)
    assert as_bob("POST", "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"})[0] == 200
    assert as_bob("POST", "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"})[0] == 200
    status, body = as_bob("POST", "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.2"})
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE") and "Changing param values" in body["message"]
    status, body = as_bob("POST", "runs/log-batch", {"run_id": run_id, "params": [{"key": "depth", "value": "3"}, {"key": "lr", "value": "9"}]})
    assert status == 400
    assert Run.objects.get(run_id=run_id).config == {"lr": "0.1"}  # the whole batch was refused


def test_tags_are_kept_exactly_and_user_tags_show_natively(as_bob):
    run_id = new_run(as_bob, tags=[{"key": "mlflow.source.name", "value": "train.py"}, {"key": "team", "value": "vision"}])
    as_bob("POST", "runs/set-tag", {"run_id": run_id, "key": "note", "value": "x" * 5000})
    tags = {t["key"]: t["value"] for t in as_bob("GET", "runs/get", run_id=run_id)[1]["run"]["data"]["tags"]}
    assert tags["mlflow.source.name"] == "train.py" and tags["note"] == "x" * 5000 and tags["mlflow.runName"].startswith("run-")
    assert Run.objects.get(run_id=run_id).tags == ["team:vision"]  # system tags and long values stay MLflow's
    as_bob("POST", "runs/set-tag", {"run_id": run_id, "key": "team", "value": "audio"})
    as_bob("POST", "runs/set-tag", {"run_id": run_id, "key": "mlflow.runName", "value": "named by tag"})
    run = Run.objects.get(run_id=run_id)
    assert run.tags == ["team:audio"] and run.name == "named by tag"
    assert as_bob("POST", "runs/delete-tag", {"run_id": run_id, "key": "team"})[0] == 200
    assert Run.objects.get(run_id=run_id).tags == []
    assert as_bob("POST", "runs/delete-tag", {"run_id": run_id, "key": "team"})[1]["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_metrics_become_history_one_call_one_batch_and_non_finite_values_round_trip(as_bob):
    run_id = new_run(as_bob)
    metrics = [{"key": "loss", "value": v, "timestamp": 1_700_000_000_000 + i, "step": i} for i, v in enumerate([1.0, "NaN", "Infinity", "-Infinity", 0.5])]
    metrics.append({"key": "acc", "value": 0.1, "timestamp": 1_700_000_000_000, "step": 0})
    assert as_bob("POST", "runs/log-batch", {"run_id": run_id, "metrics": metrics})[0] == 200
    assert events("RUN_HISTORY") == 1
    history = as_bob("GET", "metrics/get-history", run_id=run_id, metric_key="loss")[1]["metrics"]
    assert [m["value"] for m in history] == [1.0, "NaN", "Infinity", "-Infinity", 0.5]
    assert [m["timestamp"] for m in history] == [1_700_000_000_000 + i for i in range(5)]
    run = as_bob("GET", "runs/get", run_id=run_id)[1]["run"]
    assert {m["key"]: (m["value"], m["step"], m["timestamp"]) for m in run["data"]["metrics"]} == {
        "loss": (0.5, 4, 1_700_000_000_004), "acc": (0.1, 0, 1_700_000_000_000)}
    # MLflow 3 re-sends a run's metrics with the model they belong to: not new points.
    resent = as_bob("POST", "runs/log-batch", {"run_id": run_id, "metrics": metrics})
    assert resent[0] == 200 and events("RUN_HISTORY") == 1 and MetricPoint.objects.count() == 6
    page1 = as_bob("GET", "metrics/get-history", run_id=run_id, metric_key="loss", max_results=2)[1]
    page2 = as_bob("GET", "metrics/get-history", run_id=run_id, metric_key="loss", max_results=10, page_token=page1["next_page_token"])[1]
    assert [m["step"] for m in page1["metrics"] + page2["metrics"]] == [0, 1, 2, 3, 4] and "next_page_token" not in page2
    status, body = as_bob("GET", "metrics/get-history-bulk-interval", run_ids=[run_id], metric_key="loss", max_results=3)
    assert [m["step"] for m in body["metrics"]] == [0, 2, 4] and body["metrics"][0]["run_id"] == run_id


def test_log_batch_costs_the_same_queries_for_ten_or_a_thousand_metrics(as_bob):
    """The first batch of a run creates its metric records, later ones add to them: each costs the
    same whether it carries ten metrics or a thousand."""
    small, large = new_run(as_bob), new_run(as_bob)

    def queries(run_id, n, offset):
        metrics = [{"key": f"m{i % 5}", "value": i, "timestamp": 1_700_000_000_000 + offset + i, "step": offset + i} for i in range(n)]
        with CaptureQueriesContext(connection) as captured:
            assert as_bob("POST", "runs/log-batch", {"run_id": run_id, "metrics": metrics})[0] == 200
        return len(captured)

    assert queries(small, 10, 0) == queries(large, 1000, 0)  # metrics new to the run
    assert queries(small, 10, 2000) == queries(large, 1000, 2000)  # metrics the run has


def test_a_deleted_run_refuses_writes_with_invalid_state(as_bob):
    run_id = new_run(as_bob)
    as_bob("POST", "runs/delete", {"run_id": run_id})
    status, body = as_bob("POST", "runs/log-metric", {"run_id": run_id, "key": "x", "value": 1, "timestamp": 1})
    assert (status, body["error_code"]) == (400, "INVALID_STATE")
    as_bob("POST", "runs/restore", {"run_id": run_id})
    assert as_bob("POST", "runs/log-metric", {"run_id": run_id, "key": "x", "value": 1, "timestamp": 1})[0] == 200


def test_search_runs_grammar_in_the_database(as_bob):
    experiment = as_bob("POST", "experiments/create", {"name": "grid"})[1]["experiment_id"]
    for i, name in enumerate(["a*b", "a_b", "A%b", "plain"]):
        run_id = new_run(as_bob, experiment, run_name=name, tags=[{"key": "kind", "value": name.lower()}] if i % 2 else [])
        as_bob("POST", "runs/log-batch", {"run_id": run_id, "params": [{"key": "p", "value": str(i)}],
                                        "metrics": [{"key": "m", "value": i, "timestamp": 1, "step": 0}]})

    def names(text, order=("attributes.run_name",)):
        status, body = as_bob("POST", "runs/search", {"experiment_ids": [experiment], "filter": text, "order_by": list(order)})
        assert status == 200, body
        return [r["info"]["run_name"] for r in body.get("runs", [])]

    assert names("run_name LIKE 'a_b'") == ["a*b", "a_b"]  # _ is one character, * is literal
    assert names("run_name LIKE 'a*b'") == ["a*b"]
    assert names("run_name ILIKE 'a%'") == ["A%b", "a*b", "a_b"]
    assert names("tags.kind IS NULL") == ["a*b", "A%b"][::-1]
    assert names("tags.`kind` = 'a_b'") == ["a_b"]
    assert names("params.p != '0' and metrics.m <= 2") == ["A%b", "a_b"]
    assert names("attributes.status IN ('RUNNING') and attributes.start_time >= 1700000000000") == ["A%b", "a*b", "a_b", "plain"]
    assert names("", order=["metrics.m DESC"]) == ["plain", "A%b", "a_b", "a*b"]
    for bad in ["metrics.m LIKE 'x'", "params.p > 1", "nonsense", "foo.bar = 1", "run_name = 'x' OR run_name = 'y'", "run_name IN 'x'",
                "metrics.m < 'x'", "m = ", "tags.x = 'unclosed"]:
        status, body = as_bob("POST", "runs/search", {"experiment_ids": [experiment], "filter": bad})
        assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), bad
    assert as_bob("POST", "runs/search", {"experiment_ids": [experiment], "page_token": "!!"})[1]["error_code"] == "INVALID_PARAMETER_VALUE"


# --- Artifacts


def test_artifacts_stream_in_and_out_of_the_storage_and_stay_inside_it(as_bob, media):
    status, _ = as_bob("PUT", f"{ARTIFACTS}/1/run/artifacts/dir/file.txt", raw=b"hello")
    assert status == 200 and (media / "mlflow").is_dir()
    as_bob("PUT", f"{ARTIFACTS}/1/run/artifacts/dir/file.txt", raw=b"hello again")  # overwritten, as MLflow does
    client = Client(HTTP_AUTHORIZATION=f"Bearer {Token.objects.get(user__username='bob').key}")
    response = client.get(f"{ARTIFACTS}/1/run/artifacts/dir/file.txt")
    assert response.streaming and b"".join(response.streaming_content) == b"hello again"
    assert as_bob("GET", ARTIFACTS, path="1/run/artifacts")[1] == {"files": [{"path": "dir", "is_dir": True}]}
    assert as_bob("GET", ARTIFACTS, path="1/run/artifacts/dir")[1] == {"files": [{"path": "file.txt", "is_dir": False, "file_size": 11}]}
    assert as_bob("GET", f"{ARTIFACTS}/1/run/artifacts/dir")[1]["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    for bad in ["../secret", "a/../../b", "a//b", "./a", "a/./b", "~root/x", "a\\..\\b", "C:/x", "%2e%2e/x"]:
        status, body = as_bob("PUT", f"{ARTIFACTS}/{bad}", raw=b"x")
        assert status in (400, 404) and body["error_code"] in ("INVALID_PARAMETER_VALUE", "ENDPOINT_NOT_FOUND"), bad
        assert as_bob("GET", ARTIFACTS, path=bad)[0] == 400, bad
    assert as_bob("DELETE", f"{ARTIFACTS}/1/run/artifacts/dir")[0] == 200
    assert as_bob("GET", ARTIFACTS, path="1/run/artifacts/dir")[1] == {"files": []}
    assert not list((media / "mlflow").rglob("*.txt"))


def test_artifacts_are_kept_per_team(as_bob, team, make_user):
    from teams.models import Membership, Team

    other = Team.objects.create(name="other")
    Membership.objects.create(team=other, user=team.members.get(username="bob"), role="member")
    as_bob("PUT", f"{ARTIFACTS}/0/r/artifacts/a.txt", raw=b"acme's")
    other_call = Client(HTTP_AUTHORIZATION=f"Bearer {Token.objects.get(user__username='bob').key}")
    assert other_call.get("/mlflow/other/api/2.0/mlflow-artifacts/artifacts/0/r/artifacts/a.txt").status_code == 404


# --- Registry


def test_registry_versions_aliases_and_tags_are_native(as_bob, settings, team):
    settings.MLFLOW_REGISTRY = "mlflow-models"
    run_id = new_run(as_bob)
    assert as_bob("POST", "registered-models/create", {"name": "My model", "description": "d"})[0] == 200
    assert as_bob("POST", "registered-models/create", {"name": "My model"})[1]["error_code"] == "RESOURCE_ALREADY_EXISTS"
    collection = ArtifactCollection.objects.get(registry__name="mlflow-models")
    assert (collection.name, collection.type, collection.description) == ("My-model", "model", "d")
    versions = []
    for path in ("model", "model"):
        status, body = as_bob("POST", "model-versions/create", {"name": "My model", "source": f"runs:/{run_id}/{path}", "run_id": run_id})
        assert status == 200 and body["model_version"]["status"] == "READY", body
        versions.append(body["model_version"]["version"])
    assert versions == ["1", "2"] and sorted(collection.versions.values_list("index", flat=True)) == [0, 1]
    links, aliases = events("LINK_ARTIFACT"), events("ADD_ARTIFACT_ALIAS")
    as_bob("POST", "registered-models/alias", {"name": "My model", "alias": "champion", "version": "1"})
    as_bob("POST", "registered-models/alias", {"name": "My model", "alias": "champion", "version": "2"})  # moves
    assert events("ADD_ARTIFACT_ALIAS") == aliases + 2 and events("LINK_ARTIFACT") == links
    assert as_bob("GET", "registered-models/alias", name="My model", alias="champion")[1]["model_version"]["version"] == "2"
    for bad in ("latest", "v3", "-x", "a b", ""):
        assert as_bob("POST", "registered-models/alias", {"name": "My model", "alias": bad, "version": "1"})[0] == 400, bad
    as_bob("POST", "model-versions/set-tag", {"name": "My model", "version": "2", "key": "region", "value": "eu"})
    as_bob("POST", "model-versions/set-tag", {"name": "My model", "version": "2", "key": "validated", "value": ""})
    as_bob("POST", "model-versions/set-tag", {"name": "My model", "version": "2", "key": "region", "value": "us"})
    assert sorted(collection.versions.get(index=1).tags.values_list("tag", flat=True)) == ["region:us", "validated"]
    got = as_bob("GET", "model-versions/get", name="My model", version="2")[1]["model_version"]
    assert got["tags"] == [{"key": "region", "value": "us"}, {"key": "validated", "value": ""}] and got["aliases"] == ["champion"]
    assert as_bob("GET", "model-versions/get-download-uri", name="My model", version="2")[1]["artifact_uri"].endswith(f"/{run_id}/artifacts/model")
    as_bob("DELETE", "model-versions/delete-tag", {"name": "My model", "version": "2", "key": "region"})
    as_bob("DELETE", "registered-models/alias", {"name": "My model", "alias": "champion"})
    assert as_bob("GET", "registered-models/alias", name="My model", alias="champion")[0] == 404
    as_bob("POST", "model-versions/transition-stage", {"name": "My model", "version": "2", "stage": "production"})
    latest = as_bob("POST", "registered-models/get-latest-versions", {"name": "My model", "stages": ["Production"]})[1]
    assert [v["version"] for v in latest["model_versions"]] == ["2"]
    as_bob("POST", "registered-models/rename", {"name": "My model", "new_name": "Renamed"})
    assert as_bob("GET", "registered-models/get", name="Renamed")[1]["registered_model"]["aliases"] == []
    assert as_bob("DELETE", "model-versions/delete", {"name": "Renamed", "version": "1"})[0] == 200
    assert [v["version"] for v in as_bob("GET", "model-versions/search", filter="name = 'Renamed'")[1]["model_versions"]] == ["2"]
    assert as_bob("DELETE", "registered-models/delete", {"name": "Renamed"})[0] == 200
    assert not ArtifactCollection.objects.filter(registry__name="mlflow-models").exists()


def test_native_registry_collections_are_registered_models(as_bob, team, project, registry):
    version = create_version(ArtifactCollection.objects.create(team=team, project=project, name="clf", type="model"))
    collection = ArtifactCollection.objects.create(team=team, registry=registry, name="clf", type="model")
    link_version(collection, version)
    body = as_bob("GET", "registered-models/get", name="clf")[1]["registered_model"]
    assert body["name"] == "clf" and [v["version"] for v in body["latest_versions"]] == ["1"]
    assert as_bob("GET", "registered-models/get", name="nope")[1]["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_the_tracking_api_lists_a_runs_artifacts(as_bob):
    run_id = new_run(as_bob)
    as_bob("PUT", f"{ARTIFACTS}/0/{run_id}/artifacts/plots/loss.png", raw=b"png")
    status, body = as_bob("GET", "artifacts/list", run_id=run_id)
    assert body == {"root_uri": f"mlflow-artifacts:/0/{run_id}/artifacts", "files": [{"path": "plots", "is_dir": True}]}
    status, body = as_bob("GET", "artifacts/list", run_id=run_id, path="plots")
    assert body["files"] == [{"path": "plots/loss.png", "is_dir": False, "file_size": 3}]


def test_server_info_says_files_go_whole_through_the_artifacts_endpoint(as_bob):
    status, body = as_bob("GET", "/mlflow/acme/api/3.0/mlflow/server-info")
    assert status == 200 and body["multipart_uploads_enabled"] is False and body["multipart_downloads_enabled"] is False


def test_search_runs_costs_the_same_queries_for_two_runs_or_twenty(as_bob):
    experiment = as_bob("POST", "experiments/create", {"name": "many"})[1]["experiment_id"]

    def grow(n):
        for _ in range(n):
            run_id = new_run(as_bob, experiment, tags=[{"key": "t", "value": "v"}])
            as_bob("POST", "runs/log-batch", {"run_id": run_id, "params": [{"key": "p", "value": "1"}],
                                              "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": 0}, {"key": "n", "value": 2, "timestamp": 1, "step": 0}]})

    def queries():
        with CaptureQueriesContext(connection) as captured:
            status, body = as_bob("POST", "runs/search", {"experiment_ids": [experiment], "filter": "metrics.m > 0", "order_by": ["metrics.n"]})
        assert status == 200
        return len(captured), len(body["runs"])

    grow(2)
    few = queries()
    grow(18)
    assert queries() == (few[0], 20)


def test_mlflow_is_a_reserved_team_name(team):
    token = Token.objects.get_or_create(user=team.members.get(username="alice"))[0].key
    response = Client(HTTP_AUTHORIZATION=f"Token {token}").post("/api/v1/teams/", {"name": "mlflow"}, content_type="application/json")
    assert response.status_code == 400 and "reserved" in response.json()["name"][0]


@pytest.mark.django_db(transaction=True)
def test_a_crashed_scripts_failed_run_fires_run_state_automations(as_bob, project):
    from tests.engine import fired, make_automation

    automation = make_automation(project.team, "failed", {"type": "project", "project": "vision"}, {"type": "RUN_STATE", "states": ["FAILED"]})
    run_id = new_run(as_bob, str(project.pk))
    assert fired(automation) == []
    # What the client sends when the code inside `with mlflow.start_run()` raises.
    as_bob("POST", "runs/update", {"run_id": run_id, "status": "FAILED", "end_time": 1_700_000_100_000})
    [execution] = fired(automation)
    assert execution.event.run.run_id == run_id and execution.context.get("run_state", "failed") == "failed"


def test_registered_model_search_costs_the_same_queries_for_two_models_or_ten(as_bob):
    run_id = new_run(as_bob)

    def grow(start, n):
        for i in range(start, start + n):
            as_bob("POST", "registered-models/create", {"name": f"model {i}", "tags": [{"key": "k", "value": "v"}]})
            for _ in range(2):
                as_bob("POST", "model-versions/create", {"name": f"model {i}", "source": f"runs:/{run_id}/m", "run_id": run_id})
            as_bob("POST", "registered-models/alias", {"name": f"model {i}", "alias": "prod", "version": "2"})

    def queries():
        with CaptureQueriesContext(connection) as captured:
            status, body = as_bob("GET", "registered-models/search", filter="name LIKE 'model%'")
        assert status == 200 and all(m["aliases"] == [{"alias": "prod", "version": "2"}] for m in body["registered_models"])
        assert all([v["version"] for v in m["latest_versions"]] == ["2"] for m in body["registered_models"])
        return len(captured), len(body["registered_models"])

    grow(0, 2)
    few = queries()
    grow(2, 8)
    assert queries() == (few[0], 10)


def test_a_logged_model_becomes_a_model_artifact_version_when_finalized(as_bob, project):
    run_id = new_run(as_bob, str(project.pk))

    def log_model(name):
        status, body = as_bob("POST", "logged-models", {"experiment_id": str(project.pk), "name": name, "source_run_id": run_id,
                                                        "params": [{"key": "alpha", "value": "0.5"}], "tags": [{"key": "mlflow.user", "value": "bob"}]})
        assert status == 200 and body["model"]["info"]["status"] == "LOGGED_MODEL_PENDING"
        return body["model"]["info"]["model_id"]

    model_id = log_model("clf")
    assert events("CREATE_ARTIFACT") == 0  # its files are not uploaded yet
    as_bob("POST", "runs/log-batch", {"run_id": run_id, "metrics": [{"key": "acc", "value": 0.9, "timestamp": 5, "step": 1, "model_id": model_id}]})
    status, body = as_bob("PATCH", f"logged-models/{model_id}", {"model_id": model_id, "status": "LOGGED_MODEL_READY"})
    assert body["model"]["info"]["status"] == "LOGGED_MODEL_READY" and events("CREATE_ARTIFACT") == 1
    version = ArtifactCollection.objects.get(project=project, name="clf").versions.get()
    assert (version.index, version.run.run_id, version.metadata["mlflow_model_id"]) == (0, run_id, model_id)
    got = as_bob("GET", f"logged-models/{model_id}")[1]["model"]
    assert got["data"]["params"] == [{"key": "alpha", "value": "0.5"}] and got["data"]["metrics"][0]["key"] == "acc"
    assert got["info"]["artifact_uri"] == f"mlflow-artifacts:/{project.pk}/models/{model_id}/artifacts"

    def queries():
        with CaptureQueriesContext(connection) as captured:
            status, body = as_bob("POST", "logged-models/search", {"experiment_ids": [str(project.pk)], "filter": "name LIKE 'clf%'"})
        assert status == 200
        return len(captured), len(body["models"])

    few = queries()
    for _ in range(5):
        as_bob("POST", "runs/log-batch", {"run_id": run_id, "metrics": [{"key": "acc", "value": 0.9, "timestamp": 5, "step": 1, "model_id": log_model("clf")}]})
    assert queries() == (few[0], 6)
    as_bob("DELETE", f"logged-models/{model_id}")
    assert as_bob("GET", f"logged-models/{model_id}")[1]["error_code"] == "RESOURCE_DOES_NOT_EXIST"
