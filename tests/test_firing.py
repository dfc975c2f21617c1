"""Nothing fires twice, nothing fires early: only a change of a run's state is a RUN_STATE event;
an automation fires only for events that occurred while it existed and was enabled, whichever
path created or enabled it; a changed condition starts from a clean per-run state, whichever
path changed it. Through the API with real token headers, and the admin signed in by password."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from automations.models import Automation, RunCondition
from automations.tasks import enqueue_evaluation, evaluate_batch
from events.models import Event
from events.signals import event_committed

from .conftest import P, T
from .engine import fired, make_automation

pytestmark = pytest.mark.django_db(transaction=True)
PROJECT = {"type": "project", "project": "vision"}
ADMIN_FORM = {"name": "watch", "description": "", "scope_type": "project", "event_type": "CREATE_ARTIFACT", "action_type": "NO_OP",
              "payload": "", "title": "", "message": ""}


def token_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def bobc(bob, team, project):
    return token_client(bob)


@pytest.fixture
def other_project(team):
    return team.projects.create(name="audio")


@pytest.fixture
def admin_site(client, alice, team):
    """alice, a team admin, signed in with her password."""
    assert client.login(username="alice", password="alice-password")
    return client


class Held:
    """Events recorded while evaluation is held back, as when the worker is behind."""

    def __enter__(self):
        event_committed.disconnect(dispatch_uid="automations.evaluate")
        self.first = (Event.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
        return self

    def __exit__(self, *exc):
        event_committed.connect(enqueue_evaluation, dispatch_uid="automations.evaluate")

    def ids(self, **kind):
        return list(Event.objects.filter(pk__gte=self.first, **kind).order_by("id").values_list("pk", flat=True))

    def evaluate(self):
        """As the worker does: the held events in one batch (one transaction)."""
        return evaluate_batch(self.ids())


def new_version(client):
    assert client.post(f"{P}/artifacts/", {"name": "mnist", "type": "model"}, format="json").status_code == 201


# --- run state


def test_only_a_change_of_a_runs_state_is_an_event(team, bobc):
    auto = make_automation(team, "states", PROJECT, {"type": "RUN_STATE", "states": ["FINISHED", "RUNNING", "FAILED"]})
    assert bobc.post(f"{P}/runs/", {"id": "r", "name": "first"}, format="json").status_code == 201
    assert bobc.patch(f"{P}/runs/r/", {"state": "finished"}, format="json").status_code == 200
    assert [e.context["run_state"] for e in fired(auto)] == ["running", "finished"]
    for change in [{"summary": {"acc": 0.9}}, {"name": "renamed"}, {"tags": ["best"]}, {"state": "finished"},
                   {"summary": {"acc": 0.95}, "tags": ["best", "final"], "name": "again"}]:
        assert bobc.patch(f"{P}/runs/r/", change, format="json").status_code == 200, change
    assert Event.objects.filter(type="RUN_STATE").count() == 2
    assert len(fired(auto)) == 2
    bobc.patch(f"{P}/runs/r/", {"state": "failed"}, format="json")
    assert [e.context["run_state"] for e in fired(auto)][-1] == "failed"
    assert Event.objects.get(type="RUN_STATE", facts__new_state="failed").facts["old_state"] == "finished"


def test_crashed_then_failed_enters_failed_once(team, bobc):
    """CRASHED counts as FAILED (SPEC): a crashed run marked failed enters nothing."""
    auto = make_automation(team, "failed", PROJECT, {"type": "RUN_STATE", "states": ["FAILED"]})
    assert bobc.post(f"{P}/runs/", {"id": "r"}, format="json").status_code == 201
    for state in ("crashed", "failed", "running", "failed"):
        assert bobc.patch(f"{P}/runs/r/", {"state": state}, format="json").status_code == 200
    assert [e.context["run_state"] for e in fired(auto)] == ["crashed", "failed"]


# --- a backlog, evaluated a batch at a time


def test_a_batch_evaluates_its_events_in_order_each_as_on_its_own(team, project, other_project, bobc):
    every = make_automation(team, "every", PROJECT, {"type": "CREATE_ARTIFACT"})
    datasets = make_automation(team, "datasets", PROJECT, {"type": "CREATE_ARTIFACT", "collection_type": "dataset"})
    audio = make_automation(team, "audio", {"type": "project", "project": "audio"}, {"type": "CREATE_ARTIFACT"})
    with Held() as held:
        for name, type_, where in [("a", "model", P), ("b", "dataset", P), ("c", "model", f"{T}/projects/audio"), ("a", "model", P)]:
            assert bobc.post(f"{where}/artifacts/", {"name": name, "type": type_}, format="json").status_code == 201
        ids = held.ids(type="CREATE_ARTIFACT")  # a new version records more events besides
        delivered = held.evaluate()
    assert delivered == ([], [])  # NO_OP: nothing to send
    assert [e.event_id for e in fired(every)] == [ids[0], ids[1], ids[3]]
    assert [e.event_id for e in fired(datasets)] == [ids[1]]
    assert [e.event_id for e in fired(audio)] == [ids[2]]
    assert not Event.objects.filter(evaluated_at__isnull=True).exists()
    assert held.evaluate() == ([], []) and len(fired(every)) == 3  # evaluated already: nothing new


def test_a_batch_holds_the_events_of_one_run_at_most():
    from automations.tasks import one_run

    assert one_run([(1, None), (2, 7), (3, None), (4, 7), (5, 8), (6, 7)]) == [1, 2, 3, 4]
    assert one_run([(1, 8), (2, 7)]) == [1]
    assert one_run([(1, None), (2, None)]) == [1, 2] and one_run([]) == []


def test_an_event_that_cannot_be_evaluated_holds_up_none_of_its_batch(team, project, other_project, bobc, caplog):
    every = make_automation(team, "every", PROJECT, {"type": "CREATE_ARTIFACT"})
    broken = make_automation(team, "broken", {"type": "project", "project": "audio"}, {"type": "CREATE_ARTIFACT"})
    Automation.objects.filter(pk=broken.pk).update(event_filter=["not", "a", "filter"])  # a row damaged outside Tripline
    with Held() as held:
        for where in [P, f"{T}/projects/audio", P]:
            assert bobc.post(f"{where}/artifacts/", {"name": "m", "type": "model"}, format="json").status_code == 201
        ids = held.ids(type="CREATE_ARTIFACT")
        held.evaluate()
    assert [e.event_id for e in fired(every)] == [ids[0], ids[2]]
    assert fired(broken) == []
    assert list(Event.objects.filter(evaluated_at__isnull=True).values_list("pk", flat=True)) == [ids[1]]  # left for the sweep
    assert f"event {ids[1]} could not be evaluated" in caplog.text


# --- enabled_since, on every path that creates or enables an automation


def enable_by_api_patch(team, admin_site, bobc, automation):
    assert bobc.patch(f"{T}/automations/{automation.pk}/", {"enabled": True}, format="json").status_code == 200


def enable_by_admin_form(team, admin_site, bobc, automation):
    response = admin_site.post(f"/admin/automations/automation/{automation.pk}/change/",
                               {**ADMIN_FORM, "name": automation.name, "team": team.pk, "project": automation.project_id, "enabled": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]


def enable_by_admin_action(team, admin_site, bobc, automation):
    response = admin_site.post("/admin/automations/automation/", {"action": "enable", "_selected_action": [automation.pk]})
    assert response.status_code == 302


def enable_in_bulk(team, admin_site, bobc, automation):
    Automation.objects.filter(pk=automation.pk).update(enabled=True)


def enable_by_save(team, admin_site, bobc, automation):
    automation.enabled = True
    automation.save(update_fields=["enabled"])


@pytest.mark.parametrize("enable", [enable_by_api_patch, enable_by_admin_form, enable_by_admin_action, enable_in_bulk, enable_by_save])
def test_an_automation_enabled_after_an_event_does_not_fire_for_it(team, project, admin_site, bobc, enable):
    auto = make_automation(team, "watch", PROJECT, {"type": "CREATE_ARTIFACT"}, enabled=False)
    with Held() as held:
        new_version(bobc)  # happens while it is off...
        enable(team, admin_site, bobc, Automation.objects.get(pk=auto.pk))
        held.evaluate()  # ...and is evaluated after it was switched on
    assert Automation.objects.get(pk=auto.pk).enabled and fired(auto) == []
    new_version(bobc)
    assert len(fired(auto)) == 1


def test_enabling_an_enabled_automation_keeps_its_events(team, project, bobc):
    auto = make_automation(team, "watch", PROJECT, {"type": "CREATE_ARTIFACT"})
    with Held() as held:
        new_version(bobc)
        Automation.objects.filter(pk=auto.pk).update(enabled=True)  # no change: it was on all along
        auto.save()
        held.evaluate()
    assert len(fired(auto)) == 1


def create_by_api(team, admin_site, bobc):
    response = bobc.post(f"{T}/automations/", {"name": "watch", "scope": PROJECT, "event": {"type": "CREATE_ARTIFACT"},
                                               "action": {"type": "NO_OP"}}, format="json")
    assert response.status_code == 201, response.content


def create_by_admin_form(team, admin_site, bobc):
    response = admin_site.post("/admin/automations/automation/add/", {**ADMIN_FORM, "team": team.pk, "project": team.projects.get().pk, "enabled": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]


@pytest.mark.parametrize("create", [create_by_api, create_by_admin_form])
def test_an_automation_created_after_an_event_does_not_fire_for_it(team, project, admin_site, bobc, create):
    with Held() as held:
        new_version(bobc)
        create(team, admin_site, bobc)
        held.evaluate()
    auto = Automation.objects.get(name="watch")
    assert fired(auto) == []
    new_version(bobc)
    assert len(fired(auto)) == 1


def test_an_event_while_disabled_never_fires(team, project, bobc):
    auto = make_automation(team, "watch", PROJECT, {"type": "CREATE_ARTIFACT"})
    bobc.patch(f"{T}/automations/{auto.pk}/", {"enabled": False}, format="json")
    with Held() as held:
        new_version(bobc)
        bobc.patch(f"{T}/automations/{auto.pk}/", {"enabled": True}, format="json")
        held.evaluate()
    assert fired(auto) == []


# --- a changed condition forgets the old per-run state


THRESHOLD = {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$gt", "threshold": 1}


def log(client, step, value):
    assert client.post(f"{P}/runs/r/history/", {"rows": [{"step": step, "metrics": {"loss": value}}]}, format="json").status_code == 201


def edit_by_api(team, admin_site, bobc, automation):
    assert bobc.patch(f"{T}/automations/{automation.pk}/", {"event": {**THRESHOLD, "threshold": 2}}, format="json").status_code == 200


def edit_by_admin_form(team, admin_site, bobc, automation):
    form = {**ADMIN_FORM, "name": automation.name, "team": team.pk, "project": automation.project_id, "enabled": "on",
            "event_type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$gt", "threshold": "2", "window": ""}
    response = admin_site.post(f"/admin/automations/automation/{automation.pk}/change/", form)
    assert response.status_code == 302, response.context["adminform"].form.errors


def edit_in_bulk(team, admin_site, bobc, automation):
    Automation.objects.filter(pk=automation.pk).update(event_filter={**automation.event_filter, "threshold": 2})


@pytest.mark.parametrize("edit", [edit_by_api, edit_by_admin_form, edit_in_bulk])
def test_editing_a_condition_resets_its_state_per_run(team, project, admin_site, bobc, edit):
    auto = make_automation(team, "loss high", PROJECT, THRESHOLD)
    other = make_automation(team, "untouched", PROJECT, THRESHOLD)
    bobc.post(f"{P}/runs/", {"id": "r"}, format="json")
    log(bobc, 0, 5)
    assert len(fired(auto)) == 1 and RunCondition.objects.get(automation=auto).met
    edit(team, admin_site, bobc, Automation.objects.get(pk=auto.pk))
    assert Automation.objects.get(pk=auto.pk).event_filter["threshold"] == 2
    assert not RunCondition.objects.filter(automation=auto).exists()
    assert RunCondition.objects.get(automation=other).met  # another automation keeps its own
    log(bobc, 1, 5)  # the new condition holds: a first transition for it, cooldown included
    assert len(fired(auto)) == 2 and len(fired(other)) == 1


def test_an_edit_that_leaves_the_condition_keeps_its_state(team, project, bobc):
    auto = make_automation(team, "loss high", PROJECT, THRESHOLD)
    bobc.post(f"{P}/runs/", {"id": "r"}, format="json")
    log(bobc, 0, 5)
    assert bobc.patch(f"{T}/automations/{auto.pk}/", {"name": "renamed", "description": "d", "event": THRESHOLD}, format="json").status_code == 200
    assert RunCondition.objects.get(automation=auto).met
    log(bobc, 1, 5)
    assert len(fired(auto)) == 1
