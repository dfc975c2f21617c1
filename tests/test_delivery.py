import base64
import hashlib
import hmac
import json
import logging

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from actions.models import Integration
from actions.transports import DeliveryResult
from automations import lifecycle
from automations.delivery import deliver
from automations.dispatch import tick
from automations.models import Execution
from teams.models import Secret

from .conftest import P, T
from .engine import fired, make_automation
from .receivers import FakeSlack, Receiver

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN, HMAC_SECRET = "tok-Very$ecret-123", "hmac-key-&-secret"
AWKWARD = 'quote " backslash \\ newline \n tab \t unicode ☃ é </script>'


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def slack(settings):
    s = FakeSlack()
    settings.SLACK_API_URL = s.url + "/api/"
    yield s
    s.close()


@pytest.fixture
def fast_retries(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0, 0]


@pytest.fixture
def webhook(team, receiver, api, alice):
    for name, value in [("DEPLOY_TOKEN", TOKEN), ("HMAC", HMAC_SECRET)]:
        api(alice).post(f"{T}/secrets/", {"name": name, "value": value}, format="json")
    created = api(alice).post(f"{T}/integrations/", {"kind": "webhook", "name": "ci", "url": receiver.url + "/hook",
                                                    "access_token_secret": "DEPLOY_TOKEN", "secret": "HMAC"}, format="json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["signing_secret"].startswith("whsec_")
    return data


def alias_automation(team, webhook_data, payload=None):
    payload = payload or {"event_type": "${event_type}", "version": "${artifact_version_string}", "author": "${event_author}",
                          "index": "${artifact_version_index}", "meta": "${artifact_metadata.note}", "token": "${DEPLOY_TOKEN}",
                          "note": "v=${artifact_version_index} alias=${alias}", "meta_obj": "${artifact_metadata.nested}"}
    return make_automation(team, "deploy", {"type": "project", "project": "vision"}, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^prod"},
                           {"type": "WEBHOOK", "integration": webhook_data["id"], "payload": payload})


def trigger(api, bob, alias="production"):
    c = api(bob)
    if c.get(f"{P}/artifacts/mnist/").status_code == 404:
        c.post(f"{P}/artifacts/", {"name": "mnist", "type": "model", "metadata": {"note": AWKWARD, "nested": {"a": [1, 2]}}}, format="json")
    assert c.post(f"{P}/artifacts/mnist/versions/v0/aliases/", {"alias": alias}, format="json").status_code == 201


def test_webhook_request_headers_signatures_and_escaping(team, project, api, bob, receiver, webhook):
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("Tripline/")
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    expected = base64.b64encode(hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    assert headers["X-Wandb-Signature"] == expected
    verified = Webhook(webhook["signing_secret"]).verify(body, {k.lower(): v for k, v in headers.items()})
    assert verified == json.loads(body)
    assert verified == {
        "event_type": "ADD_ARTIFACT_ALIAS", "version": "acme/vision/mnist:v0", "author": "bob", "index": 0, "meta": AWKWARD,
        "token": TOKEN, "note": "v=0 alias=production", "meta_obj": {"a": [1, 2]},
    }
    [execution] = fired(automation)
    assert execution.status == "succeeded" and execution.attempt_count == 1
    assert headers["webhook-id"] == execution.delivery_id
    stored = json.dumps(execution.request) + json.dumps(list(execution.attempts.values()), default=str)
    assert TOKEN not in stored and "********" in stored


def test_an_attempt_costs_two_statements_on_postgresql_and_records_all_it_did(team, project, api, bob, receiver, webhook):
    """The hot path of every delivery: the attempt counted and opened before the request, its
    outcome and the execution's after — four writes, written by lifecycle's own SQL, which must
    store exactly what the ORM would have: on PostgreSQL two statements (a write in a WITH, no
    transaction around: a round trip each), elsewhere four."""
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [execution] = fired(automation)
    receiver.answer(503, b"busy now")
    assert lifecycle.redeliver(execution)
    [claimed] = lifecycle.claim_many(1)
    with CaptureQueriesContext(connection) as queries:
        deliver(claimed)
    writes = [q["sql"].split(" WHERE ")[0] for q in queries if q["sql"].startswith(("UPDATE", "INSERT", "WITH")) and "automations_" in q["sql"]]
    assert len(writes) == (2 if connection.vendor == "postgresql" else 4), writes
    execution.refresh_from_db()
    assert execution.status == "pending" and execution.attempt_count == 2 and execution.round_start == 1
    assert execution.lease_token == "" and execution.claimed_by == "" and execution.lease_until is None
    assert execution.error == "HTTP 503" and execution.next_attempt_at > timezone.now() and execution.finished_at is None
    first, second = execution.attempts.order_by("number")
    assert (second.number, second.status_code, second.response_body, second.error) == (2, 503, "busy now", "HTTP 503")
    assert second.duration_ms is not None and second.started_at >= first.started_at
    assert second.request["headers"]["webhook-id"] == first.request["headers"]["webhook-id"] == execution.delivery_id
    assert TOKEN not in json.dumps(second.request) and execution.request == second.request


def test_retries_500_503_then_200_with_one_webhook_id(team, project, api, bob, receiver, webhook, fast_retries):
    receiver.answer(500, b"boom").answer(503, b"busy")
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [execution] = fired(automation)
    assert execution.status == "pending" and execution.attempt_count == 1 and execution.error == "HTTP 500"
    tick()
    tick()
    execution.refresh_from_db()
    assert execution.status == "succeeded" and execution.attempt_count == 3
    assert [a.status_code for a in execution.attempts.all()] == [500, 503, 200]
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1


def test_retry_schedule_backs_off_and_honours_retry_after(team, project, api, bob, receiver, webhook, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 300]
    receiver.answer(429, b"slow down", {"Retry-After": "120"})
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [execution] = fired(automation)
    delay = (execution.next_attempt_at - execution.attempts.get().started_at).total_seconds()
    assert 119 <= delay <= 125
    tick()  # not due yet
    assert execution.attempts.count() == 1 and Execution.objects.get(pk=execution.pk).status == "pending"


def test_no_retry_on_404_and_410_disables_the_integration(team, project, api, bob, receiver, webhook, fast_retries):
    receiver.answer(404, b"nope")
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [execution] = fired(automation)
    assert execution.status == "failed" and execution.attempt_count == 1
    receiver.answer(410, b"gone")
    trigger(api, bob, alias="prod-eu")
    assert fired(automation)[1].status == "failed"
    integration = Integration.objects.get(pk=webhook["id"])
    assert not integration.enabled and "410" in integration.disabled_reason
    trigger(api, bob, alias="prod-us")
    third = fired(automation)[2]
    assert third.status == "failed" and "disabled" in third.error and len(receiver.requests) == 2


def test_redirects_are_not_followed(team, project, api, bob, receiver, webhook):
    receiver.answer(302, b"", {"Location": "http://127.0.0.1:9/elsewhere"})
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [execution] = fired(automation)
    assert execution.status == "failed" and "redirects are not followed" in execution.error
    assert len(receiver.requests) == 1


def test_timeouts_are_retried(team, project, api, bob, receiver, webhook, settings):
    settings.WEBHOOK_TIMEOUT = (1, 0.5)
    settings.WEBHOOK_RETRY_SCHEDULE = [0]
    receiver.answer(200, b"late", delay=1.5)
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [execution] = fired(automation)
    assert execution.status == "pending" and "Timeout" in execution.error
    tick()
    execution.refresh_from_db()
    assert execution.status == "succeeded" and execution.attempt_count == 2


def test_a_receiver_that_drips_its_answer_cannot_outlast_the_lease(team, project, api, bob, receiver, webhook, settings):
    # Each pause (0.4 s) is shorter than the read timeout, so only a deadline on the whole
    # attempt (connect + read: 1.5 s) stops it before the lease (11.5 s) runs out. The status
    # came at once: it is the answer, with the body as far as it came.
    settings.WEBHOOK_TIMEOUT = (1, 0.5)
    receiver.answer(200, b"x" * 30, drip=0.4)
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [execution] = fired(automation)
    assert execution.status == "succeeded"
    attempt = execution.attempts.get()
    assert 1500 <= attempt.duration_ms < lifecycle.lease().total_seconds() * 1000
    assert attempt.status_code == 200 and 0 < len(attempt.response_body) < 30


def test_a_receiver_that_answers_nothing_in_time_is_retried(team, project, api, bob, receiver, webhook, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [0]
    settings.WEBHOOK_TIMEOUT = (0.5, 1)
    receiver.answer(200, b"late", delay=2)
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [execution] = fired(automation)
    assert execution.status == "pending" and "Timeout" in execution.error
    tick()
    execution.refresh_from_db()
    assert execution.status == "succeeded" and execution.attempt_count == 2


def test_private_addresses_are_refused_by_default(team, project, api, bob, receiver, webhook, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_IPS = False
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [execution] = fired(automation)
    assert execution.status == "failed" and "private or loopback" in execution.error
    assert receiver.requests == []


def test_signing_key_rotation_signs_with_both_keys(team, project, api, alice, bob, receiver, webhook):
    rotated = api(alice).post(f"{T}/integrations/{webhook['id']}/rotate-signing-secret/").json()
    alias_automation(team, webhook)
    trigger(api, bob)
    [request] = receiver.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert len(headers["webhook-signature"].split(" ")) == 2
    for key in (webhook["signing_secret"], rotated["signing_secret"]):
        Webhook(key).verify(request["body"], headers)


def test_integration_test_endpoint_shows_the_response(team, api, alice, bob, receiver, webhook):
    receiver.answer(201, b'{"received": true}')
    outcome = api(alice).post(f"{T}/integrations/{webhook['id']}/test/", {"payload": {"hello": "${entity_name}"}}, format="json").json()
    assert outcome["ok"] is True and outcome["status_code"] == 201 and outcome["response_body"] == '{"received": true}'
    assert json.loads(receiver.requests[0]["body"]) == {"hello": "acme"}
    assert api(bob).post(f"{T}/integrations/{webhook['id']}/test/").status_code == 403


def test_automation_test_runs_once_without_retry(team, project, api, bob, receiver, webhook, fast_retries):
    receiver.answer(500, b"down")
    automation = alias_automation(team, webhook)
    result = api(bob).post(f"{T}/automations/{automation.pk}/test/").json()
    assert result["status"] == "failed" and result["is_test"] is True and len(result["attempts"]) == 1
    assert result["attempts"][0]["status_code"] == 500
    assert json.loads(receiver.requests[0]["body"])["version"] == "acme/vision/classifier:v3"  # the scope's project


def test_a_metric_automation_test_sends_sample_run_values(team, project, api, bob, receiver, webhook):
    payload = {"team": "${entity_name}", "project": "${project_name}", "run": "${run_id}", "metric": "${metric_name}",
               "value": "${metric_value}", "version": "${artifact_version_string}"}
    automation = make_automation(team, "loss watch", {"type": "project", "project": "vision"},
                                 {"type": "RUN_METRIC_THRESHOLD", "metric": "val/loss", "window": 3, "agg": "AVERAGE", "cmp": "$lt", "threshold": 0.1},
                                 {"type": "WEBHOOK", "integration": webhook["id"], "payload": payload})
    assert api(bob).post(f"{T}/automations/{automation.pk}/test/").json()["status"] == "succeeded"
    assert json.loads(receiver.requests[0]["body"]) == {"team": "acme", "project": "vision", "run": "sample-run", "metric": "val/loss",
                                                        "value": 0.05, "version": ""}


def test_redeliver_sends_again_with_the_same_id(team, project, api, bob, vic, receiver, webhook):
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [execution] = fired(automation)
    assert api(vic).post(f"{T}/executions/{execution.pk}/redeliver/").status_code == 403
    assert api(bob).post(f"{T}/executions/{execution.pk}/redeliver/").status_code == 202
    execution.refresh_from_db()
    assert execution.status == "succeeded" and execution.attempt_count == 2
    assert receiver.requests[0]["headers"]["webhook-id"] == receiver.requests[1]["headers"]["webhook-id"]


def test_secrets_never_appear_in_responses_pages_logs_or_attempts(team, project, api, alice, bob, receiver, webhook, caplog, client):
    receiver.answer(500, f"echo {TOKEN} {HMAC_SECRET}".encode())
    automation = alias_automation(team, webhook)
    caplog.set_level(logging.DEBUG)
    trigger(api, bob)
    [execution] = fired(automation)
    client.force_login(alice)
    alice.is_staff = alice.is_superuser = True
    alice.save()
    pages = [
        api(alice).get(f"{T}/secrets/"), api(alice).get(f"{T}/integrations/"), api(alice).get(f"{T}/integrations/{webhook['id']}/"),
        api(alice).get(f"{T}/automations/{automation.pk}/"), api(alice).get(f"{T}/executions/{execution.pk}/"),
        api(alice).get(f"{T}/executions/"), client.get(execution.get_absolute_url()), client.get(automation.get_absolute_url()),
        client.get(f"/admin/automations/execution/{execution.pk}/change/"), client.get(f"/admin/actions/integration/{webhook['id']}/change/"),
        client.get(f"/admin/teams/secret/{Secret.objects.get(name='DEPLOY_TOKEN').pk}/change/"),
        client.get(f"/admin/automations/automation/{automation.pk}/change/"), client.get("/admin/teams/secret/"),
    ]
    for response in pages:
        assert response.status_code == 200, response
        text = response.content.decode()
        assert TOKEN not in text and HMAC_SECRET not in text
    assert "********" in pages[4].content.decode()  # the masked token and the echoed response
    assert TOKEN not in caplog.text and HMAC_SECRET not in caplog.text
    stored = json.dumps(list(Execution.objects.values()), default=str) + json.dumps(list(execution.attempts.values()), default=str)
    assert TOKEN not in stored and HMAC_SECRET not in stored


# --- Slack


@pytest.fixture
def slack_integration(team, api, alice, slack):
    api(alice).post(f"{T}/secrets/", {"name": "SLACK_BOT", "value": "xoxb-secret-bot-token"}, format="json")
    created = api(alice).post(f"{T}/integrations/", {"kind": "slack", "name": "alerts", "channel": "C0DEPLOY", "token_secret": "SLACK_BOT"}, format="json")
    assert created.status_code == 201, created.content
    assert "signing_secret" not in created.json()
    return created.json()


def slack_automation(team, integration):
    return make_automation(team, "notify", {"type": "project", "project": "vision"}, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^prod"},
                           {"type": "SLACK", "integration": "alerts", "title": "Promoted ${artifact_version_string}",
                            "message": "by ${event_author}", "severity": "WARN"})


def test_slack_message_names_the_event_team_project_object_and_author(team, project, api, bob, slack, slack_integration, caplog):
    slack.ok()
    caplog.set_level(logging.DEBUG)
    automation = slack_automation(team, slack_integration)
    trigger(api, bob)
    assert "xoxb-secret" not in caplog.text
    [message] = slack.messages()
    assert message["path"] == "/api/chat.postMessage"
    assert message["token"] == "Bearer xoxb-secret-bot-token" and message["channel"] == "C0DEPLOY"
    text = message["text"]
    assert "Promoted acme/vision/mnist:v0" in text and "bob" in text and "/acme/projects/vision/artifacts/mnist/v0/" in text
    blocks = json.dumps(message["blocks"])
    for fact in ("ADD_ARTIFACT_ALIAS", "acme", "vision", "mnist:v0", "bob", "WARN", "production"):
        assert fact in blocks
    [execution] = fired(automation)
    assert execution.status == "succeeded"
    assert "xoxb-secret" not in json.dumps(execution.request)


@pytest.mark.parametrize("error", ["invalid_auth", "channel_not_found"])
def test_slack_permanent_errors_fail_at_once(team, project, api, bob, slack, slack_integration, fast_retries, error):
    slack.error(error)
    automation = slack_automation(team, slack_integration)
    trigger(api, bob)
    [execution] = fired(automation)
    assert execution.status == "failed" and execution.error == f"slack: {error}" and execution.attempt_count == 1


def test_slack_429_is_rescheduled_after_retry_after(team, project, api, bob, slack, slack_integration, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [1]
    slack.error("ratelimited", status=429, headers={"Retry-After": "30"})
    automation = slack_automation(team, slack_integration)
    trigger(api, bob)
    [execution] = fired(automation)
    assert execution.status == "pending"
    delay = (execution.next_attempt_at - execution.attempts.get().started_at).total_seconds()
    assert 29 <= delay <= 32


def test_an_execution_of_an_automation_disabled_before_delivery_is_skipped(team, project, api, bob, receiver, webhook, fast_retries):
    receiver.answer(500, b"down")
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    automation.enabled = False
    automation.save()
    tick()
    [execution] = fired(automation)
    assert execution.status == "skipped" and "disabled" in execution.error and len(receiver.requests) == 1


def test_slack_sends_about_one_message_per_second_per_channel(team, project, api, alice, bob, slack, slack_integration):
    slack.ok().ok().ok()
    # a second integration posting to the same channel (named as a channel name), and one to another channel
    for name, channel in [("alerts-too", "#C0Deploy"), ("elsewhere", "C0OTHER")]:
        created = api(alice).post(f"{T}/integrations/", {"kind": "slack", "name": name, "channel": channel, "token_secret": "SLACK_BOT"}, format="json")
        assert created.status_code == 201, created.content
    automations = [slack_automation(team, slack_integration)]
    for name in ("alerts-too", "elsewhere"):
        automations.append(make_automation(team, f"notify {name}", {"type": "project", "project": "vision"},
                                           {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^prod"}, {"type": "SLACK", "integration": name}))
    trigger(api, bob)
    [one], [two], [other_channel] = (fired(a) for a in automations)
    assert other_channel.status == "succeeded"
    [sent], [waiting] = [e for e in (one, two) if e.status == "succeeded"], [e for e in (one, two) if e.status == "pending"]
    assert waiting.attempt_count == 0 and 0 < (waiting.next_attempt_at - sent.attempts.get().started_at).total_seconds() <= 2
    assert sorted(m["channel"] for m in slack.messages()) == ["C0DEPLOY", "C0OTHER"]


def test_a_worker_whose_lease_ran_out_does_not_overwrite_the_newer_delivery(team, project, api, bob, receiver, webhook):
    automation = alias_automation(team, webhook)
    trigger(api, bob)
    [execution] = fired(automation)
    # A worker holds the execution, and its lease runs out mid-request...
    lifecycle.redeliver(execution)
    stale = lifecycle.claim()
    Execution.objects.filter(pk=execution.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert lifecycle.recover_abandoned() == 1
    tick()  # ...so another worker delivers it (at once, in sync mode).
    late_answer = DeliveryResult(ok=False, error="HTTP 500", retryable=True)
    assert not lifecycle.finish(stale, None, late_answer)  # the first worker's late answer decides nothing
    execution.refresh_from_db()
    assert execution.status == "succeeded" and execution.error == "" and execution.attempt_count == 2
    assert deliver(stale).attempts.count() == 2  # and it cannot start another attempt either


def test_slack_slots_are_per_bot_and_channel_not_per_channel_name(team, slack_integration, charlie):
    from actions.models import SlackChannelSlot
    from teams.models import Team

    rivals = Team.objects.create(name="rivals")  # another team, its own workspace
    their_bot = Secret.objects.create(team=rivals, name="SLACK_BOT", value="xoxb-another-workspace")
    ours = Integration.objects.get(pk=slack_integration["id"])
    theirs = Integration.objects.create(team=rivals, kind="slack", name="alerts", channel="C0DEPLOY", token_secret=their_bot)
    ours_again = Integration.objects.create(team=team, kind="slack", name="alerts-too", channel="#c0deploy", token_secret=ours.token_secret)
    assert SlackChannelSlot.take(ours) is None
    assert SlackChannelSlot.take(theirs) is None  # same channel name, another workspace: not slowed
    assert SlackChannelSlot.take(ours_again) is not None  # same bot, same channel: shares the second
    assert not any("xoxb" in key for key in SlackChannelSlot.objects.values_list("key", flat=True))


def test_a_slack_automation_test_waits_its_turn_and_is_never_retried(team, project, api, bob, slack, slack_integration, fast_retries):
    from actions.models import SlackChannelSlot

    automation = slack_automation(team, slack_integration)
    integration = Integration.objects.get(pk=slack_integration["id"])
    slack.ok()
    assert SlackChannelSlot.take(integration) is None  # a message just went to the channel
    result = api(bob).post(f"{T}/automations/{automation.pk}/test/").json()
    assert result["status"] == "succeeded" and len(slack.messages()) == 1  # waited a second, then sent
    SlackChannelSlot.objects.update(next_slot=timezone.now() + timedelta(minutes=1))  # a flood in progress
    busy = api(bob).post(f"{T}/automations/{automation.pk}/test/").json()
    assert busy["status"] == "failed" and "is busy" in busy["error"] and busy["attempts"] == []
    SlackChannelSlot.objects.update(next_slot=timezone.now())
    slack.error("ratelimited", status=429, headers={"Retry-After": "1"})
    limited = api(bob).post(f"{T}/automations/{automation.pk}/test/").json()
    assert limited["status"] == "failed" and len(limited["attempts"]) == 1
    tick()
    assert not Execution.objects.filter(status__in=["pending", "running"]).exists()
    assert len(slack.requests) == 2
    SlackChannelSlot.objects.update(next_slot=timezone.now() + timedelta(minutes=1))
    outcome = api(team.memberships.get(role="admin").user).post(f"{T}/integrations/{integration.pk}/test/").json()
    assert outcome["ok"] is False and "is busy" in outcome["error"] and len(slack.requests) == 2


def test_an_execution_whose_secret_cannot_be_decrypted_fails_visibly_and_the_rest_go_on(team, project, api, bob, receiver, webhook):
    from django.db import connection

    automation = alias_automation(team, webhook)
    plain = Integration.objects.create(team=team, kind="webhook", name="plain", url=receiver.url)
    other = make_automation(team, "plain", {"type": "project", "project": "vision"}, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^prod"},
                            {"type": "WEBHOOK", "integration": plain.pk, "payload": {"v": "${alias}"}})
    with connection.cursor() as cursor:  # as after SECRET_KEY changed without a fallback
        cursor.execute("UPDATE teams_secret SET value = %s WHERE name = %s", ["gAAAAAnot-a-fernet-token", "DEPLOY_TOKEN"])
    trigger(api, bob)
    [stuck] = fired(automation)
    assert stuck.status == "failed" and "cannot be decrypted" in stuck.error and "SECRET_KEY" in stuck.error
    assert fired(other)[0].status == "succeeded" and len(receiver.requests) == 1
    tick()
    assert Execution.objects.get(pk=stuck.pk).status == "failed"  # not taken up again
