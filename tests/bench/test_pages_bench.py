"""`make bench`, row 12: the executions page and the automations hub with a large history, signed in as a
member, each against the same page of a small team measured in the same run. Prints figures,
asserts nothing about speed."""

import time

import pytest
from django.utils import timezone

from automations.models import Automation, Execution, ExecutionStatus
from events.models import Event
from tests.engine import make_automation
from tests.signin import signed_in

from .results import record

pytestmark = [pytest.mark.bench, pytest.mark.django_db]

SMALL, LARGE = 100, 100_000
STATUSES = [ExecutionStatus.SUCCEEDED] * 8 + [ExecutionStatus.FAILED, ExecutionStatus.PENDING]


def fill(team, project, automations, n):
    now = timezone.now()
    events = Event.objects.bulk_create(
        [Event(team=team, type="CREATE_ARTIFACT", project=project, facts={}, evaluated_at=now) for _ in range(n)], batch_size=5000)
    Execution.objects.bulk_create(
        [Execution(automation=automations[i % len(automations)], event=e, status=STATUSES[i % len(STATUSES)], attempt_count=1,
                   error="HTTP 500" if STATUSES[i % len(STATUSES)] != ExecutionStatus.SUCCEEDED else "")
         for i, e in enumerate(events)], batch_size=5000)


def best_of(client, url, times=5):
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        response = client.get(url)
        best = min(best, time.perf_counter() - started)
        assert response.status_code == 200, url
    return best


def test_the_executions_pages_with_a_hundred_thousand_executions(team, project):
    automations = [make_automation(team, f"a{i}", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"}) for i in range(20)]
    fill(team, project, automations, SMALL)
    client = signed_in("bob")
    pages = [("a", "executions, first page", "/acme/executions/"),
             ("b", "executions, status=failed and one automation", f"/acme/executions/?status=failed&automation={automations[3].pk}"),
             ("c", "executions, the last page", "/acme/executions/?page=100000"),
             ("d", "an automation's history, first page", f"/acme/automations/{automations[0].pk}/"),
             ("e", "automations hub (20 automations)", "/acme/automations/")]
    small = {row: best_of(client, url) for row, _, url in pages}
    fill(team, project, automations, LARGE - SMALL)
    assert Execution.objects.count() == LARGE and Automation.objects.count() == 20
    for row, what, url in pages:
        large = best_of(client, url)
        record(f"12{row}", f"page: {what}", f"{small[row] * 1000:.1f} ms with {SMALL} executions", f"{large * 1000:.1f} ms with {LARGE:,}",
               "report", ratio=large / small[row])
