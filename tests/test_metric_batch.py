"""Issue 9: a history batch evaluates all its metric automations together — one window read, the
run's conditions read at once, each automation's filter prepared once and kept with the cached
automation — and that changes nothing about which of them fire: each fires as it would alone."""

import pytest
from django.utils import timezone

from automations.models import RunCondition
from automations.tasks import evaluate_event
from events.models import Event
from tests.bench.harness import history_rows
from tests.bench.inproc import metric_event
from tracking.history import log_history
from tracking.models import Run

from .engine import fired, make_automation

pytestmark = pytest.mark.django_db
KINDS = 24  # threshold (3 aggregations), change, z-score against runs and against history, on 3 metrics


def evaluate_all():
    for pk in Event.objects.filter(evaluated_at__isnull=True).order_by("pk").values_list("pk", flat=True):
        evaluate_event(pk)


def firings(automation):
    """What each firing reported, by the step it was evaluated at (the runs differ, the steps not)."""
    return [(e.event.facts["last_step"], e.context["metric_value"], e.context["metric_filter"]) for e in fired(automation)]


def test_a_mix_of_automations_fires_together_as_each_fires_alone(team, project, settings):
    settings.AUTOMATION_COOLDOWN = 0  # every transition fires, so that there are many to compare
    together, alone, runs = [], [], []
    for i in range(KINDS):
        together.append(make_automation(team, f"all-{i}", {"type": "project", "project": project.name}, metric_event(i, 3)))
        solo = team.projects.create(name=f"solo-{i}")
        alone.append(make_automation(team, f"solo-{i}", {"type": "project", "project": solo.name}, metric_event(i, 3)))
        runs.append(solo)
    runs = [Run.objects.create(project=p, run_id="r", name="r") for p in [project, *runs]]
    for r in runs:  # other runs, for the z-scores against other runs
        for other in range(3):
            log_history(Run.objects.create(project=r.project, run_id=f"other{other}", name="other"), history_rows(100 + other, 50, 3))
    for batch in range(8):
        for r in runs:
            log_history(r, history_rows(batch, 40, 3))
        evaluate_all()
    assert sum(len(fired(a)) for a in together) >= 15
    assert {a.event_type for a in together if fired(a)} == {"RUN_METRIC_THRESHOLD", "RUN_METRIC_CHANGE", "RUN_METRIC_ZSCORE"}
    for shared, solo in zip(together, alone):
        assert firings(shared) == firings(solo), shared.event_filter


def test_a_batch_leaves_the_conditions_of_metrics_it_does_not_log_as_they_were(team, project, settings):
    settings.AUTOMATION_COOLDOWN = 0
    scope = {"type": "project", "project": project.name}
    loss = make_automation(team, "loss", scope, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$gt", "threshold": 1})
    acc = make_automation(team, "acc", scope, {"type": "RUN_METRIC_THRESHOLD", "metric": "acc", "cmp": "$gt", "threshold": 1})
    run = Run.objects.create(project=project, run_id="r", name="r")

    def batch(step, **metrics):
        log_history(run, [{"step": step, "metrics": metrics}])
        evaluate_all()
        return {c.automation_id: (c.met, c.last_event_id, c.last_fired_at) for c in RunCondition.objects.filter(run=run)}

    first = batch(0, loss=5, acc=5)
    assert len(fired(loss)) == len(fired(acc)) == 1 and first[acc.pk][0] and first[acc.pk][2] <= timezone.now()
    second = batch(1, loss=0)  # loss re-arms; acc is not logged: its state stays, timestamp included
    assert not second[loss.pk][0] and second[acc.pk] == first[acc.pk]
    batch(2, acc=5)  # still holds: no new transition
    batch(3, loss=5)  # a new transition
    assert len(fired(acc)) == 1 and len(fired(loss)) == 2


def test_a_batch_in_which_no_condition_turns_does_not_look_for_newer_batches(team, project):
    """Whether a newer batch of the run was evaluated already (a query) matters only to a
    condition that turns: a quiet batch writes nothing, late or not."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_automation(team, "loss", {"type": "project", "project": project.name}, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$gt", "threshold": 1})
    run = Run.objects.create(project=project, run_id="r", name="r")

    def newer_batches_read(value, step):
        log_history(run, [{"step": step, "metrics": {"loss": value}}])
        with CaptureQueriesContext(connection) as captured:
            evaluate_all()
        return sum("SELECT facts" in q["sql"] for q in captured.captured_queries)

    assert newer_batches_read(0, 0) == 0  # holds not, as before
    assert newer_batches_read(5, 1) == 1  # turns: is a newer batch deciding already?
    assert newer_batches_read(6, 2) == 0  # holds, as before
