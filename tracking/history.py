"""Metric history: one bulk insert per batch, and the per-run latest values kept current."""

import bisect
import json
import math

from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Sum, Value
from django.utils import timezone

from . import summary
from .models import MetricPoint, MetricSummary, Run, RunMetric, finite_number, logged_value
from .signals import history_logged

POINT_COLUMNS = ("run_id", "key", "step", "value", "raw", "timestamp")
# At most this many points of one metric in one response (API.md); `samples` may ask for fewer.
PAGE_POINTS = 10_000


def _split(value):
    """(value, raw): finite numbers go to `value`, anything else is kept whole, as logged, in
    `raw` (NaN and ±Infinity as their JSON literals)."""
    if finite_number(value):
        return float(value), None
    return None, json.dumps(value, allow_nan=True, ensure_ascii=False)


@transaction.atomic
def log_history(run: Run, rows, user=None, skip_stored=False):
    """Store validated rows `[{"step", "metrics", "timestamp"?}]` for `run`.

    A constant number of queries whatever the batch size: one bulk insert of points, one upsert
    of the per-metric latest values (per 142 metrics on SQLite), one upsert of the batch's aggregate into
    the multi-resolution summary (tracking/summary.py), one event. With `skip_stored`, a point
    identical to one already stored (key, step, timestamp and value) is not a new point: one
    more query finds those among the batch's step and time range, and they are left out, so
    they neither duplicate the history nor feed an automation's window twice (MLflow clients
    re-send a run's metrics when they log a model).
    """
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    folded = None if skip_stored else _fold_columns(run.pk, rows, now, adapt)
    if folded is None:
        points = _points(rows, now)
        if skip_stored and points:
            points = _new_points(run, points)
        if not points:
            return 0
        folded = _fold(run.pk, points, adapt)
    to_insert, latest, base = folded
    _insert_points(to_insert)

    # The run's metric records, each added to (or created) by one upsert that locks their rows in
    # key order until the commit: concurrent batches of one run add up, and reach the summary
    # below one at a time.
    top_step = _add_to_records(run.pk, latest, now)
    summary.upsert(connection, [(run.pk, *row) for row in summary.every_level(base)])

    if skip_stored:
        steps, accepted = [point[2] for point in points], len({point[0] for point in points})
    else:
        steps, accepted = [row["step"] for row in rows], len(rows)
    history_logged.send(
        sender=Run, run=run, keys=sorted(latest), first_step=min(steps), last_step=max(steps), top_step=top_step, rows=accepted, user=user
    )
    return accepted


def _points(rows, now):
    """[(row number, key, step, value, raw, timestamp)] of `rows`, a point per value."""
    points = []
    append, isfinite = points.append, math.isfinite
    for number, row in enumerate(rows):
        step, ts = row["step"], row.get("timestamp") or now
        for key, logged in row["metrics"].items():
            # _split inlined for the common case, a finite float or int (not bool): 5,000 calls
            # a batch measured a tenth of the request
            kind = type(logged)
            if kind is float and isfinite(logged):
                append((number, key, step, logged, None, ts))
            elif kind is int:
                append((number, key, step, float(logged), None, ts))
            else:
                append((number, key, step, *_split(logged), ts))
    return points


def _fold(run_pk, points, adapt):
    """(rows to insert, {key: (latest step, value, raw, count)}, level-0 summary buckets
    {(key, step >> 6): [lo, hi, s_lo, s_hi, n, t0]}) of `points`, in one pass.

    A timestamp is adapted for the database once per row, not once per value (a fifth of the
    request when it was per value): the points of one row are consecutive and share their
    timestamp. The same pass folds each finite value into its level-0 summary bucket
    (summary.add_point inlined: a call per value would cost more than the rest of this loop)."""
    latest, base, to_insert = {}, {}, []
    last_ts = last_db = None
    shift = summary.BASE_SHIFT
    for _, key, step, value, raw, ts in points:
        prev = latest.get(key)
        if prev is None:
            latest[key] = (step, value, raw, 1)
        elif step >= prev[0]:
            latest[key] = (step, value, raw, prev[3] + 1)
        else:
            latest[key] = (*prev[:3], prev[3] + 1)
        if ts is not last_ts:
            last_ts, last_db = ts, adapt(ts)
        to_insert.append((run_pk, key, step, value, raw, last_db))
        if value is not None:
            agg = base.get((key, step >> shift))
            if agg is None:
                base[(key, step >> shift)] = [value, value, step, step, 1, last_db]
                continue
            if value < agg[0]:
                agg[0] = value
            elif value > agg[1]:
                agg[1] = value
            if step < agg[2]:
                agg[2] = step
            elif step > agg[3]:
                agg[3] = step
            agg[4] += 1
            if last_db is not agg[5] and last_db < agg[5]:
                agg[5] = last_db
    return to_insert, latest, base


