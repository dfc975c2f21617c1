"""The figures a metric condition reports are those of SPEC.md's definitions, computed as the
statistics module computes them (population standard deviation, arithmetic mean), to 1e-9
relative: evaluation works in floats, statistics in exact fractions. And the windows read for a
batch are the run's most recent values (the later of two values logged at one step) and the
other runs' latest, most recently updated first, whatever the number of metrics read together."""

import math
import random
import statistics

import pytest

from automations.event_types.base import pstdev

from .conftest import P
from .engine import fired, make_automation

pytestmark = pytest.mark.django_db(transaction=True)  # events are evaluated on commit
PROJECT = {"type": "project", "project": "vision"}
TIGHT = 1e-9


@pytest.fixture
def bobc(api, bob, team, project):
    return api(bob)


def log(c, run_id, rows):
    response = c.post(f"{P}/runs/{run_id}/history/", {"rows": rows}, format="json")
    assert response.status_code == 201, response.content


def close(reported, expected):
    return abs(reported - expected) <= TIGHT * abs(expected)


def test_reported_zscores_and_averages_agree_with_statistics(team, bobc):
    rng = random.Random(9)
    z_history = make_automation(team, "zh", PROJECT, {"type": "RUN_METRIC_ZSCORE", "metric": "loss", "window": 30, "basis": "history",
                                                      "threshold": 1e-9})
    z_runs = make_automation(team, "zr", PROJECT, {"type": "RUN_METRIC_ZSCORE", "metric": "acc", "window": 4, "threshold": 1e-9})
    average = make_automation(team, "avg", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 7, "agg": "AVERAGE",
                                                     "cmp": "$gt", "threshold": -1e9})
    change = make_automation(team, "chg", PROJECT, {"type": "RUN_METRIC_CHANGE", "metric": "loss", "agg": "AVERAGE", "current_window": 5,
                                                    "prior_window": 11, "change_type": "ABSOLUTE", "change_amount": 1e-12})
    others = {}
    for i in range(6):  # the other runs' latest acc, one after another: the 4 most recent are the reference
        assert bobc.post(f"{P}/runs/", {"id": f"o{i}"}, format="json").status_code == 201
        others[f"o{i}"] = 1000 + rng.gauss(0, 3)
        log(bobc, f"o{i}", [{"step": 0, "metrics": {"acc": others[f"o{i}"]}}])
    assert bobc.post(f"{P}/runs/", {"id": "r"}, format="json").status_code == 201
    loss = [123.456 + rng.gauss(0, 0.5) for _ in range(40)]
    log(bobc, "r", [{"step": s, "metrics": {"loss": v, **({"acc": 1000.5} if s == 39 else {})}} for s, v in enumerate(loss)])

    [zh] = [e for e in fired(z_history) if e.event.run.run_id == "r"]
    reference = loss[-31:-1]
    expected = (loss[-1] - statistics.fmean(reference)) / statistics.pstdev(reference)
    assert zh.context["metric_values"] == reference and close(zh.context["metric_zscore"], expected)

    [zr] = [e for e in fired(z_runs) if e.event.run.run_id == "r"]
    reference = [others[f"o{i}"] for i in (5, 4, 3, 2)]  # most recently updated first
    expected = (1000.5 - statistics.fmean(reference)) / statistics.pstdev(reference)
    assert zr.context["metric_values"] == reference and close(zr.context["metric_zscore"], expected)

    [avg] = fired(average)
    assert avg.context["metric_values"] == loss[-7:] and close(avg.context["metric_value"], statistics.mean(loss[-7:]))
    [chg] = fired(change)
    expected = statistics.mean(loss[-5:]) - statistics.mean(loss[-16:-5])
    assert close(chg.context["metric_change"], expected) and close(chg.context["metric_value"], statistics.mean(loss[-5:]))


@pytest.mark.parametrize("seed", range(40))
def test_the_float_spread_agrees_with_statistics(seed):
    """Random windows, with the hard cases among them: a spread tiny against the mean, huge and
    tiny magnitudes, repeated values, two values."""
    rng = random.Random(seed)
    n = rng.choice([2, 3, 5, 30, 1000])
    scale = 10 ** rng.uniform(-200, 200)
    offset = rng.choice([0, 1, -1e6, 1e15]) * scale
    values = [offset + scale * rng.choice([rng.gauss(0, 1), rng.random() * 1e-12, 0.0]) for _ in range(n)]
    values = [v for v in values if math.isfinite(v)] or [0.0, 0.0]
    exact = statistics.pstdev(values)
    got = pstdev(values, statistics.fmean(values))
    assert (got == 0) is (exact == 0)
    assert abs(got - exact) <= TIGHT * exact


def test_the_window_is_the_latest_values_of_each_metric_read_together(team, bobc):
    """Five metrics read in one query: each condition sees its own metric's most recent values,
    none of the others'; of two values logged at one step, the later one is the more recent."""
    latest = make_automation(team, "latest", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "a", "cmp": "$eq", "threshold": 2})
    autos = {k: make_automation(team, k, PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": k, "window": 3, "agg": "MAX",
                                                   "cmp": "$gt", "threshold": 10}) for k in ("a", "b", "c", "d", "e")}
    assert bobc.post(f"{P}/runs/", {"id": "r"}, format="json").status_code == 201
    log(bobc, "r", [{"step": s, "metrics": {k: 1.0 for k in autos}} for s in range(50)])
    log(bobc, "r", [{"step": 49, "metrics": {"a": 20.0, "b": 1.0}}, {"step": 50, "metrics": {"c": 30.0}}])
    log(bobc, "r", [{"step": 49, "metrics": {"a": 2.0}}])  # step 49 again: the later value counts
    log(bobc, "r", [{"step": 51, "metrics": {"d": 1.0, "e": 40.0}}])
    assert [e.context["metric_values"] for e in fired(autos["a"])] == [[1.0, 1.0, 20.0]]
    assert [e.context["metric_values"] for e in fired(autos["c"])] == [[1.0, 1.0, 30.0]]
    assert [e.context["metric_values"] for e in fired(autos["e"])] == [[1.0, 1.0, 40.0]]
    assert fired(autos["b"]) == [] and fired(autos["d"]) == []
    assert [e.context["metric_value"] for e in fired(latest)] == [2.0]


