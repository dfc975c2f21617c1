import pytest

from automations.models import Automation
from teams.models import Secret
from tracking.history import log_history
from tracking.models import Run

from .engine import make_automation
from .signin import sign_in, sign_out

pytestmark = pytest.mark.django_db

FORM = {
    "name": "alias admin", "description": "", "enabled": "on", "scope_type": "project", "event_type": "ADD_ARTIFACT_ALIAS",
    "alias_regex": "^prod", "action_type": "NO_OP", "payload": "", "title": "", "message": "",
}


@pytest.fixture
def admin_client(client, alice, team):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    sign_in(client, alice.username)
    return client


def test_the_admin_form_creates_an_automation_through_the_same_rules(admin_client, team, project):
    response = admin_client.post("/admin/automations/automation/add/", {**FORM, "team": team.pk, "project": project.pk})
    assert response.status_code == 302, response.content.decode()[:2000]
    automation = Automation.objects.get(name="alias admin")
    assert automation.event_filter == {"alias_regex": "^prod"} and automation.project == project and automation.created_by.username == "alice"


@pytest.mark.parametrize(
    "changes, field, words",
    [
        ({"alias_regex": "(oops"}, "alias_regex", "Not a valid regular expression"),
        ({"alias_regex": ""}, "alias_regex", "required"),
        ({"event_type": "LINK_ARTIFACT"}, "event_type", "cannot be used with a project scope"),
        ({"event_type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": "", "window": "0"}, "window", "from 1 to 1000"),
        ({"action_type": "WEBHOOK", "payload": "{not json"}, "payload", "Not valid JSON"),
        ({"action_type": "WEBHOOK", "payload": '{"a": "${nope}"}'}, "integration", "Required"),
    ],
)
def test_the_admin_form_shows_field_errors(admin_client, team, project, changes, field, words):
    response = admin_client.post("/admin/automations/automation/add/", {**FORM, "team": team.pk, "project": project.pk, **changes})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert words in " ".join(errors[field]), errors
    assert not Automation.objects.exists()


def test_the_admin_previews_the_payload_with_secrets_masked(admin_client, team, project, api, alice):
    api(alice).post("/api/v1/teams/acme/secrets/", {"name": "TOKEN", "value": "super-secret-value"}, format="json")
    hook = api(alice).post("/api/v1/teams/acme/integrations/", {"kind": "webhook", "name": "ci", "url": "https://ci.example.org/",
                                                               "access_token_secret": "TOKEN"}, format="json").json()
    automation = make_automation(team, "hook", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"},
                                 {"type": "WEBHOOK", "integration": hook["id"], "payload": {"v": "${artifact_version_string}", "t": "${TOKEN}"}})
    page = admin_client.get(f"/admin/automations/automation/{automation.pk}/change/").content.decode()
    assert "acme/vision/classifier:v3" in page and "********" in page and "super-secret-value" not in page
    assert 'id="automation-field-map"' in page


def test_secret_admin_is_write_only(admin_client, team):
    response = admin_client.post("/admin/teams/secret/add/", {"team": team.pk, "name": "API_KEY", "value": "hunter2-value"})
    assert response.status_code == 302
    secret = Secret.objects.get(name="API_KEY")
    page = admin_client.get(f"/admin/teams/secret/{secret.pk}/change/").content.decode()
    assert "hunter2-value" not in page and 'type="password"' in page
    admin_client.post(f"/admin/teams/secret/{secret.pk}/change/", {"team": team.pk, "name": "API_KEY", "value": ""})
    assert Secret.objects.get(pk=secret.pk).value == "hunter2-value"  # blank keeps the value
    admin_client.post(f"/admin/teams/secret/{secret.pk}/change/", {"team": team.pk, "name": "API_KEY", "value": "rotated"})
    assert Secret.objects.get(pk=secret.pk).value == "rotated"


def test_pages_are_for_team_members_only(client, team, project, bob, charlie):
    Run.objects.create(project=project, run_id="r1", name="first run")
    sign_in(client, charlie.username)
    for url in ["/acme/", "/acme/projects/vision/", "/acme/projects/vision/runs/r1/", "/acme/automations/"]:
        assert client.get(url).status_code == 404
    sign_in(client, bob.username)
    assert "first run" in client.get("/acme/projects/vision/").content.decode()
    sign_out(client)
    assert client.get("/acme/").status_code == 302  # to the login page


def test_the_run_page_charts_metrics_with_automation_thresholds(client, team, project, bob):
    run = Run.objects.create(project=project, run_id="r1", name="first run")
    log_history(run, [{"step": i, "metrics": {"loss": 1 / (i + 1), "note": "x"}} for i in range(20)])
    make_automation(team, "low loss", {"type": "project", "project": "vision"},
                    {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": 0.1})
    sign_in(client, bob.username)
    page = client.get("/acme/projects/vision/runs/r1/").content.decode()
    assert 'data-metric="loss"' in page and "<polyline" in page
    assert 'class="threshold"' in page and "low loss" in page
    assert "No finite values to plot." in page  # the 'note' metric holds only strings


def test_the_execution_page_offers_redelivery_to_members_only(client, team, project, bob, vic, api):
    make_automation(team, "p", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"})
    from automations.models import Execution
    from events.models import Event

    event = Event.objects.create(team=team, type="CREATE_ARTIFACT", project=project, facts={})
    execution = Execution.objects.create(automation=Automation.objects.get(), event=event, request={"body": {"k": "v"}})
    Automation.objects.update(action_type="WEBHOOK")
    sign_in(client, vic.username)
    page = client.get(execution.get_absolute_url()).content.decode()
    assert "Redeliver" not in page and "&quot;k&quot;: &quot;v&quot;" in page  # the request, as sent
    assert client.post(f"/acme/executions/{execution.pk}/redeliver/").status_code == 404
    sign_in(client, bob.username)
    assert "Redeliver" in client.get(execution.get_absolute_url()).content.decode()


def test_every_admin_list_and_add_page_renders(admin_client):
    from django.contrib import admin as django_admin

    for model, model_admin in django_admin.site._registry.items():
        meta = model._meta
        listing = admin_client.get(f"/admin/{meta.app_label}/{meta.model_name}/")
        assert listing.status_code == 200, meta.label
        if model_admin.has_add_permission(listing.wsgi_request):
            assert admin_client.get(f"/admin/{meta.app_label}/{meta.model_name}/add/").status_code == 200, meta.label


def test_the_run_page_charts_the_whole_history_downsampled_in_the_database(client, team, project, bob):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    run = Run.objects.create(project=project, run_id="long", name="long run")
    log_history(run, [{"step": i, "metrics": {"loss": float(i)}} for i in range(2500)])
    sign_in(client, bob.username)
    with CaptureQueriesContext(connection) as captured:
        page = client.get("/acme/projects/vision/runs/long/").content.decode()
    history_reads = [q["sql"] for q in captured if "tracking_metricpoint" in q["sql"]]
    # the first 2,001 points (more than fit), the last step, then each bucket's min and max
    assert len(history_reads) == 3 and "LIMIT 2001" in history_reads[0] and "GROUP BY" in history_reads[2]
    assert "step 0–2499" in page and "2500 points, drawn as each bucket's min and max" in page
