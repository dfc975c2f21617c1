"""The multi-resolution summary kept at ingestion (tracking/summary.py): a chart of a long history
read from it gives the same minimum, maximum, first and last step, count and first time per
display bucket as a plain computation over the points logged, whatever the steps (negative,
around 1e12, repeated), the non-finite values mixed in, the order and the cut of the batches."""

import math
import random
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tracking.history import log_history, read_chart
from tracking.models import MetricPoint, MetricSummary, Run
from tracking.summary import rebuild

from .signin import sign_in

pytestmark = pytest.mark.django_db

PROJECT = "/acme/projects/vision/"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def expected_chart(points, samples, min_step=None, max_step=None, times=True):
    """What read_chart must answer, from the logged points [(key-less) (step, value, time)]: every
    finite point when there are at most `samples`; else the display buckets of the summary's
    rule (README: the coarsest width 64·8^k still giving `samples // 2` buckets over the range,
    its buckets grouped g = ceil(n / (samples // 2)) at a time), each giving its minimum at its
    first step and its maximum at its last, both at its earliest time. None when the range is too
    narrow for the summary (read_chart aggregates the points then)."""
    finite = sorted((s, v, t) for s, v, t in points if isinstance(v, float) and math.isfinite(v)
                    and (min_step is None or s >= min_step) and (max_step is None or s <= max_step))
    if len(finite) <= samples:
        return None
    buckets = samples // 2
    low, high = finite[0][0], finite[-1][0]
    widths = [64 * 8**k for k in range(20) if high // (64 * 8**k) - low // (64 * 8**k) + 1 >= buckets]
    if not widths:
        return None
    width = max(widths)
    group = math.ceil((high // width - low // width + 1) / buckets)
    grouped = {}
    for s, v, t in finite:
        grouped.setdefault((s // width - low // width) // group, []).append((s, v, t))
    steps, values, stamps = [], [], []
    for _, members in sorted(grouped.items()):
        first, last = min(s for s, _, _ in members), max(s for s, _, _ in members)
        t0 = min(t for _, _, t in members).timestamp()
        steps.append(first), values.append(min(v for _, v, _ in members)), stamps.append(t0)
        if last != first:
            steps.append(last), values.append(max(v for _, v, _ in members)), stamps.append(t0)
    return {"step": steps, "time": stamps if times else None, "value": values, "total": len(finite), "downsampled": True}


def random_history(rng):
    """{key: [(step, value, time)]} for two keys: steps from one of several shapes, some of them
    repeated, a tenth of the values NaN or ±Infinity."""
    shape = rng.choice(["around zero", "epoch ms", "huge range", "dense", "the ends of BigInteger"])
    n = rng.randint(300, 1500)
    history = {}
    for key in ("loss", "acc"):
        if shape == "around zero":
            steps = [rng.randint(-60_000, 60_000) for _ in range(n)]
        elif shape == "epoch ms":
            steps = [1_700_000_000_000 + rng.randint(0, 10**8) for _ in range(n)]
        elif shape == "huge range":
            steps = [rng.randint(-10**12, 10**12) for _ in range(n)]
        elif shape == "dense":
            steps = [rng.randint(0, 5_000) for _ in range(n)]
        else:
            steps = [rng.choice([-2**63, 2**63 - 1, rng.randint(-2**63, 2**63 - 1)]) for _ in range(n)]
        steps += rng.choices(steps, k=n // 5)  # repeated steps, other values
        points = []
        for step in steps:
            roll = rng.random()
            value = float("nan") if roll < 0.05 else rng.choice([math.inf, -math.inf]) if roll < 0.1 else rng.gauss(0, 10)
            points.append((step, value, START + timedelta(seconds=rng.randint(0, 10**6))))
        history[key] = points
    return history


def log_shuffled(run, history, rng):
    """Every point logged once, in random order, in batches of random size, one row per point;
    then a batch of points already stored re-sent the MLflow way (skip_stored): not new."""
    rows = [{"step": s, "timestamp": t, "metrics": {key: v}} for key, points in history.items() for s, v, t in points]
    rng.shuffle(rows)
    at = 0
    while at < len(rows):
        size = rng.randint(1, 400)
        log_history(run, rows[at:at + size])
        at += size
    again = rows[:50]
    log_history(run, again, skip_stored=True)


@pytest.mark.parametrize("seed", range(16))
def test_a_chart_from_the_summary_matches_the_points(project, seed):
    rng = random.Random(seed)
    run = Run.objects.create(project=project, run_id=f"r{seed}", name="r")
    history = random_history(rng)
    log_shuffled(run, history, rng)
    checked = 0
    for key, points in history.items():
        finite_steps = sorted(s for s, v, _ in points if math.isfinite(v))
        ranges = [(None, None)]
        for _ in range(3):  # zoomed: ends inside the summary's buckets, so partly covered
            a, b = sorted(rng.sample(finite_steps, 2))
            ranges.append((a - rng.randint(0, 50), b + rng.randint(0, 50)))
        ranges.append((finite_steps[len(finite_steps) // 3], None))
        for samples in (20, 60, 2000):
            for min_step, max_step in ranges:
                want = expected_chart(points, samples, min_step, max_step)
                if want is None:
                    continue
                got = read_chart(run, key, min_step=min_step, max_step=max_step, samples=samples)
                assert got["step"] == want["step"], (key, samples, min_step, max_step)
                assert got["value"] == want["value"] and got["total"] == want["total"]
                assert got["time"] == pytest.approx(want["time"])
                assert len(got["step"]) <= samples
                checked += 1
    assert checked >= 4  # the summary was read, not only the exact or the narrow-range paths


def test_the_summary_is_what_the_points_give_and_the_migration_rebuilds_it(project):
    """Ingestion's summary equals one rebuilt from the stored points (the data migration's code),
    and a run's summary goes with the run."""
    rng = random.Random(7)
    run = Run.objects.create(project=project, run_id="r", name="r")
    log_shuffled(run, random_history(rng), rng)
    columns = ("key", "level", "bucket", "lo", "hi", "s_lo", "s_hi", "n", "t0")
    written = list(MetricSummary.objects.filter(run=run).order_by("key", "level", "bucket").values_list(*columns))
    assert written and {row[1] for row in written} == set(range(20))
    finite = MetricPoint.objects.filter(run=run, value__isnull=False)
    for level in (0, 7, 19):  # every level counts every finite point once
        assert sum(row[7] for row in written if row[1] == level) == finite.count()
    MetricSummary.objects.all().delete()
    rebuild(MetricPoint.objects.all(), connection, flush_at=100)  # flushed in parts: merged like batches
    assert list(MetricSummary.objects.filter(run=run).order_by("key", "level", "bucket").values_list(*columns)) == written
    run.delete()
    assert not MetricSummary.objects.exists()


def test_only_non_finite_values_make_no_summary(project):
    run = Run.objects.create(project=project, run_id="r", name="r")
    log_history(run, [{"step": s, "metrics": {"loss": float("nan"), "acc": 1.0}} for s in range(100)])
    assert set(MetricSummary.objects.values_list("key", flat=True)) == {"acc"}


def chart_reads(client, url, **query):
    """The page's reads of the history (points and summary), and the answer."""
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(url, query)
        assert answer.status_code == 200
    return [q["sql"] for q in captured if "tracking_metricpoint" in q["sql"] or "tracking_metricsummary" in q["sql"]], answer


def test_a_long_run_page_reads_the_summary_not_the_points(client, project, bob):
    """The page of a run whose history spans a million steps reads, per metric, the summary's
    coarsest level (its count and ends) and the rows of one level: not a single point, the same
    queries for 5,000 points as for 55,000, and the spike kept."""
    run = Run.objects.create(project=project, run_id="long", name="long run")

    def grow(start, end, every):
        log_history(run, [{"step": i, "metrics": {"loss": 99.0 if i == 777_600 else 1 / (i + 1)}} for i in range(start, end, every)])

    grow(0, 1_000_000, 200)
    sign_in(client, bob.username)
    few, page = chart_reads(client, PROJECT + "runs/long/")
    assert not any("GROUP BY" in sql.upper() for sql in few), few
    assert [sql for sql in few if "tracking_metricsummary" in sql] == few and len(few) == 2, few
    assert "99.0" in page.content.decode()
    grow(1_000_000, 1_100_000, 2)  # 50,000 more: the page's cache key changes, the reads do not
    many, page = chart_reads(client, PROJECT + "runs/long/")
    assert len(many) == len(few) and not any("GROUP BY" in sql.upper() for sql in many)
    assert "99.0" in page.content.decode()
    whole = client.get(PROJECT + "runs/long/chart/", {"key": "loss", "samples": 2000}).json()
    assert whole["downsampled"] and whole["total"] == 5000 + 50_000 and 99.0 in whole["value"] and len(whole["step"]) <= 2000
    assert whole["step"][0] == 0 and whole["step"][-1] == 1_099_998
    widest = {"key": "loss", "samples": 2000, "min_step": -(2**63) + 1, "max_step": 2**63 - 1}
    assert client.get(PROJECT + "runs/long/chart/", widest).json() == whole
    # a zoom whose ends cut summary buckets: those two are read from the points, the rest from the summary
    zoomed = client.get(PROJECT + "runs/long/chart/", {"key": "loss", "samples": 100, "min_step": 1_000_001, "max_step": 1_099_001}).json()
    assert zoomed["downsampled"] and zoomed["total"] == 49_500 and zoomed["step"][0] == 1_000_002 and zoomed["step"][-1] == 1_099_000
    exact = client.get(PROJECT + "runs/long/chart/", {"key": "loss", "samples": 100, "min_step": 777_550, "max_step": 777_650}).json()
    assert exact["step"] == [777_600] and exact["value"] == [99.0] and not exact["downsampled"]


def test_ingestion_costs_one_upsert_more_whatever_the_batch(project):
    """log_history's queries are pinned: a batch of 10 rows and one of 1,000 rows × 5 metrics
    cost the same, and the summary is one statement of them."""
    run = Run.objects.create(project=project, run_id="r", name="r")
    log_history(run, [{"step": 0, "metrics": {f"m{k}": 1.0 for k in range(5)}}])

    def batch(start, n):
        with CaptureQueriesContext(connection) as captured:
            log_history(run, [{"step": start + i, "metrics": {f"m{k}": float(i + k) for k in range(5)}} for i in range(n)])
        return [q["sql"] for q in captured]

    small, large = batch(1, 10), batch(1_000, 1_000)
    assert len(small) == len(large)
    assert len([sql for sql in large if "tracking_metricsummary" in sql]) == 1


@pytest.mark.django_db(transaction=True)
def test_the_migration_summarises_the_histories_stored_before_it(project):
    """Migrating from before the summary fills it from the stored points: the same rows as
    ingestion writes for the same history."""
    from django.db.migrations.executor import MigrationExecutor

    rng = random.Random(3)
    history = random_history(rng)
    before, after = [("tracking", "0002_metric_raw_text")], [("tracking", "0004_fill_metric_summary")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    stored = old.get_model("tracking", "Run").objects.create(project_id=project.pk, run_id="old", name="old")
    old.get_model("tracking", "MetricPoint").objects.bulk_create([
        old.get_model("tracking", "MetricPoint")(run_id=stored.pk, key=key, step=s, timestamp=t,
                                                 value=v if math.isfinite(v) else None, raw=None if math.isfinite(v) else str(v))
        for key, points in history.items() for s, v, t in points])
    MigrationExecutor(connection).migrate(after)
    logged = Run.objects.create(project=project, run_id="new", name="new")
    log_shuffled(logged, history, rng)
    columns = ("key", "level", "bucket", "lo", "hi", "s_lo", "s_hi", "n", "t0")
    migrated = list(MetricSummary.objects.filter(run_id=stored.pk).order_by("key", "level", "bucket").values_list(*columns))
    assert migrated and migrated == list(MetricSummary.objects.filter(run=logged).order_by("key", "level", "bucket").values_list(*columns))


def uniform_batch(rng):
    """A batch as most clients send it: the same metrics in every row, finite numbers (ints
    among them), steps never decreasing (some repeated, some across summary buckets), with
    or without the rows' own timestamps."""
    keys = [f"m{k}" for k in range(rng.randint(1, 6))]
    step = rng.choice([0, 63, 10**12, 2**62 - 5000])
    timed = rng.random() < 0.5
    rows = []
    for i in range(rng.randint(1, 400)):
        step += rng.choice([0, 1, 1, 1, 7, 64, 200])
        metrics = {key: rng.choice([rng.gauss(0, 10), float(rng.randint(-3, 3)), rng.randint(-5, 5), 0.0, -0.0, 1e300]) for key in keys}
        row = {"step": min(step, 2**62 - 1), "metrics": metrics}
        if timed:
            row["timestamp"] = START + timedelta(seconds=rng.choice([-50, 0, 1, 2, 3]) + i // 10)
        rows.append(row)
    return rows


def test_a_usual_batch_is_folded_by_columns_exactly_as_point_by_point():
    """_fold_columns, the fast path for a usual batch, gives the same rows to insert, latest
    values and counts, and summary buckets as _fold over every point; any other batch is left
    to _fold."""
    from tracking.history import _fold, _fold_columns, _points

    adapt = connection.ops.adapt_datetimefield_value
    rng = random.Random(11)
    for _ in range(200):
        rows = uniform_batch(rng)
        folded = _fold_columns(7, rows, START, adapt)
        assert folded is not None
        assert folded == _fold(7, _points(rows, START), adapt)
        assert [type(point[3]) for point in folded[0]] == [float] * len(folded[0])

    rows = [{"step": s, "metrics": {"a": 1.0, "b": 2.0}} for s in range(10)]
    assert _fold_columns(7, rows, START, adapt) is not None
    others = [
        [*rows, {"step": 10, "metrics": {"b": 1.0, "a": 2.0}}],  # another order
        [*rows, {"step": 10, "metrics": {"a": 1.0}}],  # another set of metrics
        [*rows, {"step": 5, "metrics": {"a": 1.0, "b": 2.0}}],  # a step back
        [*rows, {"step": 10, "metrics": {"a": math.nan, "b": 2.0}}],
        [*rows, {"step": 10, "metrics": {"a": math.inf, "b": 2.0}}],
        [*rows, {"step": 10, "metrics": {"a": True, "b": 2.0}}],
        [*rows, {"step": 10, "metrics": {"a": "warm", "b": 2.0}}],
        [*rows, {"step": 10, "metrics": {"a": None, "b": 2.0}}],
        [{"step": 0, "metrics": {}}],
        [],
    ]
    for batch in others:
        assert _fold_columns(7, batch, START, adapt) is None


def test_a_usual_batch_stores_what_the_same_batch_point_by_point_stores(project):
    """Through log_history: the points, the metric records and the summary rows of usual batches
    are those of the same batches stored through the point-by-point path."""
    from unittest import mock

    rng = random.Random(12)
    batches = [uniform_batch(rng) for _ in range(4)]
    start = 0
    for batch in batches:  # consecutive steps across the batches
        shift = start - batch[0]["step"]
        for row in batch:
            row["step"] += shift
        start = batch[-1]["step"] + rng.choice([0, 1, 100])
    fast, slow = (Run.objects.create(project=project, run_id=name, name=name) for name in ("fast", "slow"))
    for n, batch in enumerate(batches):
        with mock.patch("django.utils.timezone.now", return_value=START + timedelta(minutes=n)):  # rows without a time
            log_history(fast, batch)
            with mock.patch("tracking.history._fold_columns", return_value=None):
                log_history(slow, batch)

    def stored(run):
        points = list(MetricPoint.objects.filter(run=run).order_by("id").values_list("key", "step", "value", "raw", "timestamp"))
        records = sorted(run.metrics.values_list("key", "count", "last_step", "last_value", "last_raw"))
        summaries = sorted(MetricSummary.objects.filter(run=run).values_list("key", "level", "bucket", "lo", "hi", "s_lo", "s_hi", "n", "t0"))
        return points, records, summaries

    assert stored(fast) == stored(slow)
    assert len(stored(fast)[2]) > 20
    assert len(stored(fast)[0]) == sum(len(batch) * len(batch[0]["metrics"]) for batch in batches)
