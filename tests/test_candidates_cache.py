"""The automations a scope watches are kept per worker process between evaluations
(automations.matching.candidates) and loaded again after any change to one of the team's
automations, whichever path made it."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automations.matching import candidates
from automations.models import Automation
from events.models import Event

from .engine import make_automation

pytestmark = pytest.mark.django_db
PROJECT = {"type": "project", "project": "vision"}


def watched(team, project):
    event = Event.objects.create(team=team, type="RUN_HISTORY", project=project, facts={"keys": ["loss"], "last_step": 1})
    event.created_at = timezone.now()
    with CaptureQueriesContext(connection) as captured:
        names = sorted(a.name for a in candidates(event, Automation.objects.all()))
    loaded = [q for q in captured if 'FROM "automations_automation"' in q["sql"]]
    return names, len(loaded)


def metric(name="loss"):
    return {"type": "RUN_METRIC_THRESHOLD", "metric": name, "cmp": "$gt", "threshold": 1}


def test_loaded_once_then_again_after_each_kind_of_change(team, project):
    make_automation(team, "a", PROJECT, metric())
    make_automation(team, "b", PROJECT, metric())
    assert watched(team, project) == (["a", "b"], 1)
    assert watched(team, project) == (["a", "b"], 0)  # kept

    Automation.objects.filter(name="a").update(enabled=False)  # the admin's disable action
    assert watched(team, project) == (["b"], 1)
    b = Automation.objects.get(name="b")
    b.event_filter = {**b.event_filter, "threshold": 2}  # an edit (API, admin form)
    b.save()
    names, loaded = watched(team, project)
    assert loaded == 1 and Automation.objects.get(name="b").event_filter["threshold"] == 2
    assert [a.event_filter["threshold"] for a in candidates(Event.objects.latest("id"), Automation.objects.all())] == [2]

    Automation.objects.bulk_create([Automation(team=team, name="c", scope_type="project", project=project,
                                               event_type="RUN_METRIC_THRESHOLD", event_filter=metric(), enabled_since=timezone.now())])
    assert watched(team, project) == (["b", "c"], 1)
    Automation.objects.get(name="c").delete()
    assert watched(team, project) == (["b"], 1)
    Automation.objects.filter(name="b").delete()
    assert watched(team, project) == ([], 1)
    assert watched(team, project) == ([], 0)


def test_a_change_in_another_team_keeps_the_cache(team, project, make_user):
    from teams.models import Team

    make_automation(team, "a", PROJECT, metric())
    assert watched(team, project) == (["a"], 1)
    other = Team.objects.create(name="other")
    Automation.objects.create(team=other, name="x", scope_type="team", event_type="CREATE_ARTIFACT")
    assert watched(team, project) == (["a"], 0)


@pytest.mark.parametrize("how", ["save", "update"])
def test_an_automation_moved_to_another_team_leaves_the_cache_of_the_one_it_left(team, project, how):
    """The admin form can move an automation to another team (with a scope there): the team it
    left must stop seeing it, or its events would go on triggering it, their data delivered to
    the other team's action."""
    from teams.models import Team

    other = Team.objects.create(name="other")
    elsewhere = other.projects.create(name="vision")
    Automation.objects.create(team=other, name="x", scope_type="team", event_type="CREATE_ARTIFACT")  # its counter exists
    make_automation(team, "a", PROJECT, metric())
    assert watched(other, elsewhere) == ([], 1)
    assert watched(team, project) == (["a"], 1)
    if how == "save":
        moved = Automation.objects.get(name="a")
        moved.team, moved.project = other, elsewhere
        moved.save()
    else:
        Automation.objects.filter(name="a").update(team=other, project=elsewhere)
    assert watched(team, project) == ([], 1)
    assert watched(other, elsewhere) == (["a"], 1)
