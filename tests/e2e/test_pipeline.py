"""The whole product over HTTP: gunicorn, a real qcluster (`manage.py worker`), a receiver."""

import time

import pytest
from standardwebhooks.webhooks import Webhook

from tests.live import wait_for
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def setup_project(live, name):
    alice, bob = live.session("alice"), live.session("bob")
    base = f"{live.url}/api/v1/teams/acme"
    assert bob.post(f"{base}/projects/", json={"name": name}).status_code == 201
    return alice, bob, base


def test_an_alias_triggers_a_signed_webhook_through_the_task_queue(live, receiver):
    alice, bob, base = setup_project(live, "e2e-alias")
    receiver.answer(503, b"warming up")  # one retry, picked up by the ticker within seconds
    hook = alice.post(f"{base}/integrations/", json={"kind": "webhook", "name": "e2e-hook", "url": receiver.url}).json()
    automation = bob.post(f"{base}/automations/", json={
        "name": "deploy on production",
        "scope": {"type": "project", "project": "e2e-alias"},
        "event": {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^production$"},
        "action": {"type": "WEBHOOK", "integration": "e2e-hook", "payload": {"version": "${artifact_version_string}", "by": "${event_author}"}},
    })
    assert automation.status_code == 201, automation.text
    bob.post(f"{base}/projects/e2e-alias/artifacts/", json={"name": "clf", "type": "model"})
    started = time.monotonic()
    assert bob.post(f"{base}/projects/e2e-alias/artifacts/clf/versions/v0/aliases/", json={"alias": "production"}).status_code == 201
    wait_for(lambda: len(receiver.requests) >= 2, timeout=45, message="the webhook and its retry")
    assert time.monotonic() - started < 30
    first, second = receiver.requests[:2]
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    body = Webhook(hook["signing_secret"]).verify(second["body"], {k.lower(): v for k, v in second["headers"].items()})
    assert body == {"version": "acme/e2e-alias/clf:v0", "by": "bob"}
    executions = f"{base}/automations/{automation.json()['id']}/executions/"
    done = wait_for(lambda: [e for e in bob.get(executions).json()["results"] if e["status"] == "succeeded"], message="succeeded")
    assert done[0]["attempts"] == 2


def test_a_metric_threshold_fires_once_through_the_task_queue(live):
    _, bob, base = setup_project(live, "e2e-metric")
    automation = bob.post(f"{base}/automations/", json={
        "name": "loss low", "scope": {"type": "project", "project": "e2e-metric"},
        "event": {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 3, "agg": "AVERAGE", "cmp": "$lt", "threshold": 0.2},
        "action": {"type": "NO_OP"},
    }).json()
    bob.post(f"{base}/projects/e2e-metric/runs/", json={"id": "run1"})
    history = f"{base}/projects/e2e-metric/runs/run1/history/"
    for start, values in [(0, [0.9, 0.5, 0.3]), (3, [0.1, 0.1, 0.1]), (6, [0.05, 0.05])]:
        rows = [{"step": start + i, "metrics": {"loss": v}} for i, v in enumerate(values)]
        assert bob.post(history, json={"rows": rows}).status_code == 201
    executions = f"{base}/automations/{automation['id']}/executions/"
    found = wait_for(lambda: bob.get(executions).json()["results"], message="an execution")
    # every batch is evaluated, the third too, and it must not have fired again
    wait_for(lambda: live.unevaluated_events() == 0, message="every event evaluated")
    results = bob.get(executions).json()["results"]
    assert len(results) == 1 == len(found)
    detail = bob.get(f"{base}/executions/{results[0]['id']}/").json()
    assert detail["status"] == "succeeded" and detail["event"]["object"] == "acme/e2e-metric/run1"
    assert detail["context"]["metric_filter"] == "average(loss) over 3 < 0.2"
