"""In-process measurements, run by the bench in a process of its own with the live server's
settings and database: `python -m tests.bench.inproc COMMAND '{json kwargs}'` prints
`RESULT {json}` last.

The live worker must not race the evaluations timed here: this process never enqueues them
(the event_committed receiver is disconnected) and evaluates each event itself."""

import json
import sys
import time

from tests.bench.harness import history_rows, median, percentile


def setup():
    import django

    django.setup()
    from events.signals import event_committed

    event_committed.disconnect(dispatch_uid="automations.evaluate")


def team():
    from teams.models import Team

    return Team.objects.get(name="acme")


def project(name):
    return team().projects.get_or_create(name=name)[0]


def run(project_name, run_id):
    from tracking.models import Run

    return Run.objects.get_or_create(project=project(project_name), run_id=run_id, defaults={"name": run_id})[0]


def metric_event(i, metrics):
    """The i-th of a mix of metric automations: threshold, change and z-score in turn, on the
    metrics in turn, with windows and thresholds that vary."""
    metric = f"m{i % metrics}"
    kind = i % 3
    if kind == 0:
        return {"type": "RUN_METRIC_THRESHOLD", "metric": metric, "window": 5 + i % 20, "agg": ("AVERAGE", "MIN", "MAX")[i % 3],
                "cmp": "$gt", "threshold": 1.2 + (i % 7) / 20}
    if kind == 1:
        return {"type": "RUN_METRIC_CHANGE", "metric": metric, "current_window": 5 + i % 10, "prior_window": 20 + i % 40,
                "change_amount": 0.05 + (i % 5) / 20}
    return {"type": "RUN_METRIC_ZSCORE", "metric": metric, "window": 10 + i % 30, "basis": "history" if i % 2 else "runs", "threshold": 2}


def metric_automations(project_name, count, metrics=5, prefix=None):
    """`count` NO_OP metric automations on a project (nothing to deliver: evaluation only)."""
    from tests.engine import make_automation

    p = project(project_name)
    for i in range(count):
        make_automation(team(), f"{prefix or project_name}-{i}", {"type": "project", "project": p.name}, metric_event(i, metrics))
    return {"automations": count}


def webhook_automations(project_name, count, integration):
    """`count` webhook automations on CREATE_ARTIFACT, all to one integration."""
    from automations.models import Automation
    from tests.engine import make_automation

    p = project(project_name)
    first = make_automation(team(), "fan-0", {"type": "project", "project": p.name}, {"type": "CREATE_ARTIFACT"},
                            {"type": "WEBHOOK", "integration": integration, "payload": {"v": "${artifact_version}", "a": "${automation_name}"}})
    fields = {f.attname: getattr(first, f.attname) for f in Automation._meta.concrete_fields if not f.primary_key}
    Automation.objects.bulk_create([Automation(**{**fields, "name": f"fan-{i}"}) for i in range(1, count)], batch_size=200)
    return {"automations": count}


def log_evaluated(r, rows):
    """Log rows, marking their event evaluated (history to stand on, not to time)."""
    from events.models import Event
    from django.utils import timezone
    from tracking.history import log_history

    log_history(r, rows)
    Event.objects.filter(run=r, evaluated_at__isnull=True).update(evaluated_at=timezone.now())


def timed_evaluation(r, rows):
    """Log one batch, then time evaluate_event on its event (ms)."""
    from automations.tasks import evaluate_event
    from events.models import Event
    from tracking.history import log_history

    log_history(r, rows)
    event = Event.objects.filter(run=r, evaluated_at__isnull=True).latest("id")
    started = time.perf_counter()
    evaluate_event(event.pk)
    return (time.perf_counter() - started) * 1000


