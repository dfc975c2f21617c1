"""The small changes to tracking that the MLflow server relies on."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from events.models import Event
from tracking.models import Run

pytestmark = pytest.mark.django_db


def test_saving_a_loaded_run_records_a_state_event_only_when_the_state_changes(project):
    Run.objects.create(project=project, run_id="r1", name="r1")
    run = Run.objects.get(run_id="r1")
    run.name = "renamed"
    run.save()
    assert Event.objects.filter(type="RUN_STATE").count() == 1  # its creation only
    run = Run.objects.get(run_id="r1")
    run.state = "finished"
    run.save()
    run.save()
    assert list(Event.objects.filter(type="RUN_STATE").order_by("id").values_list("facts__new_state", flat=True)) == ["running", "finished"]


def test_history_skips_points_already_stored_without_loading_the_history(project):
    from datetime import datetime, timezone

    from tracking.history import log_history
    from tracking.models import MetricPoint, RunMetric

    run = Run.objects.create(project=project, run_id="r1", name="r1")
    at = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = [{"step": i, "timestamp": at, "metrics": {"loss": 1 / (i + 1), "acc": float("nan")}} for i in range(100)]
    assert log_history(run, rows, skip_stored=True) == 100
    # The same rows again, one of them twice, plus one new point: only the new one is stored.
    again = rows[-3:] + rows[-1:] + [{"step": 100, "timestamp": at, "metrics": {"loss": 0.001}}]
    with CaptureQueriesContext(connection) as few:
        assert log_history(run, again, skip_stored=True) == 1
    assert MetricPoint.objects.filter(run=run, key="loss").count() == 101
    assert MetricPoint.objects.filter(run=run, key="acc").count() == 100
    assert RunMetric.objects.get(run=run, key="loss").count == 101
    # Nothing new at all: no event, nothing for automations to evaluate.
    events = Event.objects.filter(type="RUN_HISTORY").count()
    with CaptureQueriesContext(connection) as none_new:
        assert log_history(run, rows, skip_stored=True) == 0
    assert Event.objects.filter(type="RUN_HISTORY").count() == events
    assert len(none_new) < len(few)  # one lookup for the whole batch, then nothing to write
    # A different value, timestamp or step is a new point.
    later = datetime(2025, 1, 2, tzinfo=timezone.utc)
    assert log_history(run, [{"step": 0, "timestamp": later, "metrics": {"loss": 1.0}}], skip_stored=True) == 1
    assert log_history(run, [{"step": 0, "timestamp": at, "metrics": {"loss": 2.0}}], skip_stored=True) == 1