def _fold_columns(run_pk, rows, now, adapt):
    """What `_fold(run_pk, _points(rows, now), adapt)` returns, for the usual batch only: every
    row logs the same metrics in the same order, every value a finite number, steps never
    decreasing. None for any other batch. The batch is read a metric (a column) at a time, and
    each level-0 summary bucket is a slice of rows, so min, max and the slices run in C instead
    of a Python step per value (the per-value fold measured a quarter of the request)."""
    keys = tuple(rows[0]["metrics"]) if rows else ()
    if not keys or any(tuple(row["metrics"]) != keys for row in rows):
        return None
    steps = [row["step"] for row in rows]
    if steps != sorted(steps):
        return None
    isfinite = math.isfinite
    columns = []
    for column in zip(*[row["metrics"].values() for row in rows]):
        kinds = set(map(type, column))
        if not kinds <= {float, int}:  # text, bool, None: kept whole in `raw` by _fold
            return None
        if int in kinds:
            column = tuple(map(float, column))
        if not all(map(isfinite, column)):
            return None
        columns.append(column)
    adapted = {}
    stamps = [adapted.get(ts) or adapted.setdefault(ts, adapt(ts)) for ts in (row.get("timestamp") or now for row in rows)]
    to_insert = [
        (run_pk, key, step, value, None, ts)
        for step, ts, values in zip(steps, stamps, zip(*columns))
        for key, value in zip(keys, values)
    ]
    n, top = len(rows), steps[-1]
    last = n - 1  # the last row at the highest step: a later row wins a tie, as in _fold
    latest = {key: (top, column[last], None, n) for key, column in zip(keys, columns)}
    base = {}
    shift, start = summary.BASE_SHIFT, 0
    while start < n:
        bucket = steps[start] >> shift
        end = bisect.bisect_left(steps, (bucket + 1) << shift, start)
        t0 = min(stamps[start:end])
        for key, column in zip(keys, columns):
            part = column[start:end]
            base[(key, bucket)] = [min(part), max(part), steps[start], steps[end - 1], end - start, t0]
        start = end
    return to_insert, latest, base


def _add_to_records(run_pk, latest, now):
    """Add a batch's `latest` ({key: (step, value, raw, count)}) to the run's RunMetric records in
    one upsert: a new metric gets its record, an existing one adds the count and takes the
    batch's last value when its step is not behind the stored one (every right-hand side reads
    the row as it was). One statement (per 142 metrics on SQLite) where reading, creating and
    updating the records took three to four. Returns the highest step the run now holds of these
    metrics: more than the batch's own when it logged earlier steps late (a retried upload)."""
    if not latest:
        return None
    qn = connection.ops.quote_name
    table = qn(RunMetric._meta.db_table)
    fields = [RunMetric._meta.get_field(name) for name in ("run", "key", "last_step", "last_value", "last_raw", "count", "updated_at")]
    columns = [qn(field.column) for field in fields]
    run_id, key, step, value, raw, count, updated = columns
    stamp = connection.ops.adapt_datetimefield_value(now)
    newer = f"excluded.{step} >= {table}.{step}"
    sets = [f"{count} = {table}.{count} + excluded.{count}", f"{updated} = excluded.{updated}"]
    sets += [f"{c} = CASE WHEN {newer} THEN excluded.{c} ELSE {table}.{c} END" for c in (value, raw, step)]
    rows = [(run_pk, k, *latest[k], stamp) for k in sorted(latest)]
    size = connection.ops.bulk_batch_size(fields, rows)  # SQLite: 999 parameters a statement
    tops = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), size):  # in key order, as the locks are taken
            chunk = rows[start:start + size]
            values = ", ".join([f"({', '.join(['%s'] * len(columns))})"] * len(chunk))
            cursor.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"
                           f" ON CONFLICT ({run_id}, {key}) DO UPDATE SET {', '.join(sets)} RETURNING {step}", [v for row in chunk for v in row])
            tops += [row[0] for row in cursor.fetchall()]
    return max(tops)


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
    points = MetricPoint.objects.filter(run=run)
    if limit:
        result = {}
        for key in keys:
            recent = points.filter(key=key).order_by("-step", "-id").values_list("step", "value", "raw")[:limit]
            result[key] = [[step, logged_value(value, raw)] for step, value, raw in reversed(recent)]
        return result
    result = {key: [] for key in keys}
    for key, step, value, raw in points.filter(key__in=keys).order_by("key", "step", "id").values_list("key", "step", "value", "raw"):
        result[key].append([step, logged_value(value, raw)])
    return result


