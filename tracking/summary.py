"""A metric's history summarised at several resolutions (`MetricSummary`), kept at ingestion.

Level `k` cuts the steps into buckets of `64 * 8**k` steps (floor division: negative steps have
negative buckets); each row holds, over the finite values of one metric of one run in one
bucket, the minimum and maximum value, the first and last step, the count and the earliest
time. Twenty levels cover the whole BigInteger step range (level 19: two buckets), so whatever
the steps (0, 1, 2… or epoch milliseconds), some level cuts a history's range into between
`buckets` and about `8 × buckets` buckets: a chart of a million points reads a few thousand
rows instead of aggregating the million (`read_chart`).

Every field merges by min, max or sum, so a bucket's row is the same whatever the order and the
cut of the batches that fed it: a batch adds its own aggregate with one upsert.
"""

from django.db.models import Count, Max, Min

BASE_SHIFT = 6  # level 0: buckets of 2**6 = 64 steps
FACTOR_SHIFT = 3  # each level 2**3 = 8 times wider
LEVELS = 20  # level 19: 2**63 steps a bucket, the whole BigInteger range in two
COLUMNS = ("run_id", "key", "level", "bucket", "lo", "hi", "s_lo", "s_hi", "n", "t0")


def shift(level):
    return BASE_SHIFT + FACTOR_SHIFT * level


def add_point(base, key, step, value, t0):
    """Fold one finite value into `base` ({(key, level-0 bucket): [lo, hi, s_lo, s_hi, n, t0]}).
    (`log_history` inlines this in its own loop over the points.)"""
    agg = base.get((key, step >> BASE_SHIFT))
    if agg is None:
        base[(key, step >> BASE_SHIFT)] = [value, value, step, step, 1, t0]
        return
    if value < agg[0]:
        agg[0] = value
    elif value > agg[1]:
        agg[1] = value
    if step < agg[2]:
        agg[2] = step
    elif step > agg[3]:
        agg[3] = step
    agg[4] += 1
    if t0 < agg[5]:
        agg[5] = t0


def _merge(into, agg):
    if agg[0] < into[0]:
        into[0] = agg[0]
    if agg[1] > into[1]:
        into[1] = agg[1]
    if agg[2] < into[2]:
        into[2] = agg[2]
    if agg[3] > into[3]:
        into[3] = agg[3]
    into[4] += agg[4]
    if agg[5] < into[5]:
        into[5] = agg[5]


def every_level(base):
    """[(key, level, bucket, lo, hi, s_lo, s_hi, n, t0)] of every level from the level-0
    aggregate `base`: level k + 1 is merged from level k's buckets (b >> 3), not from the points
    again, so the points are walked once whatever the number of levels."""
    rows, level = [], base
    for k in range(LEVELS):
        rows.extend((key, k, bucket, *agg) for (key, bucket), agg in level.items())
        if k == LEVELS - 1:
            break
        up = {}
        for (key, bucket), agg in level.items():
            into = up.get((key, bucket >> FACTOR_SHIFT))
            if into is None:
                up[(key, bucket >> FACTOR_SHIFT)] = list(agg)
            else:
                _merge(into, agg)
        level = up
    return rows


def upsert(connection, rows):
    """Add `rows` [(run_id, key, level, bucket, lo, hi, s_lo, s_hi, n, t0)] (t0 already adapted
    for the database, each (run_id, key, level, bucket) once) to the stored summary in one
    statement: on SQLite one executemany of a one-row upsert, on PostgreSQL one INSERT … SELECT
    from an unnest of the rows' columns (a parameter a column whatever the number of rows). Rows
    are written in key order, so concurrent batches of one run take the rows' locks in the same
    order.

    The stored columns are never NULL (a bucket without a finite value has no row), so the
    CASE comparisons below mean the same on both databases (SQLite's min(a, NULL) is NULL where
    PostgreSQL's LEAST ignores the NULL)."""
    if not rows:
        return
    from .models import MetricSummary

    rows = sorted(rows, key=lambda row: row[:4])
    qn = connection.ops.quote_name
    table = qn(MetricSummary._meta.db_table)
    columns = ", ".join(qn(c) for c in COLUMNS)

    def least(c):
        return f"{qn(c)} = CASE WHEN excluded.{qn(c)} < {table}.{qn(c)} THEN excluded.{qn(c)} ELSE {table}.{qn(c)} END"

    def greatest(c):
        return f"{qn(c)} = CASE WHEN excluded.{qn(c)} > {table}.{qn(c)} THEN excluded.{qn(c)} ELSE {table}.{qn(c)} END"

    conflict = (f"ON CONFLICT ({', '.join(qn(c) for c in COLUMNS[:4])}) DO UPDATE SET "
                + ", ".join([least("lo"), greatest("hi"), least("s_lo"), greatest("s_hi"), least("t0"),
                             f"{qn('n')} = {table}.{qn('n')} + excluded.{qn('n')}"]))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The rows as one array per column, each sent as its text ('{1,2,…}'): one parameter
            # a column whatever the number of rows, parsed by the server's array input, and the
            # few distinct keys and times sent once each, referred to by number. PostgreSQL ran
            # a batch's ~190 rows read this way in 0.17 ms, 1.2 ms from one JSON text (each
            # `->>` parses the element again), and psycopg's adaptation of ten Python lists cost
            # the client 5-7 ms. Floats are written as their repr, the shortest text that reads
            # back the same double.
            columns_of = list(zip(*rows))
            keys, stamps = sorted(set(columns_of[1])), sorted(set(columns_of[9]))
            key_at = {k: i for i, k in enumerate(keys, 1)}
            stamp_at = {t: i for i, t in enumerate(stamps, 1)}
            arrays = [columns_of[0], [key_at[k] for k in columns_of[1]], *columns_of[2:9], [stamp_at[t] for t in columns_of[9]]]
            types = ("bigint", "int", "smallint", "bigint", "float8", "float8", "bigint", "bigint", "bigint", "int")
            unnest = ", ".join(f"%s::{t}[]" for t in types)
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT r, (%s::varchar[])[k], l, b, lo, hi, s0, s1, n, (%s::timestamptz[])[t]"
                f" FROM unnest({unnest}) AS e(r, k, l, b, lo, hi, s0, s1, n, t) {conflict}",
                [keys, stamps, *("{" + ",".join(map(repr, array)) + "}" for array in arrays)],
            )
        else:
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) {conflict}", rows)


