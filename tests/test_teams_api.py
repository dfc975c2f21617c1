import pytest
from django.contrib.auth import get_user_model

from teams.models import Secret

from .conftest import P, T

pytestmark = pytest.mark.django_db


def test_me_lists_teams_with_roles(api, team, bob):
    data = api(bob).get("/api/v1/me/").json()
    assert data == {"username": "bob", "teams": [{"name": "acme", "role": "member"}]}


def test_anonymous_requests_get_401(api, team):
    assert api(None).get(f"{T}/").status_code == 401
    assert api(None).get("/api/v1/me/").status_code == 401


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
