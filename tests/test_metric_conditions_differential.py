"""Random history batches through the API, evaluated as they commit or several at a time (a worker
that is behind), fire exactly what a brute-force reference written from SPEC.md's definitions of
the metric conditions fires (cooldown 0: every transition fires), with the same values.

Where SPEC.md is silent the reference follows the code's documented choice (a window with a
non-finite value holds nothing; an aggregated threshold needs a full window)."""

import json
import math
import random
import statistics

import pytest

from .conftest import P
from .engine import fired, make_automation

pytestmark = pytest.mark.django_db(transaction=True)
PROJECT = {"type": "project", "project": "vision"}
NAN = float("nan")
CMPS = {"$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b, "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b,
        "$eq": lambda a, b: a == b, "$ne": lambda a, b: a != b}
AGGS = {"AVERAGE": statistics.fmean, "MIN": min, "MAX": max}


def finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def random_filter(rng, metric):
    kind = rng.choice(["T", "T", "C", "ZH", "ZR"])
    if kind == "T":
        f = {"type": "RUN_METRIC_THRESHOLD", "metric": metric, "cmp": rng.choice(list(CMPS)), "threshold": rng.choice([1, 2, 3, 2.5])}
        if rng.random() < 0.6:
            f.update(agg=rng.choice(list(AGGS)), window=rng.randint(1, 4))
        return f
    if kind == "C":
        return {"type": "RUN_METRIC_CHANGE", "metric": metric, "agg": rng.choice(list(AGGS)), "current_window": rng.randint(1, 3),
                "prior_window": rng.randint(1, 3), "change_type": rng.choice(["ABSOLUTE", "RELATIVE"]),
                "change_dir": rng.choice(["INCREASE", "DECREASE", "ANY"]), "change_amount": rng.choice([0.5, 1, 2])}
    return {"type": "RUN_METRIC_ZSCORE", "metric": metric, "window": rng.randint(2, 4), "threshold": rng.choice([0.5, 1.0, 1.5]),
            "change_dir": rng.choice(["INCREASE", "DECREASE", "ANY"]), "basis": "history" if kind == "ZH" else "runs"}


class Reference:
    def __init__(self):
        self.points = {}  # run -> key -> [(step, seq, value)]
        self.seq = 0
        self.touched = {}  # (run, key) -> seq of the last batch logging it (for "most recent other runs")
        self.met = {}

    def log(self, run, rows):
        for row in rows:
            for key, value in row["metrics"].items():
                self.seq += 1
                self.points.setdefault(run, {}).setdefault(key, []).append((row["step"], self.seq, value))
        for key in {k for row in rows for k in row["metrics"]}:
            self.touched[(run, key)] = self.seq

    def recent(self, run, key, last_step):
        pts = sorted(p for p in self.points.get(run, {}).get(key, []) if p[0] <= last_step)
        return [p[2] for p in pts]

    def latest(self, run, key):
        pts = sorted(self.points[run][key])
        return pts[-1][2]

    def holds(self, f, run, last_step):
        key = f["metric"]
        vals = self.recent(run, key, last_step)
        t = f["type"]
        if t == "RUN_METRIC_THRESHOLD":
            n = f["window"] if f.get("agg") else 1
            w = vals[-n:]
            if not w or not all(map(finite, w)) or (f.get("agg") and len(w) < n):
                return False, None
            v = AGGS[f["agg"]](w) if f.get("agg") else w[-1]
            return CMPS[f["cmp"]](v, f["threshold"]), v
        if t == "RUN_METRIC_CHANGE":
            c, p = f["current_window"], f["prior_window"]
            w = vals[-(c + p):]
            if len(w) < c + p or not all(map(finite, w)):
                return False, None
            before, now = AGGS[f["agg"]](w[:p]), AGGS[f["agg"]](w[p:])
            if f["change_type"] == "RELATIVE":
                if before == 0:
                    return False, None
                ch = (now - before) / abs(before)
            else:
                ch = now - before
            d = f["change_dir"]
            a = f["change_amount"]
            return (ch >= a if d == "INCREASE" else -ch >= a if d == "DECREASE" else abs(ch) >= a), now
        if t == "RUN_METRIC_ZSCORE":
            if f["basis"] == "history":
                w = vals[-(f["window"] + 1):]
                if len(w) < 3 or not all(map(finite, w)):
                    return False, None
                value, ref = w[-1], w[:-1]
            else:
                if not vals or not finite(vals[-1]):
                    return False, None
                value = vals[-1]
                others = sorted(((s, r) for (r, k), s in self.touched.items() if k == key and r != run), reverse=True)
                ref = [self.latest(r, key) for _, r in others[:f["window"]]]
                ref = [v for v in ref if finite(v)]
                if len(ref) < 2:
                    return False, None
            mean = statistics.fmean(ref)
            sd = statistics.pstdev(ref)
            if sd == 0:
                return False, None
            z = (value - mean) / sd
            d, th = f["change_dir"], f["threshold"]
            return (z >= th if d == "INCREASE" else z <= -th if d == "DECREASE" else abs(z) >= th), value
        raise AssertionError(t)