def rebuild(points, connection, flush_at=100_000):
    """Summarise stored points (a MetricPoint queryset, historical model or not) into the
    summary: streamed in chunks, aggregated as at ingestion, written every `flush_at` level-0
    buckets (the upsert adds to what an earlier flush wrote), so a million points are never
    loaded at once. For the migration that adds the summary to existing histories."""
    adapt = connection.ops.adapt_datetimefield_value
    base = {}

    def flush():
        rows = [((run_id, key), level, bucket, lo, hi, s_lo, s_hi, n, adapt(t0))
                for (run_id, key), level, bucket, lo, hi, s_lo, s_hi, n, t0 in every_level(base)]
        upsert(connection, [(ident[0], ident[1], *rest) for ident, *rest in rows])
        base.clear()

    values = points.filter(value__isnull=False).values_list("run_id", "key", "step", "value", "timestamp")
    for run_id, key, step, value, ts in values.iterator(chunk_size=20_000):
        add_point(base, (run_id, key), step, value, ts)
        if len(base) >= flush_at:
            flush()
    flush()


def chart_level(low, high, buckets):
    """The coarsest level that still cuts [low, high] into at least `buckets` buckets (so at
    most about 8 × `buckets` rows are read), or None when even level 0 gives fewer (a range of
    fewer than about 64 × `buckets` steps: aggregated from the points)."""
    best = None
    for level in range(LEVELS):
        s = shift(level)
        if (high >> s) - (low >> s) + 1 < buckets:
            break
        best = level
    return best


def chart_buckets(summaries, points, key, low, high, level, buckets, min_step=None, max_step=None):
    """[[lo, hi, s_lo, s_hi, n, t0]] per display bucket, in step order, of one metric's finite
    values over [low, high] (their first and last finite steps in the asked range), from the
    summary rows of `level` (`summaries`: the run's MetricSummary queryset; `points`: its
    MetricPoint queryset for the metric, range filters applied).

    Display bucket d groups the level's buckets `first + d·g … first + (d + 1)·g - 1`, where
    `first = low >> shift(level)` and `g = ceil(n / buckets)` for the `n` level buckets spanning
    [low, high]: at most `buckets` display buckets. A level bucket reaching past an explicit
    `min_step` or `max_step` is aggregated from the points instead (one indexed range query
    each, at most two), so every value given is one stored in the range."""
    s = shift(level)
    first, last = low >> s, high >> s
    group = -(-(last - first + 1) // buckets)
    partial = {}
    if min_step is not None and (first << s) < min_step:
        partial[first] = (min_step, min(((first + 1) << s) - 1, high))
    if max_step is not None and ((last + 1) << s) - 1 > max_step and last not in partial:
        partial[last] = (last << s, max_step)
    elif last in partial:
        partial[last] = (partial[last][0], high)
    rows = []
    lo_b, hi_b = first + (first in partial), last - (last in partial)
    if lo_b <= hi_b:
        rows = list(summaries.filter(key=key, level=level, bucket__gte=lo_b, bucket__lte=hi_b).order_by("bucket")
                    .values_list("bucket", "lo", "hi", "s_lo", "s_hi", "n", "t0"))
    for bucket, (start, end) in partial.items():
        agg = points.filter(step__gte=start, step__lte=end, value__isnull=False).aggregate(
            lo=Min("value"), hi=Max("value"), s_lo=Min("step"), s_hi=Max("step"), n=Count("value"), t0=Min("timestamp"))
        if agg["n"]:
            rows.append((bucket, agg["lo"], agg["hi"], agg["s_lo"], agg["s_hi"], agg["n"], agg["t0"]))
    if partial:
        rows.sort(key=lambda row: row[0])
    out, current, at = [], None, None
    for bucket, *agg in rows:
        display = (bucket - first) // group
        if display != at:
            current, at = agg, display
            out.append(current)
        else:
            _merge(current, agg)
    return out
