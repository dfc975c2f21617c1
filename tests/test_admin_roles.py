"""The admin follows team roles: members build automations without being staff, viewers only
look, admins alone see secrets and integrations, and nobody sees another team's objects."""

import pytest

from automations.models import Automation, Execution
from events.models import Event
from teams.models import Membership, Role, Secret, Team

from .engine import make_automation
from .signin import sign_in

pytestmark = pytest.mark.django_db

FORM = {"name": "from bob", "description": "", "enabled": "on", "scope_type": "project", "event_type": "CREATE_ARTIFACT",
        "action_type": "NO_OP", "payload": "", "title": "", "message": ""}


@pytest.fixture
def other_team(charlie):
    other = Team.objects.create(name="rivals")
    Membership.objects.create(team=other, user=charlie, role=Role.ADMIN)
    other.projects.create(name="secret-project")
    Secret.objects.create(team=other, name="RIVAL_TOKEN", value="x")
    return other


@pytest.fixture
def automation(team, project):
    return make_automation(team, "acme watch", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"})


def as_user(client, user):
    assert sign_in(client, user.username).status_code == 302
    return client


def test_members_use_the_admin_without_the_staff_flag(client, team, project, bob, other_team, automation):
    c = as_user(client, bob)
    assert not bob.is_staff
    index = c.get("/admin/").content.decode()
    assert "Automations" in index and "Secrets" not in index and "Integrations" not in index
    listing = c.get("/admin/automations/automation/").content.decode()
    assert "acme watch" in listing
    form = c.get("/admin/automations/automation/add/").content.decode()
    assert "secret-project" not in form and "rivals" not in form
    created = c.post("/admin/automations/automation/add/", {**FORM, "team": team.pk, "project": project.pk})
    assert created.status_code == 302 and Automation.objects.filter(name="from bob", team=team).exists()


def test_a_member_cannot_aim_at_another_teams_objects(client, team, bob, other_team):
    rival_project = other_team.projects.get()
    response = as_user(client, bob).post("/admin/automations/automation/add/", {**FORM, "team": other_team.pk, "project": rival_project.pk})
    assert response.status_code == 200 and not Automation.objects.filter(name="from bob").exists()
    errors = response.context["adminform"].form.errors
    assert "team" in errors and "project" in errors


def test_viewers_look_but_do_not_touch(client, team, vic, automation):
    c = as_user(client, vic)
    assert "acme watch" in c.get("/admin/automations/automation/").content.decode()
    assert c.get("/admin/automations/automation/add/").status_code == 403
    change = c.get(f"/admin/automations/automation/{automation.pk}/change/")
    assert change.status_code == 200 and 'name="_save"' not in change.content.decode()
    assert c.post(f"/admin/automations/automation/{automation.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Automation.objects.filter(pk=automation.pk).exists()


def test_actions_need_the_role_that_changes_things(client, team, project, vic, bob, automation):
    event = Event.objects.create(team=team, type="CREATE_ARTIFACT", project=project)
    Automation.objects.filter(pk=automation.pk).update(action_type="WEBHOOK")
    execution = Execution.objects.create(automation=automation, event=event, status="failed")
    assert "redeliver_action" not in as_user(client, vic).get("/admin/automations/execution/").content.decode()
    assert "redeliver_action" in as_user(client, bob).get("/admin/automations/execution/").content.decode()
    as_user(client, vic).post("/admin/automations/automation/", {"action": "disable", "_selected_action": [automation.pk]})
    assert Automation.objects.get(pk=automation.pk).enabled
    execution.refresh_from_db()
    assert execution.status == "failed"


def test_outsiders_see_nothing_of_the_team(client, team, charlie, other_team, automation):
    c = as_user(client, charlie)
    assert "acme watch" not in c.get("/admin/automations/automation/").content.decode()
    assert c.get(f"/admin/automations/automation/{automation.pk}/change/").status_code == 302  # "not found" redirect
    secrets = c.get("/admin/teams/secret/").content.decode()
    assert "RIVAL_TOKEN" in secrets and "acme" not in secrets


def test_people_in_no_team_cannot_enter_the_admin(client, make_user):
    loner = make_user("loner")
    response = as_user(client, loner).get("/admin/", follow=True)
    assert response.redirect_chain[-1][0] == "/" and "you are not in a team yet" in response.content.decode()


def test_only_team_admins_manage_secrets_and_members(client, team, alice, bob):
    assert as_user(client, bob).get("/admin/teams/secret/").status_code == 403
    assert as_user(client, bob).get(f"/admin/teams/team/{team.pk}/change/").status_code == 200  # view
    assert as_user(client, alice).get("/admin/teams/secret/add/").status_code == 200
    assert as_user(client, alice).get("/admin/teams/team/add/").status_code == 403  # teams are made through the API


def test_the_admin_signs_in_through_the_site_login_page(client, team, bob):
    """Members are not staff: the admin's own login form would refuse them."""
    response = client.get("/admin/automations/automation/", follow=True)
    assert response.redirect_chain[-1][0] == "/login/?next=/admin/automations/automation/"
    assert 'name="username"' in response.content.decode()
    signed_in = sign_in(client, "bob", next="/admin/automations/automation/")
    assert signed_in.status_code == 302 and signed_in["Location"] == "/admin/automations/automation/"
    assert client.get("/admin/login/?next=/admin/").url == "/login/?next=/admin/"  # and on, since bob is signed in


def unchanged(response):
    """What an admin change form posts back when nothing is edited (its inlines included)."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data = {}
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is not None and value is not False:
                data[form.add_prefix(name)] = "on" if value is True else value
    return data


def test_the_admin_keeps_a_team_with_an_admin(client, team, alice):
    c = as_user(client, alice)
    own = Membership.objects.get(team=team, user=alice)
    url = f"/admin/teams/membership/{own.pk}/change/"
    demoted = c.post(url, {**unchanged(c.get(url)), "role": "member"})
    assert demoted.status_code == 200 and "The team must keep at least one admin." in demoted.content.decode()
    assert c.get(f"/admin/teams/membership/{own.pk}/delete/").status_code == 403
    confirm = c.post("/admin/teams/membership/", {"action": "delete_selected", "_selected_action": [own.pk]})
    assert "have permission to delete the following types of objects" in confirm.content.decode()

    team_url = f"/admin/teams/team/{team.pk}/change/"
    data = unchanged(c.get(team_url))
    row = next(key.rsplit("-", 1)[0] for key, value in data.items() if key.endswith("-id") and value == own.pk)
    for change in ({f"{row}-role": "viewer"}, {f"{row}-DELETE": "on"}):
        response = c.post(team_url, {**data, **change})
        assert response.status_code == 200 and "The team must keep at least one admin." in response.content.decode()
    own.refresh_from_db()
    assert own.role == Role.ADMIN

    bob_row = next(key.rsplit("-", 1)[0] for key, value in data.items() if key.endswith("-id") and value == team.memberships.get(user__username="bob").pk)
    handed_over = c.post(team_url, {**data, f"{row}-role": "member", f"{bob_row}-role": "admin"})
    assert handed_over.status_code == 302
    assert dict(team.memberships.values_list("user__username", "role")) == {"alice": "member", "bob": "admin", "vic": "viewer"}


def test_a_team_admin_may_delete_the_team_with_its_memberships(client, team, alice):
    response = as_user(client, alice).post(f"/admin/teams/team/{team.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Team.objects.filter(pk=team.pk).exists()


def test_a_superuser_adds_a_team_with_its_first_admin(client, alice, bob):
    alice.is_superuser = alice.is_staff = True
    alice.save()
    c = as_user(client, alice)
    data = {**unchanged(c.get("/admin/teams/team/add/")), "name": "newteam", "memberships-TOTAL_FORMS": "1",
            "memberships-0-user": "bob", "memberships-0-role": "admin"}
    response = c.post("/admin/teams/team/add/", data)
    assert response.status_code == 302
    assert Team.objects.get(name="newteam").memberships.get().user == bob


def test_a_member_tags_a_version_in_the_admin(client, team, project, bob):
    """Saving a version with its tag rows: new tags are added as the API adds them (author,
    event), an edited tag is the old one removed and the new one added, a ticked one deleted."""
    from tracking.models import ArtifactCollection, create_version

    version = create_version(ArtifactCollection.objects.create(team=team, project=project, name="mnist", type="model"), tags=["old", "gone"])
    c = as_user(client, bob)
    url = f"/admin/tracking/artifactversion/{version.pk}/change/"
    data = unchanged(c.get(url))
    rows = {value: key.rsplit("-", 1)[0] for key, value in data.items() if key.startswith("tags-") and key.endswith("-tag")}
    total = int(data["tags-TOTAL_FORMS"])
    data.update({f"{rows['old']}-tag": "renamed", f"{rows['gone']}-DELETE": "on", "tags-TOTAL_FORMS": total + 1,
                 f"tags-{total}-tag": "europe", "description": "tagged in the admin"})
    response = c.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    version.refresh_from_db()
    assert sorted(version.tags.values_list("tag", flat=True)) == ["europe", "renamed"]
    assert set(version.tags.values_list("created_by__username", flat=True)) == {"bob"}
    added = Event.objects.filter(type="ADD_ARTIFACT_TAG", version=version, actor__username="bob")
    assert sorted(e.facts.get("tag") for e in added) == ["europe", "renamed"]
    assert version.description == "tagged in the admin"


def test_a_member_changes_an_automation_in_the_admin(client, team, project, bob, automation):
    c = as_user(client, bob)
    url = f"/admin/automations/automation/{automation.pk}/change/"
    data = {**unchanged(c.get(url)), "event_type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^prod$"}
    assert c.post(url, data).status_code == 302
    automation.refresh_from_db()
    assert automation.event_type == "ADD_ARTIFACT_ALIAS" and automation.event_filter == {"alias_regex": "^prod$"}


def test_a_team_admin_manages_integrations_and_members_in_the_admin(client, team, alice, make_user):
    make_user("newcomer")
    c = as_user(client, alice)
    secret = Secret.objects.create(team=team, name="HOOK_TOKEN", value="tok")
    response = c.post("/admin/actions/integration/add/", {"team": team.pk, "kind": "webhook", "name": "ci", "url": "https://ci.example.org/",
                                                           "access_token_secret": secret.pk, "enabled": "on"})
    assert response.status_code == 302 and team.integrations.get().access_token_secret == secret
    response = c.post("/admin/teams/membership/add/", {"team": team.pk, "user": "newcomer", "role": "viewer"})
    assert response.status_code == 302 and team.memberships.get(user__username="newcomer").role == "viewer"
    unknown = c.post("/admin/teams/membership/add/", {"team": team.pk, "user": "nobody-by-that-name", "role": "viewer"})
    assert unknown.status_code == 200 and "user" in unknown.context["adminform"].form.errors


def test_a_member_logs_a_run_in_the_admin_under_a_valid_id(client, team, project, bob):
    c = as_user(client, bob)
    bad = c.post("/admin/tracking/run/add/", {"project": project.pk, "run_id": "a/b", "name": "x", "state": "running",
                                              "config": "{}", "summary": "{}", "tags": "[]"})
    assert bad.status_code == 200 and "run_id" in bad.context["adminform"].form.errors
    made = c.post("/admin/tracking/run/add/", {"project": project.pk, "run_id": "by-hand", "name": "x", "state": "running"})
    assert made.status_code == 302
    run = project.runs.get(run_id="by-hand")
    assert run.user == bob and run.config == {} and run.tags == []  # left empty: the column's default
