"""Secrets never leave (SPEC §5), tested by class: generated secrets holding newlines, quotes,
backslashes and unicode, echoed back by a receiver as is, JSON-escaped, URL-encoded,
HTML-escaped or as a Python repr, and cut at the 1 KiB the response keeps (or, for a long one,
at the limit of what is read); secrets no header can carry; webhook URLs carrying tokens. After
each, no part of the value is in any API response, page, stored row or log line."""

import html
import json
import logging
import uuid
from urllib.parse import quote, quote_plus

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from actions.http import RESPONSE_READ_LIMIT
from actions.models import Integration
from actions.payloads import echoed_forms
from automations.models import DeliveryAttempt, Execution

from .conftest import P, T
from .engine import fired, make_automation
from .receivers import FakeSlack, Receiver

pytestmark = pytest.mark.django_db(transaction=True)
BASE = "S3cr3t" + uuid.uuid4().hex[:10]  # in every generated secret, and nowhere else
SECRETS = {
    "trailing newline": BASE + "\n",
    "CRLF": BASE + "\r\n",
    "quotes and backslashes": BASE + "\"q\" 'a' \\n \\",
    "unicode": BASE + "-é-☃-🦄",
    "markup and URL characters": BASE + " <b>&amp;</b> +%2F/?=#",
    "multi-line key": "-----BEGIN KEY-----\n" + BASE + "\nAbCd/+==\n-----END KEY-----\n",
    "long": BASE + "🦄" * 7000,  # URL-encoded: 84 KiB, more than is read of an answer
}
ECHOES = {
    "raw": lambda v: v,
    "JSON": lambda v: json.dumps({"got": v})[8:-1],
    "JSON utf-8": lambda v: json.dumps({"got": v}, ensure_ascii=False)[8:-1],
    "URL query": lambda v: quote_plus(v),
    "URL path": lambda v: quote(v),
    "HTML": html.escape,
    "repr": lambda v: repr(v),
}


