"""The small changes to tracking that the MLflow server relies on."""

import pytest

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
