import pytest
from django.contrib.auth import get_user_model

from teams.api_input import MAX_DEPTH
from teams.models import Secret

from .conftest import P, T
from .token_client import token_client

pytestmark = pytest.mark.django_db


def test_me_lists_teams_with_roles(api, team, bob):
    data = api(bob).get("/api/v1/me/").json()
    assert data == {"username": "bob", "teams": [{"name": "acme", "role": "member"}]}


def test_anonymous_requests_get_401(api, team):
    assert api(None).get(f"{T}/").status_code == 401
    assert api(None).get("/api/v1/me/").status_code == 401


@pytest.mark.parametrize("header", ["Token nope", "Token ", "Token a b", "Token a\x00b", "Token \u00e9", "Token " + "a" * 5000, "Bearer x"])
def test_a_bad_token_is_401_never_5xx(team, header):
    from rest_framework.test import APIClient

    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get(f"{T}/").status_code == 401


def test_token_auth_works_with_drf_create_token(team, alice, client):
    from django.core.management import call_command
    from io import StringIO

    out = StringIO()
    call_command("drf_create_token", "alice", stdout=out)
    key = out.getvalue().split()[2]
    response = client.get(f"{T}/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200 and response.json()["name"] == "acme"


def test_creating_a_team_makes_the_caller_admin(api, charlie):
    response = api(charlie).post("/api/v1/teams/", {"name": "charlies", "display_name": "C"}, format="json")
    assert response.status_code == 201
    assert api(charlie).get("/api/v1/me/").json()["teams"] == [{"name": "charlies", "role": "admin"}]


def test_team_names_clash_with_409_and_bad_slugs_with_400(api, team, charlie):
    assert api(charlie).post("/api/v1/teams/", {"name": "acme"}, format="json").status_code == 409
    bad = api(charlie).post("/api/v1/teams/", {"name": "no spaces!"}, format="json")
    assert bad.status_code == 400 and "name" in bad.json()
    long = api(charlie).post("/api/v1/teams/", {"name": "x" * 65}, format="json")
    assert long.status_code == 400 and "name" in long.json()
    reserved = api(charlie).post("/api/v1/teams/", {"name": "admin"}, format="json")
    assert reserved.status_code == 400 and "name" in reserved.json()


@pytest.mark.parametrize(
    "who, read, write",
    [("alice", 200, 201), ("bob", 403, 403), ("vic", 403, 403), ("charlie", 404, 404)],
)
def test_only_admins_manage_members(api, team, make_user, who, read, write):
    user = get_user_model().objects.get(username=who)
    make_user("dora")
    assert api(user).get(f"{T}/members/").status_code == (200 if who != "charlie" else 404)
    response = api(user).post(f"{T}/members/", {"username": "dora", "role": "viewer"}, format="json")
    assert response.status_code == write


def test_member_role_changes_and_last_admin_is_kept(api, team, alice, bob):
    assert api(alice).patch(f"{T}/members/bob/", {"role": "viewer"}, format="json").json()["role"] == "viewer"
    last = api(alice).patch(f"{T}/members/alice/", {"role": "member"}, format="json")
    assert last.status_code == 400 and "role" in last.json()
    assert api(alice).delete(f"{T}/members/alice/").status_code == 400
    assert api(alice).delete(f"{T}/members/bob/").status_code == 204
    assert api(alice).post(f"{T}/members/", {"username": "nobody", "role": "viewer"}, format="json").json() == {
        "username": ["No user named 'nobody'."]
    }
    assert api(alice).post(f"{T}/members/", {"username": "vic", "role": "viewer"}, format="json").status_code == 409
    assert api(alice).post(f"{T}/members/", {"username": "vic", "role": "owner"}, format="json").status_code == 400


@pytest.mark.parametrize("who, status", [("alice", 201), ("bob", 403), ("vic", 403), ("charlie", 404)])
def test_only_admins_create_secrets(api, team, who, status):
    user = get_user_model().objects.get(username=who)
    assert api(user).post(f"{T}/secrets/", {"name": "TOKEN", "value": "v"}, format="json").status_code == status
    assert api(user).get(f"{T}/secrets/").status_code == (200 if who == "alice" else status)


def test_secret_values_are_write_only_and_encrypted_at_rest(api, team, alice):
    value = "ghp_very-secret-value-123"
    created = api(alice).post(f"{T}/secrets/", {"name": "GITHUB_TOKEN", "value": value}, format="json")
    rotated = api(alice).put(f"{T}/secrets/GITHUB_TOKEN/", {"value": value + "-2"}, format="json")
    listed = api(alice).get(f"{T}/secrets/")
    detail = api(alice).get(f"{T}/secrets/GITHUB_TOKEN/")
    for response in (created, rotated, listed, detail):
        assert response.status_code in (200, 201)
        assert "very-secret" not in response.content.decode()
    assert listed.json()["results"][0]["name"] == "GITHUB_TOKEN"
    assert Secret.objects.get(name="GITHUB_TOKEN").value == value + "-2"
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM teams_secret")
        stored = cursor.fetchone()[0]
    assert "very-secret" not in stored


def test_secret_names_are_validated_and_unique(api, team, alice):
    assert api(alice).post(f"{T}/secrets/", {"name": "bad-name", "value": "v"}, format="json").status_code == 400
    assert api(alice).post(f"{T}/secrets/", {"name": "OK", "value": ""}, format="json").status_code == 400
    assert api(alice).post(f"{T}/secrets/", {"name": "OK", "value": "v"}, format="json").status_code == 201
    assert api(alice).post(f"{T}/secrets/", {"name": "OK", "value": "w"}, format="json").status_code == 409
    assert api(alice).delete(f"{T}/secrets/OK/").status_code == 204
    assert api(alice).delete(f"{T}/secrets/OK/").status_code == 404


def test_a_wrong_key_is_an_error_not_ciphertext(team, settings):
    from teams.fields import SecretDecryptionError

    secret = Secret.objects.create(team=team, name="X", value="plain")
    # A field derives its keys once; a fresh field with another salt plays a changed SALT_KEY.
    field = Secret._meta.get_field("value")
    settings.SALT_KEY = ["another-salt"]
    field.__dict__.pop("keys", None)
    field.__dict__.pop("f", None)
    try:
        with pytest.raises(SecretDecryptionError):
            Secret.objects.get(pk=secret.pk).value
        assert Secret.objects.listing().get(pk=secret.pk).name == "X"  # lists still work
    finally:
        field.__dict__.pop("keys", None)
        field.__dict__.pop("f", None)


def test_outsiders_cannot_tell_a_team_exists(api, team, charlie):
    assert api(charlie).get(f"{T}/").status_code == 404
    assert api(charlie).get("/api/v1/teams/nope/").status_code == 404
    assert api(charlie).get(f"{P}/").status_code == 404


# --- The API's edge (teams.api_input): what every body, list and URL goes through.


def nested(depth):
    """A config `depth` levels deep, counting the config object itself."""
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


def create_run(client, config_text):
    return client.post(f"{P}/runs/", data='{"config": %s}' % config_text, content_type="application/json")


@pytest.mark.parametrize("depth, status", [(MAX_DEPTH - 1, 201), (MAX_DEPTH, 400), (500, 400), (5000, 400)])
def test_nesting_is_bounded(team, project, bob, depth, status):
    response = create_run(token_client(bob), nested(depth))
    assert response.status_code == status, response.content[:200]
    if status == 400:
        assert "nested more than" in str(response.json())


@pytest.mark.parametrize("text, stored", [
    ('"\\u00e9t\\u00e9"', "été"),
    ('"\\ud83d\\ude00"', "😀"),  # a surrogate pair is one character
    ('"\\\\ud800"', "\\ud800"),  # an escaped backslash: the text \ud800, not a surrogate
    ('"tab\\tand\\nnewline"', "tab\tand\nnewline"),
])
def test_valid_text_is_kept_as_sent(team, project, bob, text, stored):
    response = create_run(token_client(bob), '{"a": %s}' % text)
    assert response.status_code == 201 and response.json()["config"] == {"a": stored}
    assert token_client(bob).get(f"{P}/runs/").status_code == 200


@pytest.mark.parametrize("config, where", [
    ('{"a": "\\ud800"}', "config.a"),
    ('{"a": ["ok", "x\\udfff"]}', "config.a[1]"),
    ('{"\\ud800": 1}', "config"),
    ('{"a": "\\u0000"}', "config.a"),
    ('{"b\\u0000": 1}', "config"),
    ('{"a": "\\ude00\\ud83d"}', "config.a"),  # a pair in the wrong order is two lone surrogates
])
def test_lone_surrogates_and_nul_are_refused_naming_where(team, project, bob, config, where):
    """Before: stored, and every later list of the team's runs answered 500."""
    response = create_run(token_client(bob), config)
    assert response.status_code == 400 and response.json()["config"][0].startswith(where)
    assert not project.runs.exists()
    assert token_client(bob).get(f"{P}/runs/").status_code == 200


def test_only_json_is_parsed(team, project, bob):
    response = token_client(bob).post(f"{T}/projects/", {"name": "p"})  # multipart form
    assert response.status_code == 415 and not team.projects.filter(name="p").exists()


def test_a_body_in_another_charset_is_read_in_it_and_bad_bytes_are_refused(team, bob):
    c = token_client(bob)
    latin = c.post(f"{T}/projects/", data='{"name": "p", "description": "café"}'.encode("latin-1"), content_type="application/json; charset=latin-1")
    assert latin.status_code == 201 and latin.json()["description"] == "café"
    bad = c.post(f"{T}/projects/", data=b'{"name": "q", "description": "\xed\xa0\x80"}', content_type="application/json")
    assert bad.status_code == 400 and "not valid utf-8" in bad.json()["detail"].lower()


@pytest.mark.parametrize("path", ["%00", "a%00b", "a%1fb", "vision%0a"])
def test_control_characters_in_a_path_are_not_found(team, project, bob, path):
    assert token_client(bob).get(f"{T}/projects/{path}/").status_code == 404
    assert token_client(bob).get(f"/api/v1/teams/{path}/").status_code == 404


@pytest.mark.parametrize("secret", ["value\n", "multi\nline\nkey", " padded "])
def test_secret_values_are_kept_as_sent(team, alice, secret):
    response = token_client(alice).post(f"{T}/secrets/", {"name": "KEY", "value": secret}, format="json")
    assert response.status_code == 201 and Secret.objects.get(name="KEY").value == secret


def test_team_writes_refuse_fields_they_do_not_write(team, alice, bob):
    c = token_client(alice)
    response = c.post("/api/v1/teams/", {"name": "newteam", "created_at": "2020-01-01T00:00:00Z"}, format="json")
    assert response.status_code == 400 and "name, display_name" in response.json()["created_at"][0]
    renamed = c.put(f"{T}/secrets/GH/", {"value": "v", "name": "OTHER"}, format="json")
    assert renamed.status_code in (400, 404)
    c.post(f"{T}/secrets/", {"name": "GH", "value": "v"}, format="json")
    renamed = c.put(f"{T}/secrets/GH/", {"value": "v2", "name": "OTHER"}, format="json")
    assert renamed.status_code == 400 and list(renamed.json()) == ["name"]
    assert Secret.objects.get(name="GH").value == "v"
    promoted = c.patch(f"{T}/members/bob/", {"role": "viewer", "username": "alice"}, format="json")
    assert promoted.status_code == 400 and team.memberships.get(user=bob).role == "member"
