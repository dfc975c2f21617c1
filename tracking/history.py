"""Metric history: one bulk insert per batch, and the per-run latest values kept current."""

import json
from django.db import connection, transaction
from django.utils import timezone

from .models import MetricPoint, Run, RunMetric, finite_number
from .signals import history_logged

MAX_RAW = 256
POINT_COLUMNS = ("run_id", "key", "step", "value", "raw", "timestamp")


def _split(value):
    """(value, raw): finite numbers go to `value`, anything else is kept as logged in `raw`."""
    if finite_number(value):
        return float(value), None
    raw = json.dumps(value, allow_nan=True)
    return None, raw[:MAX_RAW]


@transaction.atomic
def log_history(run: Run, rows, user=None, skip_stored=False):
    """Store validated rows `[{"step", "metrics", "timestamp"?}]` for `run`.

    A constant number of queries whatever the batch size: one bulk insert of points, one read
    and one bulk write of the per-metric latest values, one event. With `skip_stored`, a point
    identical to one already stored (key, step, timestamp and value) is not a new point: one
    more query finds those among the batch's step and time range, and they are left out, so
    they neither duplicate the history nor feed an automation's window twice (MLflow clients
    re-send a run's metrics when they log a model).
    """
    now = timezone.now()
    points = []  # (row number, key, step, value, raw, timestamp)
    for number, row in enumerate(rows):
        step, ts = row["step"], row.get("timestamp") or now
        for key, logged in row["metrics"].items():
            points.append((number, key, step, *_split(logged), ts))
    if skip_stored and points:
        points = _new_points(run, points)
    if not points:
        return 0

    latest = {}  # key -> (step, value, raw, count)
    for _, key, step, value, raw, _ in points:
        prev = latest.get(key)
        count = (prev[3] if prev else 0) + 1
        if prev is None or step >= prev[0]:
            latest[key] = (step, value, raw, count)
        else:
            latest[key] = (*prev[:3], count)
    adapt = connection.ops.adapt_datetimefield_value
    _insert_points([(run.pk, key, step, value, raw, adapt(ts)) for _, key, step, value, raw, ts in points])

    # Lock the run's metric records so that concurrent batches for one run add up.
    existing = {m.key: m for m in RunMetric.objects.select_for_update().filter(run=run, key__in=list(latest))}
    to_create, to_update = [], []
    for key, (step, value, raw, count) in latest.items():
        record = existing.get(key)
        if record is None:
            to_create.append(RunMetric(run=run, key=key, last_step=step, last_value=value, last_raw=raw, count=count, updated_at=now))
            continue
        record.count += count
        record.updated_at = now
        if step >= record.last_step:
            record.last_step, record.last_value, record.last_raw = step, value, raw
        to_update.append(record)
    if to_create:
        RunMetric.objects.bulk_create(to_create)
    if to_update:
        RunMetric.objects.bulk_update(to_update, ["count", "updated_at", "last_step", "last_value", "last_raw"])

    if skip_stored:
        steps, accepted = [point[2] for point in points], len({point[0] for point in points})
    else:
        steps, accepted = [row["step"] for row in rows], len(rows)
    history_logged.send(
        sender=Run, run=run, keys=sorted(latest), first_step=min(steps), last_step=max(steps), rows=accepted, user=user
    )
    return accepted


def _new_points(run, points):
    """The points not already stored for `run`, nor repeated earlier in the batch."""
    steps = [point[2] for point in points]
    times = [point[5] for point in points]
    seen = set(
        MetricPoint.objects.filter(
            run=run,
            key__in={point[1] for point in points},
            step__gte=min(steps),
            step__lte=max(steps),
            timestamp__gte=min(times),
            timestamp__lte=max(times),
        ).values_list("key", "step", "value", "raw", "timestamp")
    )
    new = []
    for point in points:
        identity = point[1:]
        if identity not in seen:
            seen.add(identity)
            new.append(point)
    return new


def _insert_points(points):
    """One statement per batch: COPY on PostgreSQL (3× an INSERT there), one executemany
    elsewhere (bulk_create would split a batch into many statements on SQLite, 999 parameters
    each, making the query count grow with the batch)."""
    qn = connection.ops.quote_name
    table = qn(MetricPoint._meta.db_table)
    columns = ", ".join(qn(c) for c in POINT_COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for point in points:
                    copy.write_row(point)
        else:
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(POINT_COLUMNS))})", points)


def read_history(run: Run, keys, limit=None):
    """`{key: [[step, value], …]}` in step order, values as logged; with `limit`, only each
    key's most recent values (read newest first, so a long history is never read whole)."""
    def logged(value, raw):
        return value if raw is None else json.loads(raw)

    points = MetricPoint.objects.filter(run=run)
    if limit:
        result = {}
        for key in keys:
            recent = points.filter(key=key).order_by("-step", "-id").values_list("step", "value", "raw")[:limit]
            result[key] = [[step, logged(value, raw)] for step, value, raw in reversed(recent)]
        return result
    result = {key: [] for key in keys}
    for key, step, value, raw in points.filter(key__in=keys).order_by("key", "step", "id").values_list("key", "step", "value", "raw"):
        result[key].append([step, logged(value, raw)])
    return result
