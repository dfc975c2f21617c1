"""The unmodified MLflow client against a live Tripline (gunicorn + `manage.py worker`): a training
script logs into Tripline's own runs, history, artifacts and registry, and the automations of
the native API fire on it, once each, on loopback webhook receivers."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import LiveTripline, wait_for
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e
mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

HERE = Path(__file__).resolve().parent
EXPERIMENT, MODEL = "mnist", "Digit classifier"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-live")
    server = LiveTripline(tmp, env={"MEDIA_ROOT": str(tmp / "media")}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


def client_env(live, user, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "MLFLOW_TRACKING_URI": f"{live.url}/mlflow/acme", "MLFLOW_TRACKING_TOKEN": live.tokens[user],
            "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", **extra}


@pytest.fixture
def as_user(live, monkeypatch):
    """as_user(name) -> an MlflowClient whose requests carry that user's token."""

    def make(user, **extra):
        for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
            monkeypatch.delenv(key)
        for key, value in client_env(live, user, **extra).items():
            if key.startswith("MLFLOW_"):
                monkeypatch.setenv(key, value)
        return MlflowClient(tracking_uri=f"{live.url}/mlflow/acme")

    return make


@pytest.fixture(scope="module")
def trained(live, receiver):
    """Automations made with the native API, then the training script run as a user runs it."""
    alice, bob = live.session("alice"), live.session("bob")
    base = f"{live.url}/api/v1/teams/acme"
    # The project and the registry exist first (a project automation needs its project): the
    # script's set_experiment("mnist") finds the project, and the registry is MLFLOW_REGISTRY.
    assert bob.post(f"{base}/projects/", json={"name": EXPERIMENT}).status_code == 201
    assert bob.post(f"{base}/registries/", json={"name": "models"}).status_code == 201
    assert alice.post(f"{base}/integrations/", json={"kind": "webhook", "name": "hook", "url": receiver.url}).status_code == 201
    payload = {"event": "${event_type}", "run": "${run_id}", "state": "${run_state}", "version": "${artifact_version_string}",
               "alias": "${alias}", "metric": "${metric_name}"}
    project, registry = {"type": "project", "project": EXPERIMENT}, {"type": "registry", "registry": "models"}
    for name, scope, event in [
        ("finished", project, {"type": "RUN_STATE", "states": ["FINISHED"]}),
        ("loss low", project, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 5, "agg": "AVERAGE", "cmp": "$lt", "threshold": 0.1}),
        ("model logged", project, {"type": "CREATE_ARTIFACT", "collection_type": "model"}),
        ("registered", registry, {"type": "LINK_ARTIFACT"}),
        ("production", registry, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^production$"}),
    ]:
        made = bob.post(f"{base}/automations/", json={"name": name, "scope": scope, "event": event,
                                                      "action": {"type": "WEBHOOK", "integration": "hook", "payload": payload}})
        assert made.status_code == 201, made.text
    result = subprocess.run([sys.executable, str(HERE / "mlflow_train.py"), EXPERIMENT, MODEL], env=client_env(live, "bob"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    made = json.loads(result.stdout.strip().splitlines()[-1])
    wait_for(lambda: live.unevaluated_events() == 0, timeout=60, message="every event evaluated")
    return made


def deliveries(receiver):
    return [json.loads(r["body"]) for r in receiver.requests]


def test_a_training_script_fires_each_automation_once(live, receiver, trained):
    wait_for(lambda: len(receiver.requests) >= 5, timeout=60, message="five webhooks")
    wait_for(lambda: live.unevaluated_events() == 0, message="every event evaluated")
    got = sorted(deliveries(receiver), key=lambda d: d["event"])
    assert [d["event"] for d in got] == ["ADD_ARTIFACT_ALIAS", "CREATE_ARTIFACT", "LINK_ARTIFACT", "RUN_METRIC_THRESHOLD", "RUN_STATE"]
    alias, created, linked, threshold, state = got
    assert state["run"] == trained["run_id"] and state["state"] == "finished"
    assert threshold["run"] == trained["run_id"] and threshold["metric"] == "loss"
    assert created["version"] == f"acme/{EXPERIMENT}/model:v0"
    assert linked["version"] == alias["version"] == "acme/models/Digit-classifier:v0"
    assert alias["alias"] == "production"


def test_the_registered_model_loads_and_predicts(live, trained):
    script = ("import mlflow.pyfunc, pandas as pd\n"
              f"model = mlflow.pyfunc.load_model({'models:/' + MODEL + '@production'!r})\n"
              "print(model.predict(pd.DataFrame({'x': [1.0, 2.0]}))['x'].tolist())\n")
    result = subprocess.run([sys.executable, "-c", script], env=client_env(live, "vic"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[6.0, 7.0]"


def test_everything_reads_back_with_mlflow_client(live, trained, as_user):
    client = as_user("vic")  # a viewer reads everything
    run = client.get_run(trained["run_id"])
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time > 0
    assert run.info.run_name == "train-mnist" and run.info.user_id == "bob"
    assert run.data.params == {"lr": "0.01", "epochs": "10", "optimizer": "adam"}
    assert run.data.tags["team"] == "vision" and run.data.tags["mlflow.runName"] == "train-mnist"
    assert run.data.tags["mlflow.source.name"].endswith("mlflow_train.py")
    assert math.isnan(run.data.metrics["nan_metric"]) and run.data.metrics["loss"] == pytest.approx(1 / (1 + 999 / 50))
    assert [o.model_id for o in run.outputs.model_outputs] == [trained["model_id"]]

    history = client.get_metric_history(trained["run_id"], "loss")
    assert len(history) == 1000  # the metrics re-sent when the model was logged are not new points
    assert [m.step for m in history] == list(range(1000))
    assert history[500].value == pytest.approx(1 / 11) and history[500].timestamp == 1_700_000_000_500

    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.experiment_id == trained["experiment_id"] and experiment.lifecycle_stage == "active"
    assert [f.path for f in client.list_artifacts(trained["run_id"])] == ["reports"]
    [report] = client.list_artifacts(trained["run_id"], "reports")
    assert report.path == "reports/report.txt" and report.file_size == len("accuracy report\n")

    model = client.get_logged_model(trained["model_id"])
    assert model.status.to_proto() == 2 and model.source_run_id == trained["run_id"]  # READY
    version = client.get_model_version_by_alias(MODEL, "production")
    assert (version.version, version.source, version.run_id, version.status) == ("1", trained["model_uri"], trained["run_id"], "READY")
    assert version.tags == {"stage": "candidate"} and version.aliases == ["production"]
    assert [m.name for m in client.search_registered_models(f"name = '{MODEL}'")] == [MODEL]
    assert [v.version for v in client.search_model_versions(f"run_id = '{trained['run_id']}'")] == ["1"]


def test_search_filters_and_pages_in_the_database(live, trained, as_user):
    client = as_user("bob")
    experiment_id = client.create_experiment("search space")
    for i in range(7):
        run = client.create_run(experiment_id, run_name=f"trial-{i}", tags={"parity": "even" if i % 2 == 0 else "odd"})
        client.log_batch(run.info.run_id, metrics=[mlflow.entities.Metric("score", i / 10, 1_700_000_000_000, 0)],
                         params=[mlflow.entities.Param("depth", str(i))])
        client.set_terminated(run.info.run_id, "FINISHED" if i < 5 else "FAILED")
    found = client.search_runs([experiment_id], "metrics.score >= 0.3 and tags.parity = 'odd'", order_by=["metrics.score DESC"])
    assert [r.info.run_name for r in found] == ["trial-5", "trial-3"]
    assert [r.info.run_name for r in client.search_runs([experiment_id], "attributes.status = 'FAILED'", order_by=["attributes.run_name"])] == ["trial-5", "trial-6"]
    by_name = ["attributes.run_name"]
    assert [r.info.run_name for r in client.search_runs([experiment_id], "params.depth IN ('1', '4')", order_by=by_name)] == ["trial-1", "trial-4"]
    odd = client.search_runs([experiment_id], "attributes.run_name LIKE 'trial-%' and tags.parity != 'even'", order_by=by_name)
    assert [r.info.run_name for r in odd] == ["trial-1", "trial-3", "trial-5"]
    assert client.search_runs([experiment_id], "attributes.run_name LIKE 'TRIAL-%'") == []  # LIKE is case-sensitive
    assert len(client.search_runs([experiment_id], "attributes.run_name ILIKE 'TRIAL-%'")) == 7
    names, token = [], None
    while True:
        page = client.search_runs([experiment_id], order_by=["params.depth ASC"], max_results=3, page_token=token)
        names += [r.info.run_name for r in page]
        token = page.token
        if not token:
            break
    assert names == [f"trial-{i}" for i in range(7)]
    with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE"):
        client.search_runs([experiment_id], "metrics.score ~ 3")


def test_outsiders_viewers_and_strangers_get_mlflows_errors(live, trained, as_user):
    with pytest.raises(MlflowException) as outsider:
        as_user("charlie").get_run(trained["run_id"])
    assert outsider.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    viewer = as_user("vic")
    for write in (lambda: viewer.create_run(trained["experiment_id"]),
                  lambda: viewer.log_metric(trained["run_id"], "loss", 0.0),
                  lambda: viewer.set_registered_model_alias(MODEL, "hacked", "1")):
        with pytest.raises(MlflowException) as refused:
            write()
        assert refused.value.error_code == "PERMISSION_DENIED"
    assert viewer.get_run(trained["run_id"]).data.metrics["loss"] < 0.1  # nothing was written
    with pytest.raises(MlflowException) as stranger:
        as_user("bob", MLFLOW_TRACKING_TOKEN="not-a-token").get_run(trained["run_id"])
    assert stranger.value.error_code == "UNAUTHENTICATED"
    # HTTP Basic with the username and the token works too.
    basic = as_user("bob", MLFLOW_TRACKING_USERNAME="bob", MLFLOW_TRACKING_PASSWORD=live.tokens["bob"], MLFLOW_TRACKING_TOKEN="")
    assert basic.get_run(trained["run_id"]).info.run_id == trained["run_id"]


def test_what_the_client_wrote_is_native_data(live, trained):
    bob = live.session("bob")
    base = f"{live.url}/api/v1/teams/acme/projects/{EXPERIMENT}"
    run = bob.get(f"{base}/runs/{trained['run_id']}/").json()
    assert run["state"] == "finished" and run["config"]["lr"] == "0.01" and "team:vision" in run["tags"]
    history = bob.get(f"{base}/runs/{trained['run_id']}/history/?keys=loss").json()
    assert len(history["loss"]) == 1000
    artifact = bob.get(f"{base}/artifacts/model/versions/v0/").json()
    assert artifact["type"] == "model" and artifact["run"] == trained["run_id"]
    assert artifact["metadata"]["mlflow_model_id"] == trained["model_id"]
    linked = bob.get(f"{live.url}/api/v1/teams/acme/registries/models/collections/Digit-classifier/versions/v0/").json()
    assert linked["aliases"] == ["latest", "production"] and linked["tags"] == ["stage:candidate"]


def test_the_run_the_client_logged_shows_on_tripline_pages(live, trained):
    import requests

    browser = requests.Session()  # vic, a viewer of acme, signs in through the sign-in page
    browser.get(f"{live.url}/login/")
    signed_in = browser.post(f"{live.url}/login/?next=/acme/", headers={"Referer": f"{live.url}/login/"}, data={
        "username": "vic", "password": "vic-password", "csrfmiddlewaretoken": browser.cookies["csrftoken"]})
    assert signed_in.status_code == 200 and signed_in.history and signed_in.url == f"{live.url}/acme/"
    page = browser.get(f"{live.url}/acme/projects/{EXPERIMENT}/runs/{trained['run_id']}/")
    assert page.status_code == 200
    for shown in ("train-mnist", "finished", "optimizer", "loss", "nan_metric", "team:vision"):
        assert shown in page.text, shown
    model = browser.get(f"{live.url}/acme/registries/models/Digit-classifier/")
    assert model.status_code == 200 and "production" in model.text
