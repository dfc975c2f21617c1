"""The admin's automation form: the field map its script uses (one function, from spec.py), the
preview of what the action sends for a sample event, "Send test" on a saved automation, the
integration form's per-kind fields, and links between the admin and the pages."""

import json
import re

import pytest

from actions.admin import integration_field_map
from automations.admin import field_map
from automations.models import Automation, Execution
from automations.spec import SpecError, parse_action, parse_event

from .engine import make_automation
from .receivers import Receiver
from .signin import csrf_token, signed_in

pytestmark = pytest.mark.django_db(transaction=True)

T = "/api/v1/teams/acme"
FORM = {"name": "hook", "description": "", "enabled": "on", "scope_type": "project", "event_type": "ADD_ARTIFACT_ALIAS",
        "alias_regex": "^prod$", "action_type": "WEBHOOK", "title": "", "message": "", "severity": ""}


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_IPS = True
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hook(team, project, api, alice, receiver):
    api(alice).post(f"{T}/secrets/", {"name": "TOKEN", "value": "super-secret-value"}, format="json")
    made = api(alice).post(f"{T}/integrations/", {"kind": "webhook", "name": "ci", "url": receiver.url + "/hook", "access_token_secret": "TOKEN"},
                           format="json")
    assert made.status_code == 201, made.content
    return made.json()


def page_map(html, element_id):
    return json.loads(re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S).group(1))


def allowed_fields(parse):
    """The fields `parse` takes for a type, as its own error for an unknown field lists them."""
    try:
        parse({"zzz_unknown": 1})
    except SpecError as exc:
        detail = next(iter(exc.errors.values()))
        message = next(m for m in (detail.get("zzz_unknown") or []) if "allowed:" in m)
        return set(message.split("allowed:", 1)[1].strip(" .").split(", ")) - {"type"}
    raise AssertionError("an unknown field was accepted")


def test_the_field_map_follows_what_the_spec_accepts_and_is_rendered_into_the_form(team, project):
    fmap = field_map()
    for event_type, fields in fmap["event"].items():  # every field the spec takes has its form field, none more
        scope = next(s for s, allowed in fmap["scope_events"].items() if event_type in allowed)
        taken = allowed_fields(lambda extra: parse_event(scope, {"type": event_type, **extra}))
        assert set(fields) == {f for f in taken if f != "run_filter"} | ({"run_user", "run_name_regex"} if "run_filter" in taken else set())
    for scope, allowed in fmap["scope_events"].items():  # the event types offered for a scope are those it allows
        for event_type in fmap["event"]:
            try:
                parse_event(scope, {"type": event_type})
                refused = False
            except SpecError as exc:
                refused = "cannot be used with" in str(exc.errors)
            assert refused == (event_type not in allowed), (scope, event_type)
    for action_type, fields in fmap["action"].items():
        if action_type != "NO_OP":
            assert set(fields) == allowed_fields(lambda extra: parse_action(team, {"type": action_type, **extra}))
    assert {"metric", "threshold", "run_user"} <= set(fmap["event"]["RUN_METRIC_THRESHOLD"])
    assert sorted(fmap["action"]["WEBHOOK"]) == ["integration", "payload"] and fmap["action"]["NO_OP"] == []
    page = signed_in("bob").get("/admin/automations/automation/add/").content.decode()
    assert page_map(page, "automation-field-map") == fmap
    assert "tripline/automation_form.js" in page and 'id="send-test"' not in page  # nothing saved to test yet


def test_the_preview_renders_the_form_as_edited_for_a_sample_event_with_secrets_masked(team, project, hook):
    client = signed_in("bob")
    form = client.get("/admin/automations/automation/add/")
    data = {**FORM, "csrfmiddlewaretoken": csrf_token(form), "team": team.pk, "project": project.pk, "integration": hook["id"],
            "payload": json.dumps({"version": "${artifact_version_string}", "token": "${TOKEN}", "by": "${event_author}"})}
    answer = client.post("/admin/automations/automation/preview/", data)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["kind"] == "payload" and body["preview"]["version"].startswith("acme/vision/") and body["preview"]["token"] == "********"
    assert "super-secret-value" not in answer.content.decode()
    assert not Automation.objects.exists()  # a preview saves nothing

    bad = client.post("/admin/automations/automation/preview/", {**data, "payload": '{"a": "${nope}"}'})
    assert bad.status_code == 400 and "Unknown variables: ${nope}" in " ".join(bad.json()["errors"]["payload"])
    bad_json = client.post("/admin/automations/automation/preview/", {**data, "payload": "{oops"})
    assert bad_json.status_code == 400 and "Not valid JSON" in bad_json.json()["errors"]["payload"][0]

    nothing = client.post("/admin/automations/automation/preview/", {**data, "action_type": "NO_OP"})
    assert nothing.json() == {"kind": "none", "preview": "This action sends nothing to preview."}
    assert client.get("/admin/automations/automation/preview/").status_code == 405
    viewer = signed_in("vic")
    page = viewer.get("/admin/automations/automation/")
    assert viewer.post("/admin/automations/automation/preview/", {**data, "csrfmiddlewaretoken": csrf_token(page)}).status_code == 403


