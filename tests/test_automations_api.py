import pytest
from django.contrib.auth import get_user_model

from automations.models import Automation

from .conftest import T

pytestmark = pytest.mark.django_db

VALID = {
    "name": "deploy on production alias",
    "scope": {"type": "registry_collection", "registry": "models", "collection": "classifier"},
    "event": {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^production$"},
    "action": {"type": "WEBHOOK", "integration": "ci",
               "payload": {"event_type": "BUILD_AND_DEPLOY", "client_payload": {"version": "${artifact_version_string}", "author": "${event_author}", "token": "${GH_TOKEN}"}}},
}


@pytest.fixture
def setup(team, project, registry, api, alice):
    registry.collections.create(team=team, name="classifier", type="model")
    api(alice).post(f"{T}/secrets/", {"name": "GH_TOKEN", "value": "ghp_x"}, format="json")
    hook = api(alice).post(f"{T}/integrations/", {"kind": "webhook", "name": "ci", "url": "https://ci.example.com/hook",
                                                 "access_token_secret": "GH_TOKEN"}, format="json")
    assert hook.status_code == 201, hook.content
    return hook.json()


def with_(section, **changes):
    body = {**VALID, section: {**VALID[section], **changes}}
    return {k: v for k, v in body.items()}


def test_create_read_update_delete(api, bob, vic, setup):
    created = api(bob).post(f"{T}/automations/", VALID, format="json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["scope"] == VALID["scope"] and data["event"] == VALID["event"] and data["enabled"] is True
    assert data["action"]["integration"] == setup["id"] and data["action"]["payload"] == VALID["action"]["payload"]
    assert api(vic).get(f"{T}/automations/{data['id']}/").json()["name"] == VALID["name"]
    patched = api(bob).patch(f"{T}/automations/{data['id']}/", {"enabled": False, "event": {"type": "LINK_ARTIFACT"}}, format="json")
    assert patched.status_code == 200 and patched.json()["enabled"] is False and patched.json()["event"] == {"type": "LINK_ARTIFACT"}
    assert api(bob).post(f"{T}/automations/", VALID, format="json").status_code == 409
    assert api(bob).delete(f"{T}/automations/{data['id']}/").status_code == 204


@pytest.mark.parametrize("who, read, write", [("alice", 200, 201), ("bob", 200, 201), ("vic", 200, 403), ("charlie", 404, 404)])
def test_automation_roles(api, setup, who, read, write):
    user = get_user_model().objects.get(username=who)
    assert api(user).get(f"{T}/automations/").status_code == read
    assert api(user).post(f"{T}/automations/", VALID, format="json").status_code == write
    assert api(user).get(f"{T}/executions/").status_code == read


@pytest.mark.parametrize("who, status", [("alice", 200), ("bob", 403), ("vic", 403), ("charlie", 404)])
def test_integrations_are_admin_only(api, setup, who, status):
    user = get_user_model().objects.get(username=who)
    assert api(user).get(f"{T}/integrations/").status_code == status


@pytest.mark.parametrize(
    "body, section, field, words",
    [
        (with_("event", type="RUN_STATE", states=["FAILED"]), "event", "type", "cannot be used with a registry_collection scope"),
        (with_("event", type="LINK_ARTIFACT", alias_regex=None), "event", None, None),  # valid: alias_regex optional
        (with_("event", alias_regex="(unclosed"), "event", "alias_regex", "Not a valid regular expression"),
        (with_("event", alias_regex=None), "event", "alias_regex", "required"),
        (with_("event", colour="red"), "event", "colour", "Unknown field"),
        (with_("scope", type="galaxy"), "scope", "type", "Must be one of"),
        (with_("scope", registry="nope"), "scope", "registry", "No registry 'nope'"),
        (with_("action", integration="nope"), "action", "integration", "No integration 'nope'"),
        (with_("action", integration=999), "action", "integration", "No integration 999"),
        (with_("action", payload={"x": "${not_a_variable}"}), "action", "payload", "${not_a_variable}"),
        (with_("action", payload="not json object"), "action", "payload", "JSON object"),
        (with_("action", type="SLACK", payload=None), "action", "integration", "needs a slack one"),
    ],
)
def test_bad_automations_are_refused_with_the_field(api, bob, setup, body, section, field, words):
    body = {**body, section: {k: v for k, v in body[section].items() if v is not None}}
    response = api(bob).post(f"{T}/automations/", body, format="json")
    if field is None:
        assert response.status_code == 201, response.content
        return
    assert response.status_code == 400, response.content
    errors = response.json()[section]
    assert words in " ".join(errors[field]), errors


METRIC = {"name": "m", "scope": {"type": "project", "project": "vision"}, "action": {"type": "NO_OP"}}


@pytest.mark.parametrize(
    "event, field",
    [
        ({"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": 0.1, "window": 0}, "window"),
        ({"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": 0.1, "window": 5000}, "window"),
        ({"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "<", "threshold": 0.1}, "cmp"),
        ({"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": "low"}, "threshold"),
        ({"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt"}, "threshold"),
        ({"type": "RUN_METRIC_THRESHOLD", "metric": "bad metric!", "cmp": "$lt", "threshold": 1}, "metric"),
        ({"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": 1, "agg": "MEDIAN"}, "agg"),
        ({"type": "RUN_METRIC_CHANGE", "metric": "loss", "change_amount": 0}, "change_amount"),
        ({"type": "RUN_METRIC_CHANGE", "metric": "loss", "change_amount": -1}, "change_amount"),
        ({"type": "RUN_METRIC_CHANGE", "metric": "loss", "change_amount": 0.2, "change_dir": "UP"}, "change_dir"),
        ({"type": "RUN_METRIC_ZSCORE", "metric": "acc", "threshold": 0}, "threshold"),
        ({"type": "RUN_METRIC_ZSCORE", "metric": "acc", "basis": "team"}, "basis"),
        ({"type": "RUN_STATE", "states": ["KILLED"]}, "states"),
        ({"type": "RUN_STATE", "states": []}, "states"),
        ({"type": "RUN_STATE", "states": ["FAILED"], "run_filter": {"name_regex": "(("}}, "run_filter"),
        ({"type": "RUN_STATE", "states": ["FAILED"], "run_filter": {"team": "x"}}, "run_filter"),
    ],
)
def test_bad_metric_and_run_filters_are_refused(api, bob, setup, event, field):
    response = api(bob).post(f"{T}/automations/", {**METRIC, "event": event}, format="json")
    assert response.status_code == 400 and field in response.json()["event"], response.content


def test_defaults_are_filled_in(api, bob, setup):
    created = api(bob).post(f"{T}/automations/", {**METRIC, "event": {"type": "RUN_METRIC_CHANGE", "metric": "loss", "change_amount": 0.25}}, format="json")
    assert created.json()["event"] == {"type": "RUN_METRIC_CHANGE", "metric": "loss", "agg": "AVERAGE", "current_window": 10, "prior_window": 50,
                                       "change_type": "RELATIVE", "change_dir": "ANY", "change_amount": 0.25}
    z = api(bob).post(f"{T}/automations/", {**METRIC, "name": "z", "event": {"type": "RUN_METRIC_ZSCORE", "metric": "acc"}}, format="json")
    assert z.json()["event"] == {"type": "RUN_METRIC_ZSCORE", "metric": "acc", "window": 30, "threshold": 3.0, "change_dir": "ANY", "basis": "runs"}


def test_team_scope_refuses_run_events_and_project_scope_refuses_link(api, bob, setup):
    team_run = api(bob).post(f"{T}/automations/", {**METRIC, "scope": {"type": "team"}, "event": {"type": "RUN_STATE", "states": ["FAILED"]}}, format="json")
    assert team_run.status_code == 400
    project_link = api(bob).post(f"{T}/automations/", {**METRIC, "event": {"type": "LINK_ARTIFACT"}}, format="json")
    assert project_link.status_code == 400 and "cannot be used with a project scope" in project_link.json()["event"]["type"][0]


def test_malformed_bodies(api, bob, setup):
    assert api(bob).post(f"{T}/automations/", {"name": "x"}, format="json").status_code == 400
    assert api(bob).post(f"{T}/automations/", {**VALID, "scope": "project"}, format="json").status_code == 400
    assert api(bob).post(f"{T}/automations/", data="[", content_type="application/json").status_code == 400
    assert api(bob).patch(f"{T}/automations/9999/", {"enabled": False}, format="json").status_code == 404


def test_integrations_in_use_cannot_be_deleted_and_neither_can_their_secrets(api, alice, bob, setup):
    api(bob).post(f"{T}/automations/", VALID, format="json")
    assert api(alice).delete(f"{T}/integrations/{setup['id']}/").status_code == 409
    response = api(alice).delete(f"{T}/secrets/GH_TOKEN/")
    assert response.status_code == 409 and "ci" in response.json()["name"][0]
    Automation.objects.all().delete()
    assert api(alice).delete(f"{T}/integrations/{setup['id']}/").status_code == 204


def test_integration_validation(api, alice, setup):
    c = api(alice)
    assert c.post(f"{T}/integrations/", {"kind": "webhook", "name": "x"}, format="json").json() == {"url": ["A webhook needs a URL."]}
    assert "url" in c.post(f"{T}/integrations/", {"kind": "webhook", "name": "x", "url": "not a url"}, format="json").json()
    assert "secret" in c.post(f"{T}/integrations/", {"kind": "webhook", "name": "x", "url": "https://ci.example.org/", "secret": "MISSING"}, format="json").json()
    slack = c.post(f"{T}/integrations/", {"kind": "slack", "name": "s"}, format="json").json()
    assert set(slack) == {"channel", "token_secret"}
    assert c.post(f"{T}/integrations/", {"kind": "webhook", "name": "ci", "url": "https://ci.example.org/"}, format="json").status_code == 409
    listed = c.get(f"{T}/integrations/").json()["results"]
    assert listed[0]["access_token_secret"] == "GH_TOKEN" and "signing_secret" not in listed[0]
    patched = c.patch(f"{T}/integrations/{setup['id']}/", {"url": "https://ci.example.com/v2"}, format="json")
    assert patched.status_code == 200 and patched.json()["url"] == "https://ci.example.com/v2"
