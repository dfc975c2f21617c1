"""Kill a worker in the middle of a delivery; a new worker delivers the execution again."""

import pytest

from tests.live import LiveTripline, wait_for
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def live_short_lease(tmp_path):
    # The delivery lease is connect + read timeout + 10 s: 15 s here.
    server = LiveTripline(tmp_path, env={"WEBHOOK_TIMEOUT": "1,4", "WEBHOOK_RETRY_SCHEDULE": "1,1"}).start()
    yield server
    server.stop()


def test_a_delivery_survives_its_worker_being_killed(live_short_lease):
    live = live_short_lease
    receiver = Receiver().answer(200, b"too late", delay=3)  # the first request hangs while we kill
    try:
        alice, bob = live.session("alice"), live.session("bob")
        base = f"{live.url}/api/v1/teams/acme"
        bob.post(f"{base}/projects/", json={"name": "kill"})
        alice.post(f"{base}/integrations/", json={"kind": "webhook", "name": "k", "url": receiver.url})
        created = bob.post(f"{base}/automations/", json={
            "name": "on artifact", "scope": {"type": "project", "project": "kill"}, "event": {"type": "CREATE_ARTIFACT"},
            "action": {"type": "WEBHOOK", "integration": "k", "payload": {"v": "${artifact_version_string}"}},
        })
        assert created.status_code == 201, created.text
        bob.post(f"{base}/projects/kill/artifacts/", json={"name": "m", "type": "model"})
        wait_for(lambda: receiver.requests, timeout=30, message="the first delivery to start")
        live.kill("worker")  # SIGKILL the worker, its qcluster and its pool mid-request
        live.start_worker("worker2")
        executions = f"{base}/executions/"
        done = wait_for(lambda: [e for e in bob.get(executions).json()["results"] if e["status"] == "succeeded"], timeout=60,
                        message="redelivery by the new worker")
        assert len(receiver.requests) >= 2
        assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1
        assert {r["headers"]["webhook-id"] for r in receiver.requests} == {done[0]["delivery_id"]}
        attempts = bob.get(f"{executions}{done[0]['id']}/").json()["attempts"]
        assert "worker stopped during this attempt" in attempts[0]["error"]
        assert attempts[-1]["status_code"] == 200
    finally:
        receiver.close()
