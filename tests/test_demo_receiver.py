"""The demo's webhook receiver answers only when DEMO_RECEIVER is on, and only 200 or 500."""

import json

import pytest
from django.test import Client, override_settings


@override_settings(DEMO_RECEIVER=True)
def test_it_answers_with_the_status_of_its_url():
    client = Client(enforce_csrf_checks=True)  # webhooks carry no CSRF token
    ok = client.post("/_demo/receiver/200/", json.dumps({"b": 1, "a": 2}), content_type="application/json", HTTP_WEBHOOK_ID="msg_1")
    assert ok.status_code == 200 and ok.json() == {"ok": True, "webhook_id": "msg_1", "received_keys": ["a", "b"]}
    failing = client.post("/_demo/receiver/500/", "not json", content_type="text/plain")
    assert failing.status_code == 500 and "fails on purpose" in failing.json()["error"]
    assert client.post("/_demo/receiver/302/").status_code == 404
    assert client.get("/_demo/receiver/200/").status_code == 405


@pytest.mark.parametrize("status", [200, 500])
@override_settings(DEMO_RECEIVER=False)
def test_it_is_not_there_when_off(status):
    assert Client().post(f"/_demo/receiver/{status}/").status_code == 404