def test_the_preview_of_a_saved_automation_uses_its_scope(team, project, hook):
    automation = make_automation(team, "saved", {"type": "project", "project": "vision"}, {"type": "RUN_STATE", "states": ["FAILED"]},
                                 {"type": "WEBHOOK", "integration": hook["id"], "payload": {"run": "${run_name}", "state": "${run_state}"}})
    client = signed_in("bob")
    change = client.get(f"/admin/automations/automation/{automation.pk}/change/")
    html = change.content.decode()
    assert 'id="action-preview"' in html and "sample run" in html  # the saved one's, without JavaScript
    data = {**FORM, "csrfmiddlewaretoken": csrf_token(change), "_pk": automation.pk, "event_type": "RUN_STATE", "states": ["FAILED"],
            "project": project.pk, "integration": hook["id"], "payload": json.dumps({"state": "${run_state}", "p": "${project_name}"})}
    answer = client.post("/admin/automations/automation/preview/", data)
    assert answer.json()["preview"] == {"state": "failed", "p": "vision"}
    assert Automation.objects.get(pk=automation.pk).action_config["payload"] == {"run": "${run_name}", "state": "${run_state}"}


def test_send_test_runs_the_saved_action_once_for_members(team, project, hook, receiver):
    automation = make_automation(team, "saved", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"},
                                 {"type": "WEBHOOK", "integration": hook["id"], "payload": {"v": "${artifact_version_string}"}})
    client = signed_in("bob")
    change = client.get(f"/admin/automations/automation/{automation.pk}/change/")
    assert 'id="send-test"' in change.content.decode()
    done = client.post(f"/admin/automations/automation/{automation.pk}/send-test/", {"csrfmiddlewaretoken": csrf_token(change)}, follow=True)
    execution = Execution.objects.get(automation=automation)
    assert execution.is_test and execution.status == "succeeded"
    assert f'Test of saved: succeeded. <a href="/acme/executions/{execution.pk}/">Open the execution</a>' in done.content.decode()
    assert len(receiver.requests) == 1 and json.loads(receiver.requests[0]["body"])["v"].startswith("acme/vision/")
    assert client.get(f"/admin/automations/automation/{automation.pk}/send-test/").status_code == 405

    viewer = signed_in("vic")
    view = viewer.get(f"/admin/automations/automation/{automation.pk}/change/")
    assert view.status_code == 200 and 'id="send-test"' not in view.content.decode()
    assert viewer.post(f"/admin/automations/automation/{automation.pk}/send-test/", {"csrfmiddlewaretoken": csrf_token(view)}).status_code == 403
    assert signed_in("charlie").get(f"/admin/automations/automation/{automation.pk}/change/").status_code in (302, 403, 404)
    assert Execution.objects.filter(automation=automation).count() == 1


def test_the_integration_form_knows_the_fields_of_each_kind(team, hook):
    fmap = integration_field_map()
    assert fmap["kinds"]["slack"] == ["channel", "token_secret"] and "url" in fmap["kinds"]["webhook"]
    page = signed_in("alice").get(f"/admin/actions/integration/{hook['id']}/change/").content.decode()
    assert page_map(page, "integration-field-map") == fmap and "tripline/integration_form.js" in page
    assert page_map(signed_in("alice").get("/admin/actions/integration/add/").content.decode(), "integration-field-map") == fmap


