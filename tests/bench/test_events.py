"""Row 1: artifact events at 50/s → signed webhooks received; row 6: the memory of the server's
processes after the warm-up, halfway through that load and after it."""

import functools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests

from .harness import DRAIN_SECONDS, SECONDS, Receiver, open_loop, percentile, thread_session
from .results import record

pytestmark = pytest.mark.bench
RATE = 50
GOAL_P95_MS = {"sqlite": 250, "postgresql": 100}


def ms(seconds):
    """An event not delivered within the wait counts as infinitely late."""
    return f"> {DRAIN_SECONDS:g} s (undelivered)" if seconds == float("inf") else f"{seconds * 1000:,.0f} ms"


def test_artifact_events_at_50_per_second_to_webhooks(bench_server):
    server = bench_server()
    receiver = Receiver()
    try:
        base, alice = server.api("alice")
        _, bob = server.api("bob")
        assert bob.post(f"{base}/projects/", json={"name": "bench"}).status_code == 201
        assert alice.post(f"{base}/integrations/", json={"kind": "webhook", "name": "bench-hook", "url": receiver.url}).status_code == 201
        assert bob.post(f"{base}/automations/", json={
            "name": "bench", "scope": {"type": "project", "project": "bench"}, "event": {"type": "CREATE_ARTIFACT"},
            "action": {"type": "WEBHOOK", "integration": "bench-hook", "payload": {"v": "${artifact_version}"}},
        }).status_code == 201
        session = thread_session(server.tokens, "bob")

        def send(i, post=None):
            response = (post or session().post)(f"{base}/projects/bench/artifacts/", json={"name": f"model-{i % 10}", "type": "model"}, timeout=120)
            if response.status_code != 201:
                raise RuntimeError(f"{response.status_code} {response.text[:200]}")
            return str(response.json()["id"])  # what ${artifact_version} sends

        # Warm-up: every process has imported and connected. Each call on a new connection, 8 at a
        # time, so that both gunicorn workers serve some: a worker's first requests grow it by
        # some 8 MiB, which the memory rows would otherwise count as growth under load.
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: send(i, post=functools.partial(requests.post, headers=bob.headers)), range(40)))
        server.wait_drained(lambda: receiver.count() >= 40, timeout=60)
        memory_before, metrics_before, skip = server.memory(), server.metrics(), receiver.count()
        memory_middle = {}
        halfway = threading.Timer(SECONDS / 2, lambda: memory_middle.update(server.memory()))
        with server.profile("events-50"):
            halfway.start()
            calls = open_loop(RATE, SECONDS, send)
            halfway.join()
            stored = {c["value"]: c for c in calls if c["ok"]}
            drained, waited = server.wait_drained(lambda: receiver.count() - skip >= len(stored))
        metrics_after, memory_after = server.metrics(), server.memory()
        arrivals = receiver.arrivals[skip:]
    finally:
        receiver.close()

    vendor = server.db.vendor
    first_arrival = {}
    for arrived, _, body in arrivals:
        first_arrival.setdefault(json.loads(body)["v"], arrived)
    webhook = [first_arrival.get(v, float("inf")) - c["scheduled"] for v, c in stored.items()]
    after_response = [first_arrival[v] - c["done"] for v, c in stored.items() if v in first_arrival]
    call = [c["done"] - c["scheduled"] for c in calls]
    achieved = len(stored) / (max(c["done"] for c in calls) - calls[0]["scheduled"])
    delivered = sum(v in first_arrival for v in stored)

    def delta(name, labels=None):
        key = name if labels is None else (name, tuple(sorted(labels.items())))
        return metrics_after.get(key, 0.0) - metrics_before.get(key, 0.0)

    tasks, succeeded = delta("tripline_delivery_tasks_total"), delta("tripline_deliveries_total", {"action": "WEBHOOK", "outcome": "succeeded"})
    evaluations = delta("tripline_evaluation_seconds_count")
    statuses = dict(server.db.rows("SELECT status, COUNT(*) FROM automations_execution GROUP BY status"))

    record("1a", f"{RATE} artifact events/s × {SECONDS:g} s, open loop: API rate", f"{RATE}/s scheduled",
           f"{achieved:.1f}/s (call p50 {ms(percentile(call, 50))}, p95 {ms(percentile(call, 95))})",
           "keeps 50/s (≥ 0.98)", ratio=achieved / RATE, met=achieved / RATE >= 0.98 and len(stored) == len(calls),
           calls=len(calls), failed=len(calls) - len(stored), call_p50_ms=percentile(call, 50) * 1000, call_p95_ms=percentile(call, 95) * 1000,
           call_max_ms=max(call) * 1000)
    goal = GOAL_P95_MS[vendor]
    p50, p95 = percentile(webhook, 50), percentile(webhook, 95)
    stages = stage_percentiles(server.db, first_version=min(int(v) for v in stored) if stored else 0)
    record("1b", "  event → webhook received (from the scheduled send)", f"p95 ≤ {goal} ms", f"p50 {ms(p50)}, p95 {ms(p95)}",
           f"p95 ≤ {goal} ms", ratio=p95 / (goal / 1000), met=p95 * 1000 <= goal and drained, stages_ms=stages,
           p50_ms=p50 * 1000, p95_ms=p95 * 1000, p99_ms=percentile(webhook, 99) * 1000,
           after_api_response_p50_ms=percentile(after_response, 50) * 1000 if after_response else None,
           after_api_response_p95_ms=percentile(after_response, 95) * 1000 if after_response else None)
    per = tasks / succeeded if succeeded else None
    record("1c", "  delivery task runs per delivery; backlog drained", "≤ 1 task per attempt",
           f"{per:.2f} tasks/delivery; {delivered:,}/{len(stored):,} delivered {waited:.0f} s after the load" if per else
           f"n/a (no metrics); {delivered:,}/{len(stored):,} delivered {waited:.0f} s after the load",
           f"≤ 1.0, all within {DRAIN_SECONDS:g} s", ratio=per, met=drained and per is not None and per <= 1.05,
           delivered=delivered, stored=len(stored), drained=drained, waited_s=waited, delivery_tasks=tasks, deliveries_succeeded=succeeded,
           evaluation_tasks_per_event=evaluations / len(stored) if stored else None, executions_by_status=statuses,
           duplicate_arrivals=len(arrivals) - len(first_arrival))
    record_memory(memory_before, memory_middle, memory_after, events=len(stored))


