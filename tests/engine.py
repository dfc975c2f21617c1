"""Helpers for tests that go through the whole pipeline in sync mode (transactional tests, so
that on-commit hooks run: event → evaluation → execution → delivery)."""

from automations.models import Automation, Execution
from automations.spec import parse_action, parse_event, parse_scope


def make_automation(team, name, scope, event, action=None, enabled=True):
    scope_fields = parse_scope(team, scope)
    event_type, event_filter = parse_event(scope_fields["scope_type"], event)
    action_type, integration, config = parse_action(team, action or {"type": "NO_OP"})
    return Automation.objects.create(
        team=team, name=name, enabled=enabled, event_type=event_type, event_filter=event_filter,
        action_type=action_type, integration=integration, action_config=config, **scope_fields,
    )


def fired(automation):
    """The executions of an automation, oldest first."""
    return list(Execution.objects.filter(automation=automation, is_test=False).order_by("id"))