def read_history_page(run: Run, keys, min_step=None, max_step=None, samples=None, after=None):
    """One bounded read of `keys` over [min_step, max_step]: `({key: [[step, value], …]}, next)`.

    Without `samples`, at most PAGE_POINTS points per metric; when a metric has more, every
    metric stops at the same place and `next` says where the following page starts (None when
    done), so that no point is sent twice or skipped: `(step, None)`, the next step, or, when
    one step holds more than a page of one metric (MLflow's clients log without steps at step 0),
    `(step, id)`: that step's points after the point `id` (`after`). With `samples`, at most that
    many points per metric over the whole range, chosen in the database (see `_downsample`);
    `next` is None.
    """
    points = MetricPoint.objects.filter(run=run)
    if min_step is not None:
        points = points.filter(step__gte=min_step)
        if after is not None:  # the points of min_step up to `after` came in the page before
            points = points.exclude(step=min_step, id__lte=after)
    if max_step is not None:
        points = points.filter(step__lte=max_step)
    in_order = ("step", "id")
    if samples:
        result = {}
        for key in keys:
            head = list(points.filter(key=key).order_by(*in_order).values_list("step", "value", "raw")[: samples + 1])
            rows = head if len(head) <= samples else _downsample(points.filter(key=key), head[0][0], samples)
            result[key] = [[step, logged_value(value, raw)] for step, value, raw in rows]
        return result, None
    fetched, last = {}, None  # last: the (step, id) every metric's page ends at, inclusive
    for key in keys:
        rows = list(points.filter(key=key).order_by(*in_order).values_list("step", "id", "value", "raw")[: PAGE_POINTS + 1])
        if len(rows) > PAGE_POINTS:
            first, cut = rows[0][0], rows[PAGE_POINTS][0]
            # before the step of the first point left out; within one step, up to its last point sent
            end = (cut - 1, math.inf) if cut > first else rows[PAGE_POINTS - 1][:2]
            last = end if last is None else min(last, end)
        fetched[key] = rows[:PAGE_POINTS]
    history = {key: [[step, logged_value(value, raw)] for step, pk, value, raw in rows if last is None or (step, pk) <= last]
               for key, rows in fetched.items()}
    if last is None:
        return history, None
    return history, (last[0] + 1, None) if last[1] == math.inf else last


