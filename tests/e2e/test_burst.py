"""A burst whose queue is deeper than the delivery lease, evaluations and deliveries competing in
one queue, through the real server and worker with a fast receiver on loopback: everything
drains, nothing is sent twice, and delivery tasks run at most once per attempt.

The evaluation task delivers what the events it evaluates trigger itself, one execution after
another here (one delivery thread), so the last executions wait in the queue longer than the lease."""

import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.live import LiveTripline, wait_for
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e
EVENTS, AUTOMATIONS = 40, 5
LEASE = 1.0
DELAY = 0.3  # the receiver's answer: an event's 5th execution waits 4 × 0.3 s > LEASE
TASK_RUN = re.compile(r"INFO django-q \S+ processing \S+ 'automations\.tasks\.(\w+)'")
STATS = """
import json
from django.db.models import Count, F, Max, Min, Sum
from automations.models import DeliveryAttempt, Execution
from events.models import Event
waits = DeliveryAttempt.objects.filter(number=1).annotate(wait=F("started_at") - F("execution__triggered_at"))
print("STATS" + json.dumps({
    "by_status": dict(Execution.objects.values_list("status").annotate(Count("id"))),
    "attempts": DeliveryAttempt.objects.count(),
    "attempts_by_id": dict(Execution.objects.values_list("delivery_id", "attempt_count")),
    "events": Event.objects.count(),
    "max_wait": max(a.wait.total_seconds() for a in waits),
    "span": (Execution.objects.aggregate(t=Max("finished_at"))["t"] - Execution.objects.aggregate(t=Min("triggered_at"))["t"]).total_seconds(),
}))
"""


@pytest.fixture
def live(tmp_path):
    # A lease of 1 s (0.3 + 0.5 + 0.2); the burst below queues longer than that, however fast
    # the machine, since each of its deliveries takes the receiver 0.3 s, one at a time.
    server = LiveTripline(tmp_path, env={"WEBHOOK_TIMEOUT": "0.3,0.5", "DELIVERY_LEASE_MARGIN": "0.2", "DELIVERY_THREADS": "1"}).start()
    yield server
    server.stop()


def test_a_burst_deeper_than_the_lease_drains_with_one_task_run_per_attempt(live):
    receiver = Receiver()
    try:
        alice, bob = live.session("alice"), live.session("bob")
        base = f"{live.url}/api/v1/teams/acme"
        assert bob.post(f"{base}/projects/", json={"name": "burst"}).status_code == 201
        assert alice.post(f"{base}/integrations/", json={"kind": "webhook", "name": "fast", "url": receiver.url}).status_code == 201
        for i in range(AUTOMATIONS):
            created = bob.post(f"{base}/automations/", json={
                "name": f"hook {i}", "scope": {"type": "project", "project": "burst"}, "event": {"type": "CREATE_ARTIFACT"},
                "action": {"type": "WEBHOOK", "integration": "fast", "payload": {"v": "${artifact_version_string}", "n": i}},
            })
            assert created.status_code == 201, created.text
        for _ in range(EVENTS * AUTOMATIONS):
            receiver.answer(200, b"ok", delay=DELAY)
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: bob.post(f"{base}/projects/burst/artifacts/", json={"name": f"m{i % 10}", "type": "model"}).status_code,
                                  range(EVENTS)))
        assert codes == [201] * EVENTS
        sent = time.monotonic() - started
        expected = EVENTS * AUTOMATIONS
        wait_for(lambda: len({r["headers"]["webhook-id"] for r in receiver.requests}) >= expected, timeout=240, interval=0.5,
                 message=f"{expected} webhooks")
        drained = time.monotonic() - started
        wait_for(lambda: bob.get(f"{base}/executions/?status=succeeded&limit=1").json()["count"] == expected, timeout=30, message="all succeeded")
        stats = json.loads(live.manage("shell", "-c", STATS).stdout.split("STATS", 1)[1])
        runs = {}
        for func in TASK_RUN.findall(live.logs("worker")):
            runs[func] = runs.get(func, 0) + 1
        received = Counter(r["headers"]["webhook-id"] for r in receiver.requests)
        print(f"\nBURST {EVENTS} events x {AUTOMATIONS} webhooks sent in {sent:.1f} s, drained in {drained:.1f} s "
              f"({expected / drained:.0f} deliveries/s); longest wait in the queue {stats['max_wait']:.1f} s vs a {LEASE:g} s lease; "
              f"{stats['attempts']} attempts, task runs {runs}")
        assert stats["by_status"] == {"succeeded": expected}
        # every request the receiver got is a recorded attempt: none sent by a task that lost its lease
        assert received == stats["attempts_by_id"]
        assert stats["max_wait"] > LEASE, "the queue was never deeper than the lease: the test proves nothing"
        assert runs.get("deliver_due", 0) <= stats["attempts"]
        # evaluation tasks: one waits at a time, and each works through every event not evaluated
        # yet, so a burst costs far fewer tasks than events and none is re-enqueued while queued
        assert 0 < runs.get("evaluate_pending", 0) < stats["events"]
    finally:
        receiver.close()
