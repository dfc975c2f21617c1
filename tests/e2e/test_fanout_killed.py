"""Kill the worker (SIGKILL, its whole cluster) while an event's 1,000 webhooks are being sent by
the event's own task, start another: every execution is delivered, none twice at the same time
(the receiver notes any request whose webhook-id was still being answered), and the attempts cut
short are marked as such."""

import json
import time

import pytest

from tests.live import LiveTripline, wait_for
from tests.receivers import CountingReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FANOUT = 1000
AUTOMATIONS = """
import json
from automations.models import Automation
from tests.engine import make_automation
from teams.models import Team
first = make_automation(Team.objects.get(name="acme"), "fan-0", {"type": "project", "project": "fan"}, {"type": "CREATE_ARTIFACT"},
                        {"type": "WEBHOOK", "integration": "fan-hook", "payload": {"v": "${artifact_version}", "a": "${automation_name}"}})
fields = {f.attname: getattr(first, f.attname) for f in Automation._meta.concrete_fields if not f.primary_key}
Automation.objects.bulk_create([Automation(**{**fields, "name": f"fan-{i}"}) for i in range(1, %d)], batch_size=200)
""" % FANOUT
STATS = """
import json
from django.db.models import Count
from automations.models import DeliveryAttempt, Execution
print("STATS" + json.dumps({
    "by_status": dict(Execution.objects.values_list("status").annotate(Count("id"))),
    "attempts": DeliveryAttempt.objects.count(),
    "cut_short": DeliveryAttempt.objects.filter(error__contains="worker stopped during this attempt").count(),
}))
"""


@pytest.fixture
def live(tmp_path):
    # a lease of 1 + 2 + 1 = 4 s: what the killed worker held is delivered again 4 s later
    server = LiveTripline(tmp_path, env={"WEBHOOK_TIMEOUT": "1,2", "DELIVERY_LEASE_MARGIN": "1", "WEBHOOK_RETRY_SCHEDULE": "1,1,1"}).start()
    yield server
    server.stop()


def test_a_fanout_survives_its_worker_being_killed_mid_flight(live):
    receiver = CountingReceiver(delay=0.02)
    try:
        alice, bob = live.session("alice"), live.session("bob")
        base = f"{live.url}/api/v1/teams/acme"
        assert bob.post(f"{base}/projects/", json={"name": "fan"}).status_code == 201
        assert alice.post(f"{base}/integrations/", json={"kind": "webhook", "name": "fan-hook", "url": receiver.url}).status_code == 201
        live.manage("shell", "-c", AUTOMATIONS)
        started = time.monotonic()
        assert bob.post(f"{base}/projects/fan/artifacts/", json={"name": "model", "type": "model"}).status_code == 201
        wait_for(lambda: receiver.received()[0] >= 100, timeout=60, interval=0.02, message="the fan-out to be under way")
        live.kill("worker")  # SIGKILL: the worker, its cluster, the task and its delivery threads
        at_kill = receiver.received()[1]
        assert at_kill < FANOUT, "the fan-out was over before the kill: the test proves nothing"
        live.start_worker("worker2")
        wait_for(lambda: receiver.received()[1] >= FANOUT, timeout=70, interval=0.2, message=f"{FANOUT} distinct deliveries")
        wait_for(lambda: bob.get(f"{base}/executions/?status=succeeded&limit=1").json()["count"] == FANOUT, timeout=20,
                 message="every execution succeeded")
        stats = json.loads(live.manage("shell", "-c", STATS).stdout.split("STATS", 1)[1])
        requests, distinct = receiver.received()
        print(f"\nFANOUT-KILLED {distinct} delivered ({requests} requests, {at_kill} before the kill) in "
              f"{time.monotonic() - started:.1f} s; {stats}")
        assert receiver.overlaps == []  # never twice at the same time
        assert distinct == FANOUT and stats["by_status"] == {"succeeded": FANOUT}
        assert requests <= stats["attempts"]  # every request the receiver got is a recorded attempt
    finally:
        receiver.close()