def test_admin_change_pages_link_to_the_pages_and_back(team, project):
    automation = make_automation(team, "linked", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"})
    bob = signed_in("bob")
    change = bob.get(f"/admin/automations/automation/{automation.pk}/change/").content.decode()
    assert "View on site" in change
    on_site = bob.get(re.search(r'href="(/admin/r/[^"]+)"', change).group(1))
    assert on_site.status_code == 302 and on_site.url.endswith(f"/acme/automations/{automation.pk}/")
    assert f'href="/admin/automations/automation/{automation.pk}/change/"' in bob.get(f"/acme/automations/{automation.pk}/").content.decode()
    viewer_page = signed_in("vic").get(f"/acme/automations/{automation.pk}/").content.decode()
    assert "View in the admin" in viewer_page and "Edit in the admin" not in viewer_page


def test_object_pages_link_to_the_admin_for_those_it_lets_in(team, project, registry):
    from tracking.models import ArtifactCollection, create_version

    collection = ArtifactCollection.objects.create(team=team, project=project, name="m", type="model")
    version = create_version(collection)
    pages = {"/acme/": f"/admin/teams/team/{team.pk}/change/", collection.get_absolute_url(): f"/admin/tracking/artifactcollection/{collection.pk}/change/",
             version.get_absolute_url(): f"/admin/tracking/artifactversion/{version.pk}/change/",
             registry.get_absolute_url(): f"/admin/tracking/registry/{registry.pk}/change/"}
    for user in ("alice", "bob", "vic"):
        client = signed_in(user)
        for url, admin_url in pages.items():
            page = client.get(url).content.decode()
            linked = f'href="{admin_url}"' in page
            assert linked or user != "alice", (user, url)  # the team's admin sees every link
            assert client.get(admin_url).status_code == (200 if linked else 403), (user, admin_url)  # the link and the door agree
    team_admin = signed_in("alice").get(f"/admin/teams/team/{team.pk}/change/").content.decode()
    assert "View on site" in team_admin


def test_notification_links_open_the_pages(team, project):
    from automations.context import payload_context
    from events.models import Event
    from tracking.models import ArtifactCollection, Run, create_version

    automation = make_automation(team, "n", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"})
    run = Run.objects.create(project=project, run_id="r1", name="first")
    version = create_version(ArtifactCollection.objects.create(team=team, project=project, name="m", type="model"))
    client = signed_in("vic")
    for fields in ({"run": run}, {"version": version, "collection": version.collection}):
        event = Event.objects.create(team=team, type="CREATE_ARTIFACT", project=project, facts={}, **fields)
        execution = Execution.objects.create(automation=automation, event=event)
        url = payload_context(execution)["event_url"]
        from django.conf import settings

        assert url.startswith(settings.SITE_URL + "/acme/") and client.get(url[len(settings.SITE_URL):]).status_code == 200


@pytest.mark.parametrize("changes", [
    {"payload": "[" * 5000 + "]" * 5000}, {"payload": '{"a": "\\ud800"}'}, {"team": "999999"}, {"team": "x"}, {"project": "-1"},
    {"integration": "abc"}, {"_pk": "99999999"}, {"_pk": "1e3"}, {"event_type": "NOPE"}, {"action_type": ""}, {"scope_type": "team"},
    {"window": "9" * 400, "event_type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": "nan"},
])
def test_the_preview_refuses_hostile_input_without_a_500(team, project, hook, changes):
    client = signed_in("bob")
    form = client.get("/admin/automations/automation/add/")
    data = {**FORM, "csrfmiddlewaretoken": csrf_token(form), "team": team.pk, "project": project.pk, "integration": hook["id"],
            "payload": '{"v": "${alias}"}', **changes}
    answer = client.post("/admin/automations/automation/preview/", data)
    assert answer.status_code in (200, 400, 404), answer.status_code
    if answer.status_code == 400:
        assert answer.json()["errors"]
    assert not Automation.objects.exists()


def test_the_preview_of_another_teams_automation_is_not_found(team, project, hook, make_user):
    from teams.models import Membership, Role, Team

    automation = make_automation(team, "theirs", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"})
    other = Team.objects.create(name="other")
    Membership.objects.create(team=other, user=make_user("olga"), role=Role.ADMIN)
    client = signed_in("olga")
    page = client.get("/admin/")
    answer = client.post("/admin/automations/automation/preview/", {**FORM, "_pk": automation.pk, "csrfmiddlewaretoken": csrf_token(page)})
    assert answer.status_code == 404
    sent = client.post(f"/admin/automations/automation/{automation.pk}/send-test/", {"csrfmiddlewaretoken": csrf_token(page)})
    assert sent.status_code == 404 and not Execution.objects.exists()
