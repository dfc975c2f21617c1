"""The executions pages, an automation's paged history, an execution and its redelivery, and the
automations hub: who may see and do what (SPEC §5), paging and filters kept in the URL, and a
number of queries that does not grow with the rows."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automations.models import Automation, DeliveryAttempt, Execution, ExecutionStatus
from events.models import Event
from tracking.models import ArtifactCollection, Run, create_version

from .engine import make_automation
from .signin import csrf_token, signed_in

pytestmark = pytest.mark.django_db

SCOPE = {"type": "project", "project": "vision"}


@pytest.fixture
def hooks(team, project):
    """Two automations of different event types, made WEBHOOK-like so that they can be redelivered."""
    alias = make_automation(team, "alias hook", SCOPE, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^prod$"})
    state = make_automation(team, "state hook", SCOPE, {"type": "RUN_STATE", "states": ["FAILED"]})
    Automation.objects.update(action_type="WEBHOOK")
    return Automation.objects.get(pk=alias.pk), Automation.objects.get(pk=state.pk)


def executions(automation, n, status=ExecutionStatus.SUCCEEDED, **fields):
    """n executions of `automation`, each with its own event (a version, or a run) and one attempt."""
    team, project = automation.team, automation.project
    made = []
    for _ in range(n):
        if automation.event_type == "RUN_STATE":
            run = Run.objects.create(project=project, run_id=f"r{Run.objects.count()}", name="run")
            event = Event.objects.create(team=team, type="RUN_STATE", project=project, run=run, facts={})
        else:
            collection, _ = ArtifactCollection.objects.get_or_create(team=team, project=project, name="m", defaults={"type": "model"})
            event = Event.objects.create(team=team, type="ADD_ARTIFACT_ALIAS", project=project, collection=collection,
                                         version=create_version(collection), facts={})
        execution = Execution.objects.create(automation=automation, event=event, status=status, attempt_count=1, **fields)
        DeliveryAttempt.objects.create(execution=execution, number=1, started_at=timezone.now(), duration_ms=12, status_code=200,
                                       response_body="ok")
        made.append(execution)
    return made


def queries(client, url):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
        assert response.status_code == 200, response.status_code
    return len(captured)


def ids_on(page):
    return [int(i) for i in re.findall(r'href="/acme/executions/(\d+)/"', page)]


# --- who may see and do what -------------------------------------------------------------------

@pytest.mark.parametrize("user, reads, writes", [("alice", True, True), ("bob", True, True), ("vic", True, False), ("charlie", False, False)])
def test_each_page_as_admin_member_viewer_and_outsider(team, project, hooks, user, reads, writes):
    alias, _ = hooks
    execution = executions(alias, 1)[0]
    client = signed_in(user)
    for url in ["/acme/executions/", "/acme/automations/", f"/acme/automations/{alias.pk}/", f"/acme/executions/{execution.pk}/"]:
        assert client.get(url).status_code == (200 if reads else 404), url
    assert client.get(f"/acme/executions/{execution.pk}/redeliver/").status_code == (200 if writes else 404)
    hub = client.get("/acme/automations/").content.decode() if reads else ""
    assert ("Disable</button>" in hub) == writes
    page = client.get(f"/acme/executions/{execution.pk}/").content.decode() if reads else ""
    assert ("Redeliver…" in page) == writes


def test_signed_out_people_are_sent_to_sign_in(client, team, hooks):
    for url in ["/acme/executions/", "/acme/automations/"]:
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/login/?next=")


# --- the executions page -------------------------------------------------------------------------

def test_the_executions_page_pages_on_the_server_newest_first(team, project, hooks):
    alias, state = hooks
    made = executions(alias, 70) + executions(state, 50)
    client = signed_in("vic")
    first = client.get("/acme/executions/").content.decode()
    newest = sorted((e.pk for e in made), reverse=True)
    assert ids_on(first) == newest[:50] and "Page 1 of 3 · 120 in all" in first
    third = client.get("/acme/executions/?page=3").content.decode()
    assert ids_on(third) == newest[100:]
    assert client.get("/acme/executions/?page=99").status_code == 200  # past the end: the last page


def test_the_executions_page_filters_and_keeps_the_filters_in_its_page_links(team, project, hooks):
    alias, state = hooks
    failed = executions(alias, 55, status=ExecutionStatus.FAILED, error="HTTP 500")
    executions(alias, 3)
    runs = executions(state, 4, status=ExecutionStatus.FAILED, error="HTTP 503")
    client = signed_in("bob")
    page = client.get(f"/acme/executions/?status=failed&automation={alias.pk}").content.decode()
    assert set(ids_on(page)) <= {e.pk for e in failed} and len(ids_on(page)) == 50
    assert f'href="?status=failed&amp;automation={alias.pk}&amp;page=2"' in page
    second = client.get(f"/acme/executions/?status=failed&automation={alias.pk}&page=2").content.decode()
    assert len(ids_on(second)) == 5
    by_event = client.get("/acme/executions/?event=RUN_STATE").content.decode()
    assert sorted(ids_on(by_event)) == sorted(e.pk for e in runs)
    Execution.objects.filter(pk=runs[0].pk).update(triggered_at=timezone.now() - timedelta(days=3))
    since = (timezone.localtime() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    recent = client.get(f"/acme/executions/?event=RUN_STATE&since={since}").content.decode()
    assert sorted(ids_on(recent)) == sorted(e.pk for e in runs[1:])
    until = (timezone.localtime() - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    assert ids_on(client.get(f"/acme/executions/?until={until}").content.decode()) == [runs[0].pk]


@pytest.mark.parametrize("query, field", [("status=exploded", "Status"), ("automation=99999", "Automation"), ("automation=x", "Automation"),
                                          ("event=NOPE", "Event type"), ("since=yesterday", "From"),
                                          ("since=2026-01-02T00:00&until=2026-01-01T00:00", "To")])
def test_a_bad_filter_is_a_400_that_names_the_field(team, project, hooks, query, field):
    executions(hooks[0], 2)
    response = signed_in("bob").get(f"/acme/executions/?{query}")
    assert response.status_code == 400
    page = response.content.decode()
    assert f'<span class="error">{field}:' in page and not ids_on(page)


def test_an_automations_history_is_paged_the_same_way(team, project, hooks):
    alias, state = hooks
    made = executions(alias, 120)
    executions(state, 3)
    client = signed_in("vic")
    first = client.get(f"/acme/automations/{alias.pk}/").content.decode()
    newest = sorted((e.pk for e in made), reverse=True)
    assert ids_on(first) == newest[:50] and "120 in all" in first
    assert ids_on(client.get(f"/acme/automations/{alias.pk}/?page=3").content.decode()) == newest[100:]
    assert ids_on(client.get(f"/acme/automations/{alias.pk}/?status=failed").content.decode()) == []
    assert client.get(f"/acme/automations/{alias.pk}/?status=nope").status_code == 400


# --- an execution --------------------------------------------------------------------------------

def test_the_execution_page_shows_attempts_and_what_happens_next(team, project, hooks):
    alias, _ = hooks
    execution = executions(alias, 1, status=ExecutionStatus.PENDING, error="HTTP 500")[0]
    retry_at = timezone.now() + timedelta(minutes=5)
    Execution.objects.filter(pk=execution.pk).update(next_attempt_at=retry_at,
                                                     request={"method": "POST", "url": "https://hooks.example.org/T0/secret-path", "body": {"k": 1}})
    DeliveryAttempt.objects.filter(execution=execution).update(status_code=500, response_body="upstream down", error="HTTP 500")
    page = signed_in("vic").get(f"/acme/executions/{execution.pk}/").content.decode()
    assert "Attempt 2 at " in page and "(in 4 min" in page
    assert "upstream down" in page and "12 ms" in page and "HTTP 500" in page
    assert "secret-path" not in page and "https://hooks.example.org" in page  # the URL's path may hold a token: admins only
    assert "secret-path" in signed_in("alice").get(f"/acme/executions/{execution.pk}/").content.decode()
    Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.FAILED, next_attempt_at=None)
    assert "every attempt of its round has failed" in signed_in("vic").get(f"/acme/executions/{execution.pk}/").content.decode()


def test_redelivery_asks_for_confirmation_then_queues_the_same_delivery(team, project, hooks):
    alias, _ = hooks
    execution = executions(alias, 1, status=ExecutionStatus.FAILED, error="HTTP 500")[0]
    client = signed_in("bob")
    confirm = client.get(f"/acme/executions/{execution.pk}/redeliver/")
    assert confirm.status_code == 200 and execution.delivery_id in confirm.content.decode()
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.FAILED  # asking changes nothing
    assert client.post(f"/acme/executions/{execution.pk}/redeliver/").status_code == 403  # no CSRF token: refused
    done = client.post(f"/acme/executions/{execution.pk}/redeliver/", {"csrfmiddlewaretoken": csrf_token(confirm)}, follow=True)
    assert "Queued for redelivery." in done.content.decode()
    again = Execution.objects.get(pk=execution.pk)
    assert again.status == ExecutionStatus.PENDING and again.delivery_id == execution.delivery_id and again.round_start == 1
    viewer = signed_in("vic")
    page = viewer.get(f"/acme/executions/{execution.pk}/")
    assert viewer.post(f"/acme/executions/{execution.pk}/redeliver/", {"csrfmiddlewaretoken": csrf_token(page)}).status_code == 404


# --- the hub -------------------------------------------------------------------------------------

def test_the_hub_shows_last_execution_and_failures_of_the_last_day(team, project, hooks):
    alias, state = hooks
    old = executions(alias, 2, status=ExecutionStatus.FAILED, error="HTTP 500")
    Execution.objects.filter(pk=old[0].pk).update(triggered_at=timezone.now() - timedelta(days=2))
    last = executions(alias, 1, status=ExecutionStatus.SUCCEEDED)[0]
    make_automation(team, "quiet", SCOPE, {"type": "CREATE_ARTIFACT"}, enabled=False)
    page = signed_in("vic").get("/acme/automations/").content.decode()
    row = re.search(rf'<tr data-automation="{alias.pk}">(.*?)</tr>', page, re.S).group(1)
    assert f'href="/acme/executions/{last.pk}/"' in row and "status-succeeded" in row
    assert re.search(r'class="failures"><a[^>]*>1</a>', row)  # the one of two days ago is not counted
    failures = re.search(r'class="failures"><a class="error" href="([^"]+)"', row).group(1).replace("&amp;", "&")
    assert ids_on(signed_in("vic").get(failures).content.decode()) == [old[1].pk]  # the link lists those same failures
    quiet = re.search(r'<tr data-automation="\d+"><td><a[^>]*>quiet</a>(.*?)</tr>', page, re.S).group(1)
    assert "never" in quiet and 'class="enabled">no' in quiet


def test_the_hub_filters_and_searches(team, project, hooks):
    alias, state = hooks
    executions(alias, 1, status=ExecutionStatus.FAILED)
    make_automation(team, "quiet", SCOPE, {"type": "CREATE_ARTIFACT"}, enabled=False)
    client = signed_in("vic")

    def names(query):
        return re.findall(r'<tr data-automation="\d+"><td><a[^>]*>([^<]+)</a>', client.get(f"/acme/automations/?{query}").content.decode())

    assert names("") == ["alias hook", "quiet", "state hook"]
    assert names("q=HOOK") == ["alias hook", "state hook"]
    assert names("event=RUN_STATE") == ["state hook"]
    assert names("enabled=no") == ["quiet"]
    assert names("failing=on") == ["alias hook"]
    assert names("last=never") == ["quiet", "state hook"]
    assert names("action=NO_OP") == ["quiet"]
    assert client.get("/acme/automations/?event=BOGUS").status_code == 400


def test_members_enable_and_disable_from_the_hub_with_a_csrf_post(team, project, hooks):
    alias, _ = hooks
    client = signed_in("bob")
    hub = client.get("/acme/automations/?q=alias")
    assert client.get(f"/acme/automations/{alias.pk}/toggle/").status_code == 405
    assert client.post(f"/acme/automations/{alias.pk}/toggle/", {"enabled": "false"}).status_code == 403  # no CSRF token
    done = client.post(f"/acme/automations/{alias.pk}/toggle/", {"enabled": "false", "next": "/acme/automations/?q=alias",
                                                                 "csrfmiddlewaretoken": csrf_token(hub)})
    assert done.status_code == 302 and done.url == "/acme/automations/?q=alias"
    assert Automation.objects.get(pk=alias.pk).enabled is False
    before = timezone.now()
    client.post(f"/acme/automations/{alias.pk}/toggle/", {"enabled": "true", "next": "https://evil.example/", "csrfmiddlewaretoken": csrf_token(hub)})
    back_on = Automation.objects.get(pk=alias.pk)
    assert back_on.enabled and back_on.enabled_since >= before  # it fires only for what happens from now on
    bad = client.post(f"/acme/automations/{alias.pk}/toggle/", {"enabled": "maybe", "csrfmiddlewaretoken": csrf_token(hub)}, follow=True)
    assert "enabled: must be true or false." in bad.content.decode()
    viewer = signed_in("vic")
    page = viewer.get("/acme/automations/")
    assert viewer.post(f"/acme/automations/{alias.pk}/toggle/", {"enabled": "false", "csrfmiddlewaretoken": csrf_token(page)}).status_code == 404
    assert Automation.objects.get(pk=alias.pk).enabled


# --- queries that do not grow with the rows ------------------------------------------------------

def test_the_pages_cost_the_same_queries_for_few_and_many_rows(team, project, hooks):
    alias, state = hooks
    client = signed_in("bob")
    urls = ["/acme/executions/", "/acme/executions/?status=succeeded&event=RUN_STATE", f"/acme/automations/{alias.pk}/",
            f"/acme/automations/{state.pk}/", "/acme/automations/"]

    def grow(n):
        executions(alias, n)
        executions(state, n, status=ExecutionStatus.FAILED)
        for i in range(n):
            make_automation(team, f"extra {Automation.objects.count()}", SCOPE, {"type": "CREATE_ARTIFACT"})

    grow(2)
    few = [queries(client, url) for url in urls]
    grow(25)
    assert [queries(client, url) for url in urls] == few
    execution = Execution.objects.filter(automation=alias).first()
    one = queries(client, f"/acme/executions/{execution.pk}/")
    for n in range(2, 6):
        DeliveryAttempt.objects.create(execution=execution, number=n, started_at=timezone.now(), duration_ms=5, status_code=500)
    assert queries(client, f"/acme/executions/{execution.pk}/") == one


@pytest.mark.parametrize("user", ["alice", "bob", "vic"])
def test_the_project_and_run_pages_link_to_their_admin_pages_and_back(team, project, user):
    """Every object page links to its admin page for those the admin lets see it, and the admin's
    change page links back ("View on site")."""
    run = Run.objects.create(project=project, run_id="r-admin", name="linked")
    client = signed_in(user)
    for page, admin_url in ((f"/acme/projects/vision/", f"/admin/tracking/project/{project.pk}/change/"),
                            (f"/acme/projects/vision/runs/r-admin/", f"/admin/tracking/run/{run.pk}/change/")):
        shown = client.get(page)
        assert shown.status_code == 200, (page, shown.status_code)
        assert f'class="admin-link" href="{admin_url}"' in shown.content.decode(), page
        change = client.get(admin_url)
        assert change.status_code == 200, (admin_url, change.status_code)
        assert "View on site" in change.content.decode(), admin_url
