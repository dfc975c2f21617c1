"""The integration kinds, one definition each: the fields only that kind takes, what it requires,
whether it signs (a webhook's Standard Webhooks key), its sample test message and how that is
sent. The automation action that sends through it is automations/action_kinds/<name>.py.
Nothing outside this module and those definitions branches on a kind (tests/test_definitions.py)."""

import uuid

from .models import IntegrationKind
from .payloads import render, sample_context
from .transports import Message, send, slack_turn_now

KINDS = {}


def register(cls):
    KINDS[cls.kind] = cls()
    return cls


def get(kind):
    return KINDS[kind]


def signing_kinds():
    return [kind for kind, definition in KINDS.items() if definition.signs]


class IntegrationKindDefinition:
    kind = ""
    action = ""  # the transport (and action kind) it sends through
    fields = ()  # the fields only this kind takes (API.md); the other kinds refuse them
    signs = False

    def missing(self, values, api=True):
        """{field: message} for what this kind requires and `values` lacks."""
        return {}

    def test_message(self, integration, payload=None):
        raise NotImplementedError

    def send_test(self, integration, message):
        return send(self.action, integration, lambda: message)


@register
class Webhook(IntegrationKindDefinition):
    kind = IntegrationKind.WEBHOOK
    action = "WEBHOOK"
    fields = ("url", "access_token_secret", "secret")
    signs = True

    def missing(self, values, api=True):
        return {} if values.get("url") else {"url": "A webhook needs a URL."}

    def test_message(self, integration, payload=None):
        message = Message(delivery_id="msg_test_" + uuid.uuid4().hex)
        template = payload if payload is not None else {"event_type": "${event_type}", "test": True, "artifact": "${artifact_version_string}"}
        message.payload = message.masked_payload = render(template, sample_context("integration test"))
        return message


@register
class Slack(IntegrationKindDefinition):
    kind = IntegrationKind.SLACK
    action = "SLACK"
    fields = ("channel", "token_secret")

    def missing(self, values, api=True):
        errors = {}
        if not values.get("channel"):
            errors["channel"] = "A Slack integration needs a channel."
        if not values.get("token_secret"):
            errors["token_secret"] = ("A Slack integration needs the name of the secret holding its bot token." if api
                                      else "A Slack integration needs the bot token secret.")
        return errors

    def test_message(self, integration, payload=None):
        text = f"Tripline test message for integration {integration.name}"
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        return Message(delivery_id="msg_test_" + uuid.uuid4().hex, slack={"text": text, "blocks": blocks})

    def send_test(self, integration, message):
        return slack_turn_now(integration) or super().send_test(integration, message)  # Slack's pace holds for tests too
