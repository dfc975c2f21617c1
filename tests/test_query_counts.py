"""Listing endpoints cost the same number of queries for 2 items as for 20 (no N+1)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automations.models import Execution
from events.models import Event
from tracking.models import ArtifactCollection, add_tag, create_version

from .conftest import P, T
from .engine import make_automation

pytestmark = pytest.mark.django_db


def queries(client, url):
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_version_lists_do_not_grow_with_versions(api, bob, team, project):
    collection = ArtifactCollection.objects.create(team=team, project=project, name="m", type="model")

    def grow(n):
        for _ in range(n):
            add_tag(create_version(collection, aliases=["x"]), "t")

    grow(2)
    few = [queries(api(bob), f"{P}/artifacts/m/versions/"), queries(api(bob), f"{P}/artifacts/m/")]
    grow(18)
    assert [queries(api(bob), f"{P}/artifacts/m/versions/"), queries(api(bob), f"{P}/artifacts/m/")] == few


def test_execution_lists_do_not_grow_with_executions(api, bob, team, project):
    automation = make_automation(team, "a", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"})
    collection = ArtifactCollection.objects.create(team=team, project=project, name="m", type="model")

    def grow(n):
        for _ in range(n):
            version = create_version(collection)
            event = Event.objects.create(team=team, type="CREATE_ARTIFACT", project=project, collection=collection, version=version, actor=bob)
            Execution.objects.create(automation=automation, event=event)

    grow(2)
    few = [queries(api(bob), f"{T}/executions/"), queries(api(bob), f"{T}/automations/{automation.pk}/executions/")]
    grow(18)
    assert [queries(api(bob), f"{T}/executions/"), queries(api(bob), f"{T}/automations/{automation.pk}/executions/")] == few
