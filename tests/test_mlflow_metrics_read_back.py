"""Metrics logged the way MLflow's clients log them read back whole, through MLflow's API and
through Tripline's REST history: names up to MLflow's 250 characters and with its spaces,
negative steps, and millisecond timestamps to the millisecond however far in the future."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token

from tracking.models import Run

from .conftest import T
from .token_client import token_client

pytestmark = pytest.mark.django_db
API = "/mlflow/acme/api/2.0/mlflow"
START = 1_700_000_000_000


@pytest.fixture
def call(team):
    """call(method, endpoint, body or query) -> (status, JSON) through MLflow's API, as bob."""
    client = Client(HTTP_AUTHORIZATION=f"Bearer {Token.objects.get_or_create(user=get_user_model().objects.get(username='bob'))[0].key}")

    def do(method, endpoint, body=None, **query):
        url = f"{API}/{endpoint}"
        response = client.get(url, query) if method == "GET" else client.post(url, json.dumps(body or {}), content_type="application/json")
        return response.status_code, response.json()

    return do


def new_run(call):
    status, body = call("POST", "runs/create", {"experiment_id": "0", "start_time": START})
    assert status == 200, body
    return body["run"]["info"]["run_id"]


def log(call, run_id, metrics):
    status, body = call("POST", "runs/log-batch", {"run_id": run_id, "metrics": metrics})
    assert status == 200, body


def history(call, run_id, key):
    status, body = call("GET", "metrics/get-history", run_id=run_id, metric_key=key)
    assert status == 200, body
    return [(m["step"], m["timestamp"], m["value"]) for m in body["metrics"]]


def rest_history(bob, run_id):
    run = Run.objects.get(run_id=run_id)
    return token_client(bob), f"{T}/projects/{run.project.name}/runs/{run_id}/history/"


def pages(client, url):
    """Each page of a history read, following its Link to the end."""
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.json()
        yield answer.json()
        link = answer.get("Link")
        url = link[1:link.index(">")] if link else None


@pytest.mark.parametrize("key", ["k" * 129, "k" * 250, "val loss", "précision/top 1"])
def test_every_name_mlflow_allows_is_stored_and_read_back_by_name(call, bob, key):
    run_id = new_run(call)
    log(call, run_id, [{"key": key, "value": 1.0, "timestamp": START, "step": 0}])
    assert history(call, run_id, key) == [(0, START, 1.0)]
    client, url = rest_history(bob, run_id)
    assert client.get(url).json() == {key: [[0, 1.0]]}
    answer = client.get(url, {"keys": key})
    assert (answer.status_code, answer.json()) == (200, {key: [[0, 1.0]]})


@pytest.mark.parametrize("keys", ["loss\n", "a\x00b", "k" * 251])
def test_rest_history_refuses_a_name_no_run_can_hold(call, bob, keys):
    client, url = rest_history(bob, new_run(call))
    answer = client.get(url, {"keys": keys})
    assert answer.status_code == 400 and "keys" in answer.json()


def test_the_next_page_of_negative_steps_is_followable(call, bob, monkeypatch):
    from tracking import history as history_module

    monkeypatch.setattr(history_module, "PAGE_POINTS", 3)
    run_id = new_run(call)
    log(call, run_id, [{"key": "m", "value": float(s), "timestamp": START, "step": s} for s in range(-10, 0)])
    seen = [step for page in pages(*rest_history(bob, run_id)) for step, _ in page["m"]]
    assert seen == list(range(-10, 0))


@pytest.mark.parametrize("timestamp", [17558728970266, 253402300799999, 0, START + 1])
def test_a_timestamp_reads_back_to_the_millisecond(call, timestamp):
    run_id = new_run(call)
    status, body = call("POST", "runs/log-metric", {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": timestamp, "step": 0})
    assert status == 200, body
    assert history(call, run_id, "m") == [(0, timestamp, 1.0)]


@pytest.mark.parametrize("layout", ["one step", "steps around it", "two metrics"])
def test_following_the_link_reads_every_point_once_however_many_share_a_step(call, bob, monkeypatch, layout):
    """MLflow's clients log without a step at step 0: a step may hold more than a page of points."""
    from tracking import history as history_module

    monkeypatch.setattr(history_module, "PAGE_POINTS", 4)
    run_id = new_run(call)
    steps = {"one step": [0] * 11, "steps around it": [-1, 0, 0, 0, 0, 0, 0, 1, 1, 2], "two metrics": [0] * 6 + [1] * 5}[layout]
    metrics = [{"key": "m", "value": float(i), "timestamp": START + i, "step": step} for i, step in enumerate(steps)]
    if layout == "two metrics":
        metrics += [{"key": "n", "value": float(i), "timestamp": START + i, "step": step} for i, step in enumerate(reversed(steps))]
    log(call, run_id, metrics)
    seen, read = {}, 0
    for page in pages(*rest_history(bob, run_id)):
        read += 1
        for key, points in page.items():
            assert len(points) <= 4
            seen.setdefault(key, []).extend(points)
    expected = {"m": [[step, float(i)] for i, step in enumerate(steps)]}
    if layout == "two metrics":
        expected["n"] = sorted([[step, float(i)] for i, step in enumerate(reversed(steps))], key=lambda p: p[0])
    assert seen == expected and read > 1
