import json

import pytest
from django.contrib.auth import get_user_model

from automations import event_types
from automations.models import ActionType, Automation, EventType, ScopeType
from automations.spec import CMPS

from .conftest import T
from .token_client import token_client

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


# --- Hardening: wrong types where a type name is expected, states in either case, plain regex
# errors, numbers no float holds, and the typed schema.

WRONG_TYPE_VALUES = ([], {}, [[]], ["project"], {"type": "team"}, 1, 1.5, True, None, "")


@pytest.mark.parametrize("section", ["scope", "event", "action"])
@pytest.mark.parametrize("value", WRONG_TYPE_VALUES, ids=repr)
def test_a_type_that_is_not_a_name_is_refused_with_the_choices(bob, setup, section, value):
    body = {**VALID, section: {**VALID[section], "type": value}}
    response = token_client(bob).post(f"{T}/automations/", body, format="json")
    assert response.status_code == 400
    assert response.json()[section]["type"][0].startswith("Must be one of ")
    assert not Automation.objects.exists()


@pytest.mark.parametrize("field", ["alias_regex", "registry", "collection", "integration"])
@pytest.mark.parametrize("value", [[], {}, ["x"], {"type": []}, 1.5, True], ids=repr)
def test_lists_and_objects_where_a_name_is_expected_are_refused(bob, setup, field, value):
    section = {"alias_regex": "event", "integration": "action"}.get(field, "scope")
    body = {**VALID, section: {**VALID[section], field: value}}
    response = token_client(bob).post(f"{T}/automations/", body, format="json")
    assert response.status_code == 400 and field in response.json()[section]
    assert not Automation.objects.exists()


def test_run_states_are_accepted_in_either_case_and_stored_uppercase(bob, setup):
    body = {**METRIC, "event": {"type": "RUN_STATE", "states": ["failed", "Finished", "FAILED"]}}
    created = token_client(bob).post(f"{T}/automations/", body, format="json")
    assert created.status_code == 201 and created.json()["event"]["states"] == ["FAILED", "FINISHED"]


@pytest.mark.parametrize("states", [["crashed"], ["done"], [["failed"]], [None], "FAILED"], ids=repr)
def test_a_bad_run_state_lists_the_ones_an_automation_watches(bob, setup, states):
    body = {**METRIC, "event": {"type": "RUN_STATE", "states": states}}
    response = token_client(bob).post(f"{T}/automations/", body, format="json")
    assert response.status_code == 400
    assert "RUNNING, FINISHED, FAILED (either case; CRASHED counts as FAILED" in response.json()["event"]["states"][0]


@pytest.mark.parametrize("pattern, reason", [("(unclosed", "missing ): (unclosed"), ("a{2,1}", "invalid repetition size: {2,1}"), ("[z-a]", "invalid character class range: z-a")])
def test_a_bad_regex_is_explained_in_plain_text(bob, setup, pattern, reason):
    response = token_client(bob).post(f"{T}/automations/", with_("event", alias_regex=pattern), format="json")
    message = response.json()["event"]["alias_regex"][0]
    assert message.startswith(f"Not a valid regular expression: {reason}") and "b'" not in message


@pytest.mark.parametrize("field, event", [
    ("threshold", '{"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": %s}'),
    ("change_amount", '{"type": "RUN_METRIC_CHANGE", "metric": "loss", "change_amount": %s}'),
    ("threshold", '{"type": "RUN_METRIC_ZSCORE", "metric": "loss", "threshold": %s}'),
])
@pytest.mark.parametrize("literal", ["9" * 400, "-" + "9" * 400, "1e999", "NaN", "Infinity", "-Infinity"])
def test_numbers_no_float_holds_are_refused_in_conditions(bob, setup, field, event, literal):
    body = json.dumps({**METRIC, "event": "@event@"}).replace('"@event@"', event % literal)
    response = token_client(bob).post(f"{T}/automations/", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json()["event"][0].startswith(f"event.{field}: ")
    assert not Automation.objects.exists()


def test_huge_but_finite_numbers_are_kept(bob, setup):
    body = {**METRIC, "event": {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$gt", "threshold": 10**300}}
    created = token_client(bob).post(f"{T}/automations/", body, format="json")
    assert created.status_code == 201 and created.json()["event"]["threshold"] == 10**300


def test_patch_refuses_fields_it_does_not_write(bob, setup):
    automation = token_client(bob).post(f"{T}/automations/", VALID, format="json").json()
    for field, value in [("id", 999), ("created_at", "2020-01-01T00:00:00Z"), ("url", "/x/"), ("team", "other"), ("scpoe", {})]:
        response = token_client(bob).patch(f"{T}/automations/{automation['id']}/", {field: value, "enabled": False}, format="json")
        assert response.status_code == 400 and "name, description, enabled, scope, event, action" in response.json()[field][0]
    assert token_client(bob).get(f"{T}/automations/{automation['id']}/").json() == automation


def schema_components(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)["components"]["schemas"]


def test_schema_describes_scope_event_and_action_one_variant_per_type(alice, setup):
    components = schema_components(token_client(alice))
    automation = components["Automation"]["properties"]
    watched = [t for t in EventType.values if t in event_types.REGISTRY]  # RUN_HISTORY is recorded, never watched
    assert len(watched) == len(EventType.values) - 1
    for section, types in (("scope", ScopeType.values), ("event", watched), ("action", ActionType.values)):
        assert automation[section] == {"$ref": f"#/components/schemas/{section.capitalize()}"}
        union = components[section.capitalize()]
        assert union["discriminator"]["propertyName"] == "type"
        assert set(union["discriminator"]["mapping"]) == set(types)
        assert len(union["oneOf"]) == len(types)
        for type_value, ref in union["discriminator"]["mapping"].items():
            variant = components[ref.rsplit("/", 1)[1]]
            type_enum = components[variant["properties"]["type"]["$ref"].rsplit("/", 1)[1]]["enum"]
            assert type_enum == [type_value] and "type" in variant["required"]
    threshold = components["RunMetricThresholdEvent"]
    assert threshold["properties"]["window"] | {"description": None} == {"type": "integer", "minimum": 1, "maximum": 1000, "description": None}
    assert components[threshold["properties"]["cmp"]["$ref"].rsplit("/", 1)[1]]["enum"] == list(CMPS)
    assert set(threshold["required"]) == {"type", "metric", "cmp", "threshold"}
    assert threshold["properties"]["metric"]["maxLength"] == 128 and threshold["properties"]["metric"]["pattern"]
    assert components["RunMetricChangeEvent"]["properties"]["change_amount"]["exclusiveMinimum"] is True
    assert components["AddArtifactTagEvent"]["properties"]["tag_regex"]["maxLength"] == 500
    assert set(components["ArtifactCollectionScope"]["required"]) == {"type", "project", "collection"}
    assert set(components["SlackAction"]["properties"]) >= {"integration", "title", "message", "severity"}
    assert components["NoOpAction"]["required"] == ["type"]