def test_a_batch_evaluated_after_a_newer_one_decides_nothing(team, bobc):
    """Condition rows are written only when the condition turns; a batch evaluated late (its
    task behind a newer batch's) still never fires on values the newer batch superseded."""
    from automations.tasks import enqueue_evaluation, evaluate_event
    from events.models import Event
    from events.signals import event_committed

    auto = make_automation(team, "t", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$gt", "threshold": 1})
    other = make_automation(team, "o", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "acc", "cmp": "$gt", "threshold": 1})
    assert bobc.post(f"{P}/runs/", {"id": "r"}, format="json").status_code == 201
    event_committed.disconnect(dispatch_uid="automations.evaluate")
    try:
        log(bobc, "r", [{"step": 0, "metrics": {"loss": 5, "acc": 5}}])  # holds...
        log(bobc, "r", [{"step": 1, "metrics": {"loss": 0}}])  # ...then not, for loss only
    finally:
        event_committed.connect(enqueue_evaluation, dispatch_uid="automations.evaluate")
    older, newer = Event.objects.filter(type="RUN_HISTORY").order_by("id")
    evaluate_event(newer.pk)
    evaluate_event(older.pk)  # late: loss was decided by the newer batch; acc was not
    assert fired(auto) == [] and len(fired(other)) == 1
    log(bobc, "r", [{"step": 2, "metrics": {"loss": 5}}])
    assert [e.context["metric_value"] for e in fired(auto)] == [5]


def unevaluated():
    from events.models import Event

    return Event.objects.filter(evaluated_at__isnull=True).count()


@pytest.mark.parametrize("event, values, expected", [
    # the average of two values near the largest float: their float sum overflows
    ({"type": "RUN_METRIC_THRESHOLD", "metric": "x", "window": 2, "agg": "AVERAGE", "cmp": "$gt", "threshold": 0}, [1e308, 1e308], 1e308),
    ({"type": "RUN_METRIC_CHANGE", "metric": "x", "agg": "AVERAGE", "current_window": 2, "prior_window": 2, "change_type": "ABSOLUTE",
      "change_amount": 1}, [1.0, 1.0, 1e308, 1e308], 1e308),
    # a reference spread of 1.2e154: the squares' float sum overflows
    ({"type": "RUN_METRIC_ZSCORE", "metric": "x", "window": 4, "basis": "history", "threshold": 1.0},
     [-1.2e154, 1.2e154, -1.2e154, 1.2e154, 1e160], 1e160),
])
def test_values_near_the_largest_float_are_evaluated_and_hold_up_nothing(team, bobc, event, values, expected):
    """Any finite number may be logged (SPEC): a condition whose arithmetic would overflow in floats
    is computed exactly, and fires; the batch's other automations fire as ever."""
    watching = make_automation(team, "x", PROJECT, event)
    bystander = make_automation(team, "acc", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "acc", "cmp": "$gt", "threshold": 0.5})
    assert bobc.post(f"{P}/runs/", {"id": "r"}, format="json").status_code == 201
    log(bobc, "r", [{"step": s, "metrics": {"x": v, "acc": 0.9}} for s, v in enumerate(values)])
    assert unevaluated() == 0
    assert len(fired(bystander)) == 1
    (execution,) = fired(watching)
    assert close(execution.context["metric_value"], expected)


def test_a_batch_of_earlier_steps_logged_late_is_judged_on_the_runs_most_recent_values(team, bobc, settings):
    """A retried upload or a second logger may send steps 0-9 after steps 10-19: the run's most
    recent values are still those of steps 10-19, so nothing turns — no false alert on the old
    values, no re-arming that would fire again on the next batch."""
    settings.AUTOMATION_COOLDOWN = 0
    diverged = make_automation(team, "diverged", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$gt", "threshold": 0.5})
    converged = make_automation(team, "converged", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": 0.1})
    gap = make_automation(team, "gap", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 3, "agg": "MAX",
                                                 "cmp": "$gt", "threshold": 0.5})
    assert bobc.post(f"{P}/runs/", {"id": "r"}, format="json").status_code == 201
    log(bobc, "r", [{"step": s, "metrics": {"loss": 0.05}} for s in [*range(10, 18), 19]])  # step 18 missing
    assert (len(fired(diverged)), len(fired(converged)), len(fired(gap))) == (0, 1, 0)
    log(bobc, "r", [{"step": s, "metrics": {"loss": 0.9}} for s in range(0, 10)])  # late, older steps
    log(bobc, "r", [{"step": 20, "metrics": {"loss": 0.04}}])
    assert (len(fired(diverged)), len(fired(converged)), len(fired(gap))) == (0, 1, 0)
    log(bobc, "r", [{"step": 18, "metrics": {"loss": 0.7}}])  # late, but among the 3 most recent steps: a spike
    (spike,) = fired(gap)
    assert spike.context["metric_values"] == [0.7, 0.05, 0.04]
    assert (len(fired(diverged)), len(fired(converged))) == (0, 1)