def _downsample(points, low, samples):
    """At most `samples` points from `points` (one metric, step `low` onwards): the range is cut
    into `samples // 3` buckets of equal step width, each keeping its first point, its minimum and
    its maximum (one point may be several), so spikes survive. With 1 sample, the range's first
    point; with 2, its minimum and maximum.

    Streamed in step order in chunks, holding only three points per bucket: a million-point
    history costs about a second and a constant amount of memory. (Ranking with window
    functions in the database measured two to three times slower on both databases.)"""
    high = points.order_by("-step").values_list("step", flat=True).first()
    buckets = max(1, samples // 3)
    width = (high - low + buckets) // buckets  # ceil((high - low + 1) / buckets): at most `buckets`
    roles = {1: (0,), 2: (1, 2)}.get(samples, (0, 1, 2))  # 0 first, 1 minimum, 2 maximum
    kept = {}  # bucket -> [first, minimum, maximum] as (step, id, value, raw)
    for point in points.order_by("step", "id").values_list("step", "id", "value", "raw").iterator(chunk_size=20_000):
        bucket = (point[0] - low) // width
        best = kept.get(bucket)
        if best is None:
            kept[bucket] = [point, point, point]
            continue
        value = point[2]
        if value is not None:  # non-finite and text values are kept only as a bucket's first
            if best[1][2] is None or value < best[1][2]:
                best[1] = point
            if best[2][2] is None or value > best[2][2]:
                best[2] = point
    chosen = {best[role] for best in kept.values() for role in roles}
    return [(step, value, raw) for step, _, value, raw in sorted(chosen)]


def read_chart(run: Run, key, min_step=None, max_step=None, samples=2000, times=True):
    """One metric's finite values over [min_step, max_step] for a chart, as three parallel lists
    `{"step", "time", "value", "total", "downsampled"}` (time in epoch seconds; `total` counts
    the finite values in the range). With `times` False a downsampled answer has `time` None:
    the buckets' times cost a fifth of the pass, and charts by step do not need them.

    With at most `samples` points in the range they all come back, exactly (the full resolution
    of a zoomed range): one query, reading at most `samples + 1` rows. With more, the range is
    cut into `samples // 2` buckets of equal step width and each bucket gives two points, its
    minimum and its maximum, so spikes survive: the minimum is drawn at the bucket's first step,
    the maximum at its last (a bucket is about a pixel wide), both at the bucket's first time.
    The range's ends come from the (run, key, step) index. The buckets come from the stored
    summary (tracking/summary.py): the coarsest level still giving `samples // 2` buckets over
    the range is read (at most about 8 × that many rows, whatever the number of points) and its
    buckets grouped `g` at a time into at most `samples // 2` display buckets; a level bucket
    reaching past an explicit `min_step`/`max_step` is aggregated from the points in the range.
    A range of fewer than about 64 × `samples // 2` steps is aggregated from the points in the
    database, in equal-width buckets, in one pass. The whole history (no range) takes its count
    and ends from the summary too: a long one is charted in two queries without reading a point."""
    points = MetricPoint.objects.filter(run=run, key=key)
    if min_step is None and max_step is None:
        # The whole history: its count and ends from the summary's coarsest level (one or two
        # rows), so a long history is charted without reading a point. (The first points in
        # step order measured 0.44 s on PostgreSQL for a million points just after they were
        # loaded, before the planner had statistics.)
        top = MetricSummary.objects.filter(run=run, key=key, level=summary.LEVELS - 1).aggregate(
            n=Sum("n"), low=Min("s_lo"), high=Max("s_hi"))
        if top["n"] and top["n"] > samples:
            buckets = max(1, samples // 2)
            level = summary.chart_level(top["low"], top["high"], buckets)
            if level is not None:
                return _chart_from_summary(run, points, key, top["low"], top["high"], level, buckets, None, None, times)
    if min_step is not None:
        points = points.filter(step__gte=min_step)
    if max_step is not None:
        points = points.filter(step__lte=max_step)
    head = list(points.filter(value__isnull=False).order_by("step", "id").values_list("step", "timestamp", "value")[: samples + 1])
    if len(head) <= samples:
        return {"step": [p[0] for p in head], "time": [p[1].timestamp() for p in head], "value": [p[2] for p in head],
                "total": len(head), "downsampled": False}
    low = head[0][0]
    high = points.filter(value__isnull=False).order_by("-step").values_list("step", flat=True).first()
    buckets = max(1, samples // 2)
    level = summary.chart_level(low, high, buckets)
    if level is not None:
        return _chart_from_summary(run, points, key, low, high, level, buckets, min_step, max_step, times)
    # A range too narrow for the summary's finest level (fewer than about 64 × `buckets` steps):
    # aggregated from the points.
    width = (high - low + buckets) // buckets  # ceil((high - low + 1) / buckets)
    # MIN and MAX skip NULLs (non-finite values): no filter on `value`, which measured 1.5× slower
    # on SQLite. A bucket of non-finite values only gives no point; in a bucket mixing both, the
    # first and last steps (and the first time) may be those of a non-finite value.
    grouped = (
        points.filter(step__gte=low, step__lte=high)
        .annotate(bucket=(F("step") - Value(low)) / Value(width))
        .values("bucket")
        .annotate(lo=Min("value"), hi=Max("value"), s0=Min("step"), s1=Max("step"), n=Count("value"), **({"t0": Min("timestamp")} if times else {}))
        .order_by("bucket")
    )
    steps, stamps, values, total = [], [], [], 0
    for row in _hash_grouped(grouped):
        if row["lo"] is None:
            continue
        total += row["n"]
        t0 = row["t0"].timestamp() if times else None
        steps.append(row["s0"])
        stamps.append(t0)
        values.append(row["lo"])
        if row["s1"] != row["s0"]:
            steps.append(row["s1"])
            stamps.append(t0)
            values.append(row["hi"])
    return {"step": steps, "time": stamps if times else None, "value": values, "total": total, "downsampled": True}


def _chart_from_summary(run, points, key, low, high, level, buckets, min_step, max_step, times):
    steps, stamps, values, total = [], [], [], 0
    summaries = MetricSummary.objects.filter(run=run)
    for lo, hi, s_lo, s_hi, n, t0 in summary.chart_buckets(summaries, points, key, low, high, level, buckets, min_step, max_step):
        total += n
        t0 = t0.timestamp() if times else None
        steps.append(s_lo)
        stamps.append(t0)
        values.append(lo)
        if s_hi != s_lo:
            steps.append(s_hi)
            stamps.append(t0)
            values.append(hi)
    return {"step": steps, "time": stamps if times else None, "value": values, "total": total, "downsampled": True}


def _hash_grouped(grouped):
    """The rows of a GROUP BY over a computed bucket. PostgreSQL cannot estimate how many buckets
    there are, guesses one per row and sorts a million rows on disk to group them (1.0–1.7 s);
    told not to sort, it hashes the ~1,000 buckets instead (0.5 s). Only for this query: the
    setting is put back before the transaction goes on."""
    if connection.vendor != "postgresql":
        return list(grouped)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('enable_sort', 'off', true)")
        try:
            return list(grouped)
        finally:
            cursor.execute("SELECT set_config('enable_sort', 'on', true)")
