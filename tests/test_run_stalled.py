"""RUN_STALLED in process: its filter as the API reads it, and the sweep's decisions with the
clock moved by ageing the run's rows (the live test, tests/e2e/test_run_stalled.py, waits for
real). Evaluation runs synchronously after each commit (transactional tests)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automations import event_types
from automations.models import RunCondition
from events.models import Event
from tracking.models import Run, RunMetric

from .conftest import P, T
from .engine import fired, make_automation
from .signin import signed_in
from .test_firing import token_client

pytestmark = pytest.mark.django_db(transaction=True)
PROJECT = {"type": "project", "project": "vision"}


@pytest.fixture(autouse=True)
def sweep_every_time(settings):
    settings.RUN_STALLED_SWEEP_SECONDS = 0


@pytest.fixture
def bobc(bob, team, project):
    return token_client(bob)


def post(client, event, scope=PROJECT):
    return client.post(f"{T}/automations/", {"name": "stalled", "scope": scope, "event": event, "action": {"type": "NO_OP"}}, format="json")


def test_minutes_defaults_to_10_and_is_refused_outside_1_to_10080_naming_the_field(bobc):
    for bad in (0, 10081, -1, "10", True, 2.5, None):
        response = post(bobc, {"type": "RUN_STALLED", "minutes": bad})
        assert response.status_code == 400, bad
        assert "minutes" in response.json()["event"], response.json()
    response = post(bobc, {"type": "RUN_STALLED", "colour": "red"})
    assert response.status_code == 400 and "colour" in response.json()["event"]
    response = post(bobc, {"type": "RUN_STALLED", "minutes": 10080, "run_filter": {"user": "bob"}})
    assert response.status_code == 201, response.json()
    assert response.json()["event"] == {"type": "RUN_STALLED", "minutes": 10080, "run_filter": {"user": "bob"}}
    assert bobc.delete(f"{T}/automations/{response.json()['id']}/").status_code == 204
    response = post(bobc, {"type": "RUN_STALLED"})
    assert response.status_code == 201 and response.json()["event"] == {"type": "RUN_STALLED", "minutes": 10}


def test_only_a_project_scope_allows_it(bobc, registry):
    response = post(bobc, {"type": "RUN_STALLED"}, scope={"type": "team"})
    assert response.status_code == 400
    assert "RUN_STALLED cannot be used with a team scope" in response.json()["event"]["type"][0]


def age(run, minutes):
    then = timezone.now() - timedelta(minutes=minutes)
    Run.objects.filter(pk=run.pk).update(updated_at=then)
    RunMetric.objects.filter(run=run).update(updated_at=then)


def log(client, run_id, step):
    assert client.post(f"{P}/runs/{run_id}/history/", {"rows": [{"step": step, "metrics": {"loss": 0.5}}]}, format="json").status_code == 201


def test_reported_once_per_silence_rearmed_by_logging_never_when_finished(bobc, team):
    automation = make_automation(team, "stalled", PROJECT, {"type": "RUN_STALLED", "minutes": 30})
    for run_id in ("r1", "done"):
        assert bobc.post(f"{P}/runs/", {"id": run_id, "name": run_id}, format="json").status_code == 201
        log(bobc, run_id, 0)
    r1, done = Run.objects.get(run_id="r1"), Run.objects.get(run_id="done")
    assert bobc.patch(f"{P}/runs/done/", {"state": "finished"}, format="json").status_code == 200

    age(r1, 29)
    age(done, 60)
    assert event_types.sweep() == 0 and fired(automation) == []  # not yet: 29 of 30 minutes

    age(r1, 31)
    assert event_types.sweep() == 1
    [execution] = fired(automation)
    assert execution.event.run_id == r1.pk and execution.status == "succeeded"
    last = Run.objects.get(pk=r1.pk).updated_at
    assert execution.context == {"last_activity": last.isoformat()}
    page = signed_in("bob").get(f"/acme/executions/{execution.pk}/")
    assert page.status_code == 200 and f"run r1 (r1) has logged nothing since {last.isoformat()}" in page.content.decode()

    age(r1, 90)  # still silent, much longer: reported already
    assert event_types.sweep() == 0 and len(fired(automation)) == 1

    # as if that report was an hour ago, and the run logged again 31 minutes ago: re-armed
    RunCondition.objects.filter(automation=automation, run=r1).update(last_fired_at=timezone.now() - timedelta(minutes=60))
    log(bobc, "r1", 1)
    assert event_types.sweep() == 0  # not silent yet
    age(r1, 31)
    assert event_types.sweep() == 1
    assert len(fired(automation)) == 2
    assert not any(e.event.run_id == done.pk for e in fired(automation))


def test_a_late_event_does_not_report_a_run_that_logged_since(bobc, team):
    """The sweep saw it silent, but it logged before the event was evaluated: no report."""
    automation = make_automation(team, "stalled", PROJECT, {"type": "RUN_STALLED", "minutes": 5})
    assert bobc.post(f"{P}/runs/", {"id": "r1"}, format="json").status_code == 201
    run = Run.objects.get(run_id="r1")
    event = Event.objects.create(team=team, type="RUN_STALLED", project_id=run.project_id, run=run, facts={})
    from automations.tasks import evaluate_event

    evaluate_event(event.pk)  # the run was created just now
    assert fired(automation) == []
    assert RunCondition.objects.get(automation=automation, run=run).met is False


def test_the_sweep_costs_one_query_when_no_automation_watches_for_stalls(bobc, team):
    assert bobc.post(f"{P}/runs/", {"id": "r1"}, format="json").status_code == 201
    with CaptureQueriesContext(connection) as queries:
        event_types.sweep()
    assert len(queries) == 1


def test_the_admin_form_makes_one_and_refuses_minutes_out_of_range(client, alice, team, project):
    from automations.models import Automation

    from .test_firing import ADMIN_FORM

    assert client.login(username="alice", password="alice-password")
    form = {**ADMIN_FORM, "name": "hung", "event_type": "RUN_STALLED", "team": team.pk, "project": project.pk, "enabled": "on"}
    response = client.post("/admin/automations/automation/add/", {**form, "minutes": "10081"})
    assert response.status_code == 200 and "Must be a whole number from 1 to 10080." in response.content.decode()
    assert not Automation.objects.filter(name="hung").exists()
    response = client.post("/admin/automations/automation/add/", {**form, "minutes": "45", "run_name_regex": "^train"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Automation.objects.get(name="hung").event_filter == {"minutes": 45, "run_filter": {"name_regex": "^train"}}
