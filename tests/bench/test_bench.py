"""`make bench`: prints figures; asserts nothing about speed (timed assertions flake).

Runs on the embedded default unless DATABASE_URL / REDIS_URL say otherwise."""

import statistics
import time

import pytest
from django.db import connection

from automations.tasks import evaluate_event
from events.models import Event
from tests.engine import make_automation
from tests.live import LiveTripline, wait_for
from tests.receivers import Receiver
from tracking.history import log_history
from tracking.models import Run

pytestmark = pytest.mark.bench


def report(name, value, unit, detail=""):
    print(f"\nBENCH {name}: {value:,.1f} {unit} {detail} [{connection.vendor}]")


@pytest.mark.django_db(transaction=True)
def test_history_ingest_throughput(team, project, api, bob):
    Run.objects.create(project=project, run_id="bench", name="bench")
    client = api(bob)
    batches, rows_per_batch, metrics = 20, 1000, 4
    started = time.perf_counter()
    for b in range(batches):
        rows = [{"step": b * rows_per_batch + i, "metrics": {f"m{k}": i * 0.001 + k for k in range(metrics)}} for i in range(rows_per_batch)]
        assert client.post("/api/v1/teams/acme/projects/vision/runs/bench/history/", {"rows": rows}, format="json").status_code == 201
    elapsed = time.perf_counter() - started
    report("history ingest (API, 1,000-row batches x 4 metrics)", batches * rows_per_batch * metrics / elapsed, "values/s",
           f"({batches * rows_per_batch / elapsed:,.0f} rows/s)")


@pytest.mark.django_db(transaction=True)
def test_metric_evaluation_latency(team, project, alice):
    run = Run.objects.create(project=project, run_id="bench", name="bench", user=alice)
    log_history(run, [{"step": i, "metrics": {"loss": 1 + (i % 13) / 10}} for i in range(100_000)])
    for i, event in enumerate([
        {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 50, "agg": "AVERAGE", "cmp": "$lt", "threshold": -1},
        {"type": "RUN_METRIC_CHANGE", "metric": "loss", "current_window": 10, "prior_window": 50, "change_amount": 5},
        {"type": "RUN_METRIC_ZSCORE", "metric": "loss", "window": 30, "basis": "history", "threshold": 50},
    ]):
        make_automation(team, f"a{i}", {"type": "project", "project": "vision"}, event)
    timings = []
    for n in range(30):
        log_history(run, [{"step": 100_000 + n, "metrics": {"loss": 1.0}}])
        event = Event.objects.filter(run=run, type="RUN_HISTORY").latest("id")
        Event.objects.filter(pk=event.pk).update(evaluated_at=None)
        started = time.perf_counter()
        evaluate_event(event.pk)
        timings.append((time.perf_counter() - started) * 1000)
    report("evaluate one history batch, 3 metric automations, 100,000 rows in history (median)", statistics.median(timings), "ms",
           f"(p95 {sorted(timings)[int(len(timings) * 0.95)]:.1f} ms)")


def test_event_to_webhook_latency(tmp_path):
    live = LiveTripline(tmp_path).start()
    receiver = Receiver()
    try:
        alice, bob = live.session("alice"), live.session("bob")
        base = f"{live.url}/api/v1/teams/acme"
        bob.post(f"{base}/projects/", json={"name": "bench"})
        alice.post(f"{base}/integrations/", json={"kind": "webhook", "name": "b", "url": receiver.url})
        bob.post(f"{base}/automations/", json={"name": "b", "scope": {"type": "project", "project": "bench"}, "event": {"type": "CREATE_ARTIFACT"},
                                               "action": {"type": "WEBHOOK", "integration": "b", "payload": {"v": "${artifact_version_string}"}}})
        latencies = []
        for i in range(20):
            started = time.perf_counter()
            bob.post(f"{base}/projects/bench/artifacts/", json={"name": "m", "type": "model"})
            wait_for(lambda: len(receiver.requests) > i, timeout=30, interval=0.01)
            latencies.append((time.perf_counter() - started) * 1000)
        report("artifact created -> signed webhook received (real server + qcluster, median of 20)", statistics.median(latencies), "ms",
               f"(max {max(latencies):.0f} ms; broker: {'redis' if 'REDIS_URL' in live.env and live.env['REDIS_URL'] else 'database'})")
        burst = 100
        started = time.perf_counter()
        for _ in range(burst):
            bob.post(f"{base}/projects/bench/artifacts/", json={"name": "m", "type": "model"})
        wait_for(lambda: len(receiver.requests) >= 20 + burst, timeout=300, interval=0.05)
        report(f"burst of {burst} events -> {burst} webhooks delivered", burst / (time.perf_counter() - started), "deliveries/s",
               "(one worker, 2 processes)")
    finally:
        receiver.close()
        live.stop()