def post(c, run, rows):
    body = json.dumps({"rows": rows}, allow_nan=True)
    r = c.post(f"{P}/runs/{run}/history/", body, content_type="application/json")
    assert r.status_code == 201, r.content


@pytest.mark.parametrize("seed", range(30))
def test_random_batches_fire_as_the_reference(team, api, bob, project, settings, seed):
    run_random(team, api, bob, settings, seed, held=False)


@pytest.mark.parametrize("seed", range(30))
def test_random_batches_evaluated_together_fire_as_the_reference(team, api, bob, project, settings, seed):
    """As the worker does when behind: several history events evaluated in one transaction
    (evaluate_batch). The z-score against other runs is left out (its reference is read at
    evaluation time)."""
    run_random(team, api, bob, settings, seed, held=True)


def run_random(team, api, bob, settings, seed, held):
    from tests.test_firing import Held
    settings.AUTOMATION_COOLDOWN = 0
    rng = random.Random(seed)
    c = api(bob)
    runs = ["r0", "r1", "r2"]
    for r in runs:
        assert c.post(f"{P}/runs/", {"id": r}, format="json").status_code == 201
    autos = []
    for i in range(10):
        f = random_filter(rng, rng.choice(["a", "b"]))
        while held and f.get("basis") == "runs":
            f = random_filter(rng, rng.choice(["a", "b"]))
        autos.append((make_automation(team, f"a{i}", PROJECT, f), f))
    ref = Reference()
    expected = {a.pk: [] for a, _ in autos}
    top = {r: -1 for r in runs}
    holder, queue = None, []
    for batch in range(14):
        if held and holder is None:
            holder, group = Held().__enter__(), rng.randint(1, 4)
        run = rng.choice(runs)
        rows = []
        step = top[run] + (0 if rng.random() < 0.25 and top[run] >= 0 else 1)  # sometimes the last step again
        for _ in range(rng.randint(1, 3)):
            metrics = {}
            for key in ("a", "b"):
                if rng.random() < 0.7:
                    metrics[key] = rng.choice([0, 1, 2, 3, 4, 2.5, -1, 1, 2, 3, NAN, "NaN"] if rng.random() < 0.9 else [float("inf")])
            if metrics:
                rows.append({"step": step, "metrics": metrics})
            step += rng.choice([0, 1, 1, 2])
        if not rows:
            rows = [{"step": step, "metrics": {"a": 1}}]
        ref.log(run, rows)
        last_step = max(r["step"] for r in rows)
        top[run] = max(top[run], last_step)
        queue.append((batch, run, last_step, {k for r in rows for k in r["metrics"]}))
        post(c, run, rows)
        if held:
            group -= 1
            if group > 0 and batch < 13:
                continue
            holder.__exit__()
            holder.evaluate()
            holder = None
        for qbatch, qrun, qlast, keys in queue:  # the reference, at evaluation time (values up to the batch's last step)
            for a, f in autos:
                if f["metric"] not in keys:
                    continue
                met, value = ref.holds(f, qrun, qlast)
                was = ref.met.get((a.pk, qrun), False)
                if met and not was:
                    expected[a.pk].append((qbatch, qrun, value))
                ref.met[(a.pk, qrun)] = met
        queue.clear()
        for a, f in autos:  # compare as we go: the first divergence is the one to read
            got = [(e.event.run.run_id, e.context.get("metric_value")) for e in fired(a)]
            want = [(r, v) for _, r, v in expected[a.pk]]
            assert [g[0] for g in got] == [w[0] for w in want] and all(
                (g[1] == w[1]) or (isinstance(g[1], float) and math.isclose(g[1], w[1], rel_tol=1e-9)) for g, w in zip(got, want)), (
                f"seed {seed} batch {batch} run {run} rows {rows}\n filter {f}\n got {got}\n want {expected[a.pk]}\n"
                f" history {ref.points.get(run, {}).get(f['metric'])}")
