"""Every role signs in through the site's login page, lands on its team, and can sign out from
every page: the Tripline pages and the admin alike. None of these users is staff."""

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from automations.models import Execution
from events.models import Event
from teams.models import Membership, Role, Team
from teams.serializers import RESERVED_TEAM_NAMES
from tracking.models import ArtifactCollection, Run, create_version, link_version

from .engine import make_automation
from .signin import csrf_token, sign_in, signed_in

pytestmark = pytest.mark.django_db

ROLES = {"alice": Role.ADMIN, "bob": Role.MEMBER, "vic": Role.VIEWER}


@pytest.fixture
def world(team, project, registry):
    Run.objects.create(project=project, run_id="r1", name="first run")
    version = create_version(ArtifactCollection.objects.create(team=team, project=project, name="mnist", type="model"))
    link_version(ArtifactCollection.objects.create(team=team, registry=registry, name="clf", type="model"), version)
    automation = make_automation(team, "watch", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"})
    execution = Execution.objects.create(automation=automation, event=Event.objects.filter(type="CREATE_ARTIFACT").first())
    return {"automation": automation, "execution": execution}


def page_urls(world):
    """Every kind of Tripline page, on the fixture's objects."""
    a, e = world["automation"], world["execution"]
    return ["/acme/", "/acme/projects/vision/", "/acme/projects/vision/runs/r1/", "/acme/projects/vision/artifacts/mnist/",
            "/acme/projects/vision/artifacts/mnist/v0/", "/acme/registries/models/", "/acme/registries/models/clf/",
            "/acme/registries/models/clf/v0/", "/acme/automations/", f"/acme/automations/{a.pk}/", f"/acme/executions/{e.pk}/"]


def admin_urls(client):
    """The admin index and, for every registered model, its list and one object's page."""
    urls = ["/admin/", "/admin/password_change/"]
    for model in admin.site._registry:
        meta = model._meta
        listing = f"/admin/{meta.app_label}/{meta.model_name}/"
        if client.get(listing).status_code == 200:
            urls.append(listing)
            obj = model._default_manager.first()
            if obj is not None:
                urls.append(f"{listing}{obj.pk}/change/")
    return urls


def has_sign_out(page):
    """A POST form to /logout/ carrying a CSRF token, with a "Sign out" button."""
    html = page.content.decode()
    start = html.find('action="/logout/"')
    form = html[html.rfind("<form", 0, start):html.find("</form>", start)]
    return start > 0 and 'method="post"' in form and "csrfmiddlewaretoken" in form and "Sign out" in form


@pytest.mark.parametrize("username", ROLES)
def test_every_role_signs_in_lands_on_its_team_and_signs_out(world, username):
    client = Client(enforce_csrf_checks=True)
    assert client.get("/acme/").url == "/login/?next=/acme/"
    response = sign_in(client, username)
    assert response.status_code == 302
    team_page = client.get(response["Location"], follow=True)
    assert team_page.redirect_chain[-1][0] == "/acme/"
    html = team_page.content.decode()
    assert f"<span>{username}</span>" in html and f"You are {ROLES[username]}." in html
    assert 'href="/admin/"' in html  # every team member may use the admin, staff or not

    for url in page_urls(world) + admin_urls(client):
        page = client.get(url)
        assert page.status_code == 200, url
        assert has_sign_out(page), f"no sign-out form on {url}"

    signed_out = client.post("/logout/", {"csrfmiddlewaretoken": csrf_token(team_page)})
    assert signed_out.status_code == 302 and signed_out["Location"] == "/login/"
    assert client.get("/acme/").url == "/login/?next=/acme/"
    assert client.get("/admin/").url == "/admin/login/?next=/admin/"


def test_signing_out_takes_a_post_with_its_csrf_token(world):
    client = signed_in("bob")
    assert client.get("/logout/").status_code == 405  # a link or an image cannot sign anyone out
    assert client.post("/logout/").status_code == 403  # nor can another site's form
    assert client.get("/acme/").status_code == 200


def test_the_admin_link_follows_who_may_use_the_admin(world, make_user):
    make_user("loner")
    loner = signed_in("loner")
    home = loner.get("/")
    assert home.status_code == 200 and "You are not in a team yet." in home.content.decode()
    assert 'href="/admin/"' not in home.content.decode() and has_sign_out(home)


def test_someone_in_several_teams_chooses_one(world, bob):
    Membership.objects.create(team=Team.objects.create(name="beta"), user=bob, role=Role.VIEWER)
    client = Client()
    response = sign_in(client, "bob")
    home = client.get(response["Location"])
    assert home.status_code == 200
    html = home.content.decode()
    assert 'href="/acme/"' in html and 'href="/beta/"' in html


def test_a_safe_next_is_honoured(world):
    client = Client()
    asked = client.get("/acme/automations/", follow=True)
    assert asked.redirect_chain[-1][0] == "/login/?next=/acme/automations/"
    assert 'name="next" value="/acme/automations/"' in asked.content.decode()
    response = sign_in(client, "vic", next="/acme/automations/")
    assert response["Location"] == "/acme/automations/"


UNSAFE_NEXT = ["https://evil.example/", "//evil.example/", "///evil.example/", "\\\\evil.example", "/\\evil.example", "\\/evil.example",
               "http:evil.example", "https:/evil.example", "javascript:alert(1)", " //evil.example", "\t//evil.example",
               "//testserver@evil.example/", "https://testserver.evil.example/", "data:text/html,x", "ftp://evil.example/"]


@pytest.mark.parametrize("next_url", UNSAFE_NEXT)
def test_an_unsafe_next_lands_on_the_home_page_instead(world, next_url):
    response = sign_in(Client(), "bob", next=next_url)
    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.parametrize("password", ["wrong", "", "bob-password "])
def test_a_wrong_password_is_refused_on_the_form(world, password):
    client = Client()
    response = sign_in(client, "bob", password=password or " ")
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert "Please enter a correct username and password" in response.content.decode()


def test_an_inactive_account_cannot_sign_in(world, bob):
    bob.is_active = False
    bob.save()
    assert sign_in(Client(), "bob").status_code == 200


def test_the_site_paths_are_reserved_team_names():
    """Team pages are /<team>/: a team named like a page of the site would be unreachable."""
    firsts = set()
    for pattern in get_resolver().url_patterns:
        route = str(pattern.pattern)
        first = route.split("/", 1)[0]
        if first and "<" not in first:
            firsts.add(first.lstrip("^"))
        assert isinstance(pattern, (URLPattern, URLResolver))
    assert firsts and firsts <= RESERVED_TEAM_NAMES, firsts - RESERVED_TEAM_NAMES


@pytest.mark.parametrize("name", sorted(RESERVED_TEAM_NAMES))
def test_a_reserved_name_is_refused_for_a_team(client, api, team, alice, name):
    response = api(alice).post("/api/v1/teams/", {"name": name.upper()}, format="json")
    assert response.status_code == 400 and "name" in response.json()
    sign_in(client, "alice")
    renamed = client.post(f"/admin/teams/team/{team.pk}/change/", {"name": name, "display_name": "", "memberships-TOTAL_FORMS": "0",
                                                                   "memberships-INITIAL_FORMS": "0"})
    assert renamed.status_code == 200 and "is reserved" in renamed.content.decode()
    assert not Team.objects.filter(name__iexact=name).exists()
