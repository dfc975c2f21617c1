"""Row 2: one event → 1,000 webhook automations."""

import time

import pytest

from .harness import DRAIN_SECONDS, Receiver
from .results import record

pytestmark = pytest.mark.bench
FANOUT = 1000
GOAL = 200


def test_one_event_to_1000_webhook_automations(bench_server):
    server = bench_server()
    receiver = Receiver()
    try:
        base, alice = server.api("alice")
        _, bob = server.api("bob")
        assert alice.post(f"{base}/integrations/", json={"kind": "webhook", "name": "fan-hook", "url": receiver.url}).status_code == 201
        server.inproc("webhook_automations", project_name="fan", count=FANOUT, integration="fan-hook")
        before = server.metrics()
        with server.profile("fanout"):
            sent = time.monotonic()
            assert bob.post(f"{base}/projects/fan/artifacts/", json={"name": "model", "type": "model"}, timeout=60).status_code == 201
            drained, waited = server.wait_drained(lambda: receiver.count() >= FANOUT)
        after = server.metrics()
        arrivals = sorted(a[0] for a in receiver.arrivals)
    finally:
        receiver.close()
    ids = {a[1] for a in receiver.arrivals}
    elapsed = (arrivals[-1] if drained else sent + waited) - sent
    rate = min(len(ids), FANOUT) / elapsed if elapsed else 0.0
    tasks = after.get("tripline_delivery_tasks_total", 0) - before.get("tripline_delivery_tasks_total", 0)
    record("2", f"one event → {FANOUT:,} webhook automations", f"{GOAL}/s goal",
           f"{rate:,.1f}/s ({len(ids):,} in {elapsed:.1f} s{'' if drained else ', NOT drained'})",
           f"≥ {GOAL}/s", ratio=rate / GOAL, met=drained and rate >= GOAL,
           delivered=len(ids), arrivals=len(arrivals), seconds=elapsed, drained=drained,
           first_arrival_s=arrivals[0] - sent if arrivals else None, delivery_tasks=tasks, bound_s=DRAIN_SECONDS)
