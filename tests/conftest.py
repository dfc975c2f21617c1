import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from teams.models import Membership, Role, Team


@pytest.fixture
def make_user(db):
    def make(username, **extra):
        return get_user_model().objects.create_user(username=username, password=f"{username}-password", **extra)

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def vic(make_user):
    return make_user("vic")


@pytest.fixture
def charlie(make_user):
    return make_user("charlie")


@pytest.fixture
def team(alice, bob, vic, charlie):
    """Team `acme`: alice admin, bob member, vic viewer; charlie is not in it."""
    team = Team.objects.create(name="acme")
    Membership.objects.create(team=team, user=alice, role=Role.ADMIN)
    Membership.objects.create(team=team, user=bob, role=Role.MEMBER)
    Membership.objects.create(team=team, user=vic, role=Role.VIEWER)
    return team


def client_for(user):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def api():
    """api(user) -> an APIClient authenticated as that user (None: anonymous)."""
    return client_for


@pytest.fixture
def project(team):
    return team.projects.create(name="vision")


@pytest.fixture
def registry(team):
    return team.registries.create(name="models")


T = "/api/v1/teams/acme"
P = f"{T}/projects/vision"