def token_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def body_straddling_the_cut(echo):
    """The receiver's answer: the echo straddles the 1 KiB kept, or when it is longer than what is
    read of an answer, starts early and runs past that."""
    size = len(echo.encode())
    lead = 10 if size > RESPONSE_READ_LIMIT else max(0, 1024 - len(echo) // 2)
    return ("x" * lead + echo + " and more").encode()


def leaks(text, secret):
    """The parts of `secret` found in `text`: any form of it, the first half of any form of it,
    or the random stem every generated secret holds."""
    found = [BASE] if BASE in text else []
    for form in echoed_forms(secret):
        if form in text or (len(form) >= 12 and form[: len(form) // 2] in text):
            found.append(form[:40])
    return found


def everything_shown_or_stored(team, execution, integration_id, client, viewer_client, admin_client):
    c = token_client
    texts = [
        c(team.memberships.get(role="admin").user).get(f"{T}/executions/{execution.pk}/").content.decode(),
        c(team.memberships.get(role="viewer").user).get(f"{T}/executions/{execution.pk}/").content.decode(),
        c(team.memberships.get(role="member").user).get(f"{T}/executions/").content.decode(),
        c(team.memberships.get(role="admin").user).get(f"{T}/integrations/{integration_id}/").content.decode(),
        admin_client.get(execution.get_absolute_url()).content.decode(),
        admin_client.get(f"/admin/automations/execution/{execution.pk}/change/").content.decode(),
        viewer_client.get(execution.get_absolute_url()).content.decode(),
        json.dumps(list(Execution.objects.values()), default=str, ensure_ascii=False),
        json.dumps(list(DeliveryAttempt.objects.values()), default=str, ensure_ascii=False),
        json.dumps(list(Integration.objects.values("last_error", "disabled_reason")), ensure_ascii=False),
    ]
    return texts


@pytest.fixture
def signed_in(client, alice, vic, team):
    from django.test import Client

    assert client.login(username="alice", password="alice-password")
    viewer = Client()
    assert viewer.login(username="vic", password="vic-password")
    return client, viewer


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.mark.parametrize("kind", SECRETS)
def test_an_echoed_secret_is_masked_in_every_form_and_at_every_cut(team, project, alice, bob, receiver, signed_in, caplog, kind):
    secret = SECRETS[kind]
    admin_client, viewer_client = signed_in
    caplog.set_level(logging.DEBUG)
    a = token_client(alice)
    assert a.post(f"{T}/secrets/", {"name": "SIGNING", "value": secret}, format="json").status_code == 201
    hook = a.post(f"{T}/integrations/", {"kind": "webhook", "name": "echo", "url": receiver.url, "secret": "SIGNING"}, format="json").json()
    automation = make_automation(team, "echo", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"},
                                 {"type": "WEBHOOK", "integration": hook["id"], "payload": {"key": "${SIGNING}"}})
    for echo in ECHOES.values():
        receiver.answer(400, body_straddling_the_cut(echo(secret)))
        assert token_client(bob).post(f"{P}/artifacts/", {"name": "m", "type": "model"}, format="json").status_code == 201
    assert json.loads(receiver.requests[0]["body"]) == {"key": secret}  # sent as it is
    executions = fired(automation)
    assert len(executions) == len(ECHOES) and {e.status for e in executions} == {"failed"}
    for execution in executions:
        body = execution.attempts.get().response_body
        assert "********" in body, body[:200]
    for text in everything_shown_or_stored(team, executions[-1], hook["id"], None, viewer_client, admin_client) + [caplog.text]:
        assert leaks(text, secret) == []
    for execution in executions:
        assert leaks(execution.attempts.get().response_body, secret) == []


@pytest.mark.parametrize("kind", ["trailing newline", "CRLF", "unicode", "multi-line key"])
def test_a_secret_no_header_can_carry_fails_the_attempt_by_name(team, project, alice, bob, receiver, signed_in, caplog, settings, kind):
    secret = SECRETS[kind]
    admin_client, viewer_client = signed_in
    caplog.set_level(logging.DEBUG)
    a = token_client(alice)
    a.post(f"{T}/secrets/", {"name": "DEPLOY_TOKEN", "value": secret}, format="json")  # accepted: it may be used in a payload
    hook = a.post(f"{T}/integrations/", {"kind": "webhook", "name": "ci", "url": receiver.url, "access_token_secret": "DEPLOY_TOKEN"},
                  format="json").json()
    automation = make_automation(team, "ci", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"},
                                 {"type": "WEBHOOK", "integration": hook["id"], "payload": {"v": "${artifact_version_string}"}})
    token_client(bob).post(f"{P}/artifacts/", {"name": "m", "type": "model"}, format="json")
    [execution] = fired(automation)
    assert execution.status == "failed" and execution.attempt_count == 1  # not retried: it would fail the same way
    assert execution.error.startswith("the secret DEPLOY_TOKEN cannot be used as the webhook's access token")
    assert receiver.requests == []
    outcome = a.post(f"{T}/integrations/{hook['id']}/test/", {}, format="json").json()
    assert outcome["ok"] is False and "DEPLOY_TOKEN" in outcome["error"]
    for text in everything_shown_or_stored(team, execution, hook["id"], None, viewer_client, admin_client) + [caplog.text, json.dumps(outcome)]:
        assert leaks(text, secret) == []


def test_a_slack_token_no_header_can_carry_fails_by_name(team, project, alice, bob, settings, caplog):
    slack = FakeSlack()
    settings.SLACK_API_URL = slack.url + "/api/"
    caplog.set_level(logging.DEBUG)
    try:
        a = token_client(alice)
        a.post(f"{T}/secrets/", {"name": "BOT", "value": "xoxb-" + BASE + "\n"}, format="json")
        a.post(f"{T}/integrations/", {"kind": "slack", "name": "alerts", "channel": "C1", "token_secret": "BOT"}, format="json")
        automation = make_automation(team, "notify", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"},
                                     {"type": "SLACK", "integration": "alerts"})
        token_client(bob).post(f"{P}/artifacts/", {"name": "m", "type": "model"}, format="json")
        [execution] = fired(automation)
        assert execution.status == "failed" and execution.error.startswith("the secret BOT cannot be used as the Slack bot token")
        assert slack.requests == [] and BASE not in caplog.text and BASE not in json.dumps(list(Execution.objects.values()), default=str)
    finally:
        slack.close()


def test_the_integration_test_masks_an_echoed_secret(team, alice, receiver):
    secret = SECRETS["quotes and backslashes"]
    a = token_client(alice)
    a.post(f"{T}/secrets/", {"name": "TOKEN", "value": secret}, format="json")
    hook = a.post(f"{T}/integrations/", {"kind": "webhook", "name": "t", "url": receiver.url, "secret": "TOKEN"}, format="json").json()
    receiver.answer(500, body_straddling_the_cut(json.dumps({"got": secret})[8:-1]))
    outcome = a.post(f"{T}/integrations/{hook['id']}/test/", {"payload": {"k": "${TOKEN}"}}, format="json")
    assert leaks(outcome.content.decode(), secret) == [] and "********" in outcome.json()["response_body"]


# --- webhook URLs carrying tokens


PATH_TOKEN, QUERY_TOKEN = "T0-B0-" + uuid.uuid4().hex, "sig-" + uuid.uuid4().hex


@pytest.mark.parametrize("answer", ["received", "refused"])
def test_only_team_admins_see_a_webhook_url_whole(team, project, alice, bob, vic, receiver, signed_in, answer):
    admin_client, viewer_client = signed_in
    base = receiver.url if answer == "received" else "http://127.0.0.1:9"  # nothing listens on port 9: the error quotes the URL
    url = f"{base}/services/{PATH_TOKEN}?token={QUERY_TOKEN}"
    hook = token_client(alice).post(f"{T}/integrations/", {"kind": "webhook", "name": "incoming", "url": url}, format="json").json()
    automation = make_automation(team, "hook", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"},
                                 {"type": "WEBHOOK", "integration": hook["id"], "payload": {}})
    token_client(bob).post(f"{P}/artifacts/", {"name": "m", "type": "model"}, format="json")
    [execution] = fired(automation)
    for user in (bob, vic):
        detail = token_client(user).get(f"{T}/executions/{execution.pk}/").json()
        assert detail["request"]["url"] == base and detail["attempts"][0]["request"]["url"] == base
        listing = token_client(user).get(f"{T}/executions/").content.decode()
        for text in (json.dumps(detail), listing):
            assert PATH_TOKEN not in text and QUERY_TOKEN not in text
    page = viewer_client.get(execution.get_absolute_url()).content.decode()
    assert PATH_TOKEN not in page and QUERY_TOKEN not in page and "Team admins see it whole" in page
    member_admin = type(admin_client)()
    assert member_admin.login(username="bob", password="bob-password")
    change = member_admin.get(f"/admin/automations/execution/{execution.pk}/change/")
    assert change.status_code == 200 and PATH_TOKEN not in change.content.decode()
    # team admins, who manage integrations, see where it goes
    assert token_client(alice).get(f"{T}/executions/{execution.pk}/").json()["request"]["url"] == url
    assert PATH_TOKEN in admin_client.get(execution.get_absolute_url()).content.decode()
    assert QUERY_TOKEN in admin_client.get(f"/admin/automations/execution/{execution.pk}/change/").content.decode()
