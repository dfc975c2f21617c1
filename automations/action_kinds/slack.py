import random
from types import SimpleNamespace
from datetime import timedelta

from actions.models import IntegrationKind, SlackChannelSlot
from actions.payloads import unknown_variables
from actions.transports import Message, slack_turn_now

from .. import lifecycle
from ..models import ActionType
from ..spec import SEVERITIES, Choice, Integration, Text
from . import register
from .base import ActionKind


@register
class Slack(ActionKind):
    """A Block Kit message to a channel, at most about one a second per channel (Slack's pace)."""

    name = ActionType.SLACK
    fields = {
        "integration": Integration(help="The integration the action sends through (of the action's kind)."),
        "title": Text(200, help="SLACK: title template."), "message": Text(3000, rows=3, help="SLACK: message template (mrkdwn)."),
        "severity": Choice(SEVERITIES, default="INFO", help="SLACK: the message's severity (default INFO)."),
    }
    integration_kind = IntegrationKind.SLACK

    def parse(self, team, data, r):
        integration = self.resolve(team, data, r)
        config = {}
        for name in ("title", "message", "severity"):
            config[name] = self.fields[name].read(r, name)
        for field in ("title", "message"):
            unknown = unknown_variables(config[field] or "")
            if unknown:
                r.fail(field, f"Unknown variables: {', '.join('${' + n + '}' for n in unknown)}.")
        return integration, config

    def message(self, execution, context):
        from ..context import slack_message

        return Message(delivery_id=execution.delivery_id, slack=slack_message(execution, context))

    def preview(self, automation, context):
        from ..context import slack_message

        return {"kind": "slack", "preview": slack_message(SimpleNamespace(automation=automation), context)}

    def wait_turn(self, execution):
        integration = execution.automation.integration
        if execution.is_test:
            # a test is sent now or not at all: it waits its turn in the channel, never in the queue
            busy = slack_turn_now(integration)
            if busy:
                lifecycle.finish(execution, None, busy, retry=False)
            return bool(busy)
        frees_at = SlackChannelSlot.take(integration)
        if frees_at is None:
            return False
        lifecycle.postpone(execution, frees_at + timedelta(seconds=random.uniform(0, SlackChannelSlot.INTERVAL.total_seconds())))
        return True
