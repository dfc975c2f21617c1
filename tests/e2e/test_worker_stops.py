"""`manage.py worker` stopped mid-delivery, as systemd, docker and Kubernetes stop it: it exits
within seconds, and hands back what it was delivering for another worker to deliver at once,
long before the delivery lease would have run out."""

import os
import signal
import time

import pytest

from tests.live import LiveTripline, running_in_session, wait_for
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e
LEASE = 5 + 20 + 10  # connect + read timeout + the lease margin


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = LiveTripline(tmp_path_factory.mktemp("stops"), env={"WEBHOOK_TIMEOUT": "5,20"}).start()
    yield server
    server.stop()


@pytest.mark.parametrize("signal_to", ["process group", "main process"])
def test_a_worker_stopped_mid_delivery_exits_at_once_and_hands_its_delivery_back(live, signal_to):
    project = signal_to.replace(" ", "-")
    receiver = Receiver().answer(200, b"too late", delay=15)  # the first request hangs while the worker is stopped
    try:
        alice, bob = live.session("alice"), live.session("bob")
        base = f"{live.url}/api/v1/teams/acme"
        bob.post(f"{base}/projects/", json={"name": project})
        alice.post(f"{base}/integrations/", json={"kind": "webhook", "name": project, "url": receiver.url})
        created = bob.post(f"{base}/automations/", json={
            "name": project, "scope": {"type": "project", "project": project}, "event": {"type": "CREATE_ARTIFACT"},
            "action": {"type": "WEBHOOK", "integration": project, "payload": {"v": "${artifact_version_string}"}},
        })
        assert created.status_code == 201, created.text
        executions = f"{base}/automations/{created.json()['id']}/executions/"
        bob.post(f"{base}/projects/{project}/artifacts/", json={"name": "m", "type": "model"})
        wait_for(lambda: receiver.requests, timeout=30, message="the delivery to start")
        [name] = [n for n in live.procs if n.startswith("worker")]
        worker = live.procs.pop(name)
        if signal_to == "process group":  # Ctrl-C, systemd's KillMode=control-group
            os.killpg(worker.pid, signal.SIGTERM)
        else:  # docker stop, Kubernetes: PID 1 of the container only
            os.kill(worker.pid, signal.SIGTERM)
        worker.wait(timeout=10)  # django-q2's own stop hung here for 20 s and more
        assert running_in_session(worker.pid) == [], "the worker left processes behind"
        [execution] = bob.get(executions).json()["results"]
        assert execution["status"] == "pending"  # handed back, not held until the lease runs out
        detail = bob.get(f"{base}/executions/{execution['id']}/").json()
        assert "the worker stopped during this attempt" in detail["attempts"][0]["error"]
        handed_back = time.monotonic()
        live.start_worker(f"worker-after-{project}")
        done = wait_for(lambda: [e for e in bob.get(executions).json()["results"] if e["status"] == "succeeded"],
                        timeout=LEASE - 5, message="delivery by the other worker")
        assert time.monotonic() - handed_back < LEASE
        assert [r["headers"]["webhook-id"] for r in receiver.requests] == [done[0]["delivery_id"]] * 2
    finally:
        receiver.close()
