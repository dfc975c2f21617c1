"""Rows 3, 4 and 5: metric history — evaluation with 100 automations against none, ingestion
through the API against the bare insert, and evaluation on a long history."""

import json
import time

import pytest

from .harness import BenchServer, history_rows
from .results import record

pytestmark = pytest.mark.bench
BATCHES, ROWS, METRICS = 20, 1000, 5
INGEST_GOAL = {"sqlite": 0.5, "postgresql": 0.7}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = BenchServer(tmp_path_factory.mktemp("history")).start()
    yield server
    server.stop()


def test_evaluating_a_batch_with_100_metric_automations_vs_none(server):
    result = server.inproc("evaluation_cost", profile="evaluate-100", automations=100, batches=9, rows=ROWS, metrics=METRICS)
    none, many = result["median_ms"]["none"], result["median_ms"]["many"]
    record("3a", f"evaluate_event, {ROWS:,} rows × {METRICS} metrics: 100 automations vs none",
           f"{none:,.1f} ms", f"{many:,.1f} ms", "≤ 1.25", ratio=many / none, met=many / none <= 1.25, **result)


def test_evaluation_at_a_million_history_rows_vs_a_thousand(server):
    result = server.inproc("history_size", small=1000, big=1_000_000, batches=15)
    small, big = result["median_ms"]["small"], result["median_ms"]["big"]
    record("5", "evaluate_event at 1,000,000 history rows vs 1,000",
           f"{small:,.1f} ms", f"{big:,.1f} ms", "keep ≤ 1.5", ratio=big / small, met=big / small <= 1.5, **result)


def ingest(server, project):
    """Post BATCHES batches one after another to a run of `project`; (API values/s, values/s
    until the last event is evaluated, drained?)."""
    base, bob = server.api("bob")
    assert bob.post(f"{base}/projects/{project}/runs/", json={"id": "r"}).status_code == 201
    url = f"{base}/projects/{project}/runs/r/history/"
    project_id = server.db.value("SELECT id FROM tracking_project WHERE name = %s", project)
    # encoded before the clock starts, as the bare insert's points are built before its clock:
    # the client's JSON encoding (2 ms a batch) is not the server's ingestion
    bodies = [json.dumps({"rows": history_rows(b, ROWS, METRICS)}).encode() for b in range(BATCHES)]
    started = time.monotonic()
    for body in bodies:
        response = bob.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=120)
        assert response.status_code == 201, response.text
    posted = time.monotonic()
    drained, _ = server.wait_drained(lambda: not server.db.value(
        "SELECT COUNT(*) FROM events_event WHERE project_id = %s AND evaluated_at IS NULL", project_id))
    evaluated = time.monotonic()
    values = BATCHES * ROWS * METRICS
    return values / (posted - started), values / (evaluated - started), drained


def test_history_ingest_through_the_api(server):
    base, bob = server.api("bob")
    assert bob.post(f"{base}/projects/", json={"name": "drain-none"}).status_code == 201
    server.inproc("metric_automations", project_name="drain-many", count=100, metrics=METRICS)
    assert bob.post(f"{base}/projects/", json={"name": "warm-up"}).status_code == 201
    assert bob.post(f"{base}/projects/warm-up/runs/", json={"id": "r"}).status_code == 201
    for b in range(4):  # warm-up: both gunicorn workers have served a batch
        assert bob.post(f"{base}/projects/warm-up/runs/r/history/", json={"rows": history_rows(b, 100, METRICS)}).status_code == 201

    # the bare insert before and after the API passes, averaged: the machine's drift hits both
    bare_before = server.inproc("bare_insert", run_id="before", batches=BATCHES, rows=ROWS, metrics=METRICS)
    api_none, drained_none, ok_none = ingest(server, "drain-none")
    with server.profile("drain-100"):
        api_many, drained_many, ok_many = ingest(server, "drain-many")
    bare_after = server.inproc("bare_insert", run_id="after", batches=BATCHES, rows=ROWS, metrics=METRICS)
    bare = {"values_per_s": (bare_before["values_per_s"] + bare_after["values_per_s"]) / 2, "before": bare_before, "after": bare_after}
    vendor = server.db.vendor
    record("3b", "  drained ingest: 100 automations vs none",
           f"{drained_none:,.0f} values/s", f"{drained_many:,.0f} values/s{'' if ok_many else ' (NOT drained)'}", "≥ 0.8",
           ratio=drained_many / drained_none, met=ok_none and ok_many and drained_many / drained_none >= 0.8,
           api_values_per_s={"none": api_none, "many": api_many})
    goal = INGEST_GOAL[vendor]
    record("4", "history ingestion: API vs bare insert",
           f"{bare['values_per_s']:,.0f} values/s", f"{api_none:,.0f} values/s", f"≥ {goal}",
           ratio=api_none / bare["values_per_s"], met=api_none / bare["values_per_s"] >= goal, bare=bare)