def stage_percentiles(db, first_version):
    """Where an event's time went, from the database's own timestamps (ms, p50 and p95): stored →
    evaluated → its first attempt started → delivered, for the versions of the load (from `first_version`)."""
    def when(value):
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    rows = db.rows(
        "SELECT e.created_at, e.evaluated_at, a.started_at, x.finished_at FROM automations_execution x"
        " JOIN events_event e ON e.id = x.event_id JOIN automations_deliveryattempt a ON a.execution_id = x.id AND a.number = 1"
        " JOIN tracking_artifactversion v ON v.id = e.version_id WHERE x.is_test = %s AND v.id >= %s AND x.finished_at IS NOT NULL",
        False, first_version)
    spans = {"stored → evaluated": (0, 1), "evaluated → attempt started": (1, 2), "attempt started → delivered": (2, 3)}
    out = {}
    for name, (a, b) in spans.items():
        values = [(when(row[b]) - when(row[a])).total_seconds() for row in rows]
        out[name] = {"p50": percentile(values, 50) * 1000, "p95": percentile(values, 95) * 1000} if values else None
    if out and all(out.values()):
        print("bench: row 1 stages (ms): " + "; ".join(f"{k} p50 {v['p50']:,.0f}, p95 {v['p95']:,.0f}" for k, v in out.items()))
    return out


def record_memory(before, middle, after, events):
    """Row 6: PSS (and RSS) of each gunicorn worker, and summed over the processes of `manage.py
    worker`, read after the warm-up, halfway through the load and after it. The goal is judged on
    the second half (middle → after): in its first seconds of load a process grows once, for good
    (the delivery threads and their connections start, pages shared with the process it was forked
    from are copied as they are written), while what still grows in the second half would grow
    without end. The whole load's growth is shown beside it, and both go to the JSON."""
    def fmt(m):
        return f"PSS {m['pss_mib']:.0f} / RSS {m['rss_mib']:.0f} MiB" + (f", {m['processes']} processes" if "processes" in m else "")

    def row(what, b, m, a, **details):
        half, whole = a["pss_mib"] / m["pss_mib"], a["pss_mib"] / b["pss_mib"]
        record("6", f"memory: {what}, second half of row 1's load", f"{fmt(m)} halfway",
               f"{fmt(a)} after; {whole:.2f}× since the warm-up ({fmt(b)})", "report; no growth (≤ 1.10)",
               ratio=half, met=half <= 1.10, whole_load_ratio=whole,
               pss_mib_per_1000_events_second_half=(a["pss_mib"] - m["pss_mib"]) / (events / 2) * 1000 if events else None,
               after_warm_up=b, halfway=m, after=a, **details)

    for label in sorted(before):
        if label.startswith("gunicorn") and label in middle and label in after:
            row(label, before[label], middle[label], after[label])
    # summed over the processes alive at each moment: qcluster replaces a task process every 500 tasks
    readings = [{label: m[label] for label in m if not label.startswith("gunicorn")} for m in (before, middle, after)]
    totals = [{"pss_mib": sum(p["pss_mib"] for p in r.values()), "rss_mib": sum(p["rss_mib"] for p in r.values()), "processes": len(r)}
              for r in readings]
    row("manage.py worker, all its processes (sum)", *totals, processes=dict(zip(("after_warm_up", "halfway", "after"), readings)))
