"""Delivering an execution a worker has claimed (automations.lifecycle): send it once through
its action's transport, record the attempt, and let the lifecycle decide what comes next.
Retries are scheduled by time (`next_attempt_at`), never slept on."""

import logging

from django.utils import timezone

from actions.transports import DeliveryResult, send
from ops import metrics

from . import action_kinds, lifecycle
from .context import payload_context

logger = logging.getLogger("tripline.delivery")


def build_message(execution):
    return action_kinds.get(execution.automation.action_type).message(execution, payload_context(execution))


def deliver(execution):
    """Send a claimed execution once and record what happened. Returns the execution."""
    try:
        return _deliver(execution)
    except Exception as exc:  # a bug, an undecryptable secret: fail it visibly rather than hold it until its lease runs out
        logger.error("execution %s could not be delivered: %s: %s", execution.pk, type(exc).__name__, exc)
        lifecycle.finish(execution, None, DeliveryResult(ok=False, error=f"could not be delivered: {type(exc).__name__}: {exc}"), retry=False)
        return execution


def _deliver(execution):
    automation = execution.automation
    integration = automation.integration
    if not automation.enabled and not execution.is_test:
        if lifecycle.skip(execution, "the automation was disabled before this execution was delivered"):
            metrics.count_skipped(execution)
        return execution
    if integration is not None and not integration.enabled:
        refused = DeliveryResult(ok=False, error=f"integration {integration.name} is disabled: {integration.disabled_reason}")
        lifecycle.finish(execution, None, refused, retry=False)
        return execution
    if action_kinds.get(automation.action_type).wait_turn(execution):  # e.g. Slack's pace per channel
        return execution
    attempt = lifecycle.start_attempt(execution)
    if attempt is None:
        return execution
    result = send(automation.action_type, integration, lambda: build_message(execution))
    if lifecycle.finish(execution, attempt, result, retry=not execution.is_test):
        metrics.observe_delivery(execution, result)
        if integration is not None:
            record_use(integration, result)
    return execution


def record_use(integration, result):
    now = timezone.now()
    integration.last_used_at = now
    integration.last_error = "" if result.ok else result.error
    integration.save(update_fields=["last_used_at", "last_error"])
    if result.disable_integration:
        integration.disable(f"the receiver answered 410 Gone at {now:%Y-%m-%d %H:%M} UTC")