def evaluation_cost(automations=100, batches=7, rows=1000, metrics=5):
    """evaluate_event time for one rows × metrics batch on a run with a 1,000-row history, in a
    project with `automations` metric automations against one with none."""
    from django.db import connection

    metric_automations("eval-many", automations, metrics)
    runs = {"none": run("eval-none", "r"), "many": run("eval-many", "r")}
    for name, r in runs.items():
        log_evaluated(r, history_rows(0, rows, metrics))
        for other in range(3):  # other runs of the project, for the z-scores against runs
            log_evaluated(run(r.project.name, f"other{other}"), history_rows(100 + other, 50, metrics))
    timings = {name: [] for name in runs}
    for b in range(1, batches + 1):
        for name, r in runs.items():  # interleaved, so that drift hits both alike
            timings[name].append(timed_evaluation(r, history_rows(b, rows, metrics)))
    return {"vendor": connection.vendor, "ms": timings, "median_ms": {k: median(v) for k, v in timings.items()},
            "p95_ms": {k: percentile(v, 95) for k, v in timings.items()}}


def history_size(small=1000, big=1_000_000, batches=9, batch_rows=100, chunk=100_000):
    """evaluate_event time for one batch of `loss` on a run holding `big` rows of history
    against one holding `small`, three automations (threshold, change, z-score) watching it."""
    from django.db import connection

    from tests.engine import make_automation

    p = project("eval-size")
    for i, event in enumerate([
        {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 50, "agg": "AVERAGE", "cmp": "$lt", "threshold": -1},
        {"type": "RUN_METRIC_CHANGE", "metric": "loss", "current_window": 10, "prior_window": 50, "change_amount": 5},
        {"type": "RUN_METRIC_ZSCORE", "metric": "loss", "window": 30, "basis": "history", "threshold": 50},
    ]):
        make_automation(team(), f"size-{i}", {"type": "project", "project": p.name}, event)
    runs = {"small": run("eval-size", "small"), "big": run("eval-size", "big")}

    def loss_rows(start, count):
        return [{"step": s, "metrics": {"loss": 1 + (s % 13) / 10}} for s in range(start, start + count)]

    started = time.perf_counter()
    for name, size in (("small", small), ("big", big)):
        for start in range(0, size, chunk):
            log_evaluated(runs[name], loss_rows(start, min(chunk, size - start)))
    filled = time.perf_counter() - started
    sizes = dict(small=small, big=big)

    def evaluate(count, offset):
        timings = {name: [] for name in runs}
        for b in range(offset, offset + count):
            for name, size in sizes.items():
                timings[name].append(timed_evaluation(runs[name], loss_rows(size + b * batch_rows, batch_rows)))
        return timings

    before_analyze = None
    if connection.vendor == "postgresql":
        # Right after a bulk load the planner's statistics are stale until autovacuum analyzes
        # the table; measured both ways, the figure is the one autovacuum leads to.
        before_analyze = {k: median(v) for k, v in evaluate(3, 0).items()}
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE tracking_metricpoint")
    timings = evaluate(batches, 3)
    return {"rows": sizes, "fill_seconds": filled, "ms": timings, "median_ms": {k: median(v) for k, v in timings.items()},
            "median_ms_before_analyze": before_analyze}


def bare_insert(run_id="r", batches=20, rows=1000, metrics=5):
    """The points of the same batches the API is sent, written by tracking.history._insert_points
    alone (COPY on PostgreSQL, one executemany on SQLite), each in its own transaction; the
    time of the write and its commit only."""
    from django.db import connection, transaction
    from django.utils import timezone

    from tracking.history import _insert_points, _split

    r = run("bare", run_id)
    seconds = 0.0
    for b in range(batches):
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        points = [(r.pk, key, row["step"], *_split(value), now) for row in history_rows(b, rows, metrics) for key, value in row["metrics"].items()]
        started = time.perf_counter()
        with transaction.atomic():
            _insert_points(points)
        seconds += time.perf_counter() - started
    values = batches * rows * metrics
    return {"values": values, "seconds": seconds, "values_per_s": values / seconds}


COMMANDS = {f.__name__: f for f in (metric_automations, webhook_automations, evaluation_cost, history_size, bare_insert)}

if __name__ == "__main__":
    setup()
    result = COMMANDS[sys.argv[1]](**json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}"))
    print("RESULT " + json.dumps(result))
