"""Delivering one execution: claim it, send through its transport, record the attempt, decide
what comes next. Retries are scheduled by time (`next_attempt_at`), never slept on."""

import logging
import random
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from actions.http import attempt_deadline
from actions.models import SlackChannelSlot
from actions.payloads import MASK, render
from actions.transports import TRANSPORTS, DeliveryResult, Message
from ops import metrics

from .context import payload_context, slack_message
from .models import ActionType, DeliveryAttempt, Execution, ExecutionStatus

logger = logging.getLogger("tripline.delivery")
SLACK_INTERVAL = timedelta(seconds=1)  # about one message per second per channel
MAX_RETRY_AFTER = 86400


def delivery_lease():
    """How long a worker holds an execution while sending: one attempt's deadline and a margin."""
    return timedelta(seconds=attempt_deadline() + 10)


def max_attempts():
    return len(settings.WEBHOOK_RETRY_SCHEDULE) + 1


def retry_delay(attempts_made, retry_after=None):
    """Seconds before the next attempt: the schedule entry with ±10 % jitter, or Retry-After
    when the receiver asks for longer (capped at a day)."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    base = schedule[min(attempts_made - 1, len(schedule) - 1)]
    delay = base * random.uniform(0.9, 1.1)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def build_message(execution):
    automation = execution.automation
    context = payload_context(execution)
    if automation.action_type == ActionType.SLACK:
        return Message(delivery_id=execution.delivery_id, slack=slack_message(execution, context))
    if automation.action_type != ActionType.WEBHOOK:
        return Message(delivery_id=execution.delivery_id)
    attached = automation.integration.attached_secrets()
    real = {name: secret.value for name, secret in attached.items()}
    template = automation.action_config.get("payload", {})
    return Message(
        delivery_id=execution.delivery_id,
        payload=render(template, context, real),
        masked_payload=render(template, context, {name: MASK for name in attached}),
        secret_values=tuple(real.values()),
    )


def claim(execution_id, token):
    """Take an execution handed out with `token`; False if another worker or a newer hand-out
    holds it (a late or duplicated task)."""
    now = timezone.now()
    return bool(
        Execution.objects.filter(pk=execution_id, lease_token=token, status=ExecutionStatus.PENDING).update(
            status=ExecutionStatus.RUNNING, lease_until=now + delivery_lease(), started_at=now
        )
    )


@metrics.delivery_task
def deliver(execution_id, token, retry=True):
    if not claim(execution_id, token):
        return None
    execution = Execution.objects.select_related(
        "automation__team", "automation__integration__access_token_secret", "automation__integration__secret",
        "automation__integration__token_secret", "event__version__collection__team", "event__version__collection__project",
        "event__version__collection__registry", "event__run__project__team", "event__project", "event__registry", "event__actor",
    ).get(pk=execution_id)
    integration = execution.automation.integration
    if not execution.automation.enabled and not execution.is_test:
        return skip(execution, "the automation was disabled before this execution was delivered")
    if integration is not None and not integration.enabled:
        return finish(execution, None, DeliveryResult(ok=False, error=f"integration {integration.name} is disabled: {integration.disabled_reason}"), retry=False)
    if execution.automation.action_type == ActionType.SLACK and not take_slack_slot(integration):
        return postpone(execution, SLACK_INTERVAL.total_seconds())
    attempt = DeliveryAttempt.objects.create(execution=execution, number=execution.attempt_count + 1, started_at=timezone.now())
    Execution.objects.filter(pk=execution.pk).update(attempt_count=F("attempt_count") + 1)
    execution.attempt_count += 1
    try:
        message = build_message(execution)
        result = TRANSPORTS[execution.automation.action_type].send(integration, message)
    except Exception as exc:  # a bug or an undecryptable secret: fail this execution, visibly
        logger.exception("execution %s: could not be sent", execution.pk)
        result = DeliveryResult(ok=False, error=f"could not send: {type(exc).__name__}: {exc}"[:1000])
    return finish(execution, attempt, result, retry=retry)


def skip(execution, reason):
    Execution.objects.filter(pk=execution.pk, lease_token=execution.lease_token).update(
        status=ExecutionStatus.SKIPPED, error=reason, finished_at=timezone.now(), next_attempt_at=None, lease_until=None, lease_token=""
    )
    metrics.count_skipped(execution)
    return execution


def take_slack_slot(integration):
    """Reserve the channel's next second; False when another message just took it."""
    now, key = timezone.now(), SlackChannelSlot.key(integration.channel)
    SlackChannelSlot.objects.get_or_create(channel=key, defaults={"next_slot": now})
    return bool(SlackChannelSlot.objects.filter(channel=key, next_slot__lte=now).update(next_slot=now + SLACK_INTERVAL))


def postpone(execution, seconds):
    Execution.objects.filter(pk=execution.pk, status=ExecutionStatus.RUNNING).update(
        status=ExecutionStatus.PENDING, next_attempt_at=timezone.now() + timedelta(seconds=seconds), lease_until=None, lease_token=""
    )
    return execution


@transaction.atomic
def finish(execution, attempt, result: DeliveryResult, retry=True):
    """Record the attempt, then decide the execution's next state, but only while this worker
    still holds the lease: if it ran out (a receiver slower than every timeout) and another
    worker took the execution over, the newer delivery decides."""
    now = timezone.now()
    if attempt is not None:
        attempt.duration_ms = result.duration_ms
        attempt.request = result.request
        attempt.status_code = result.status_code
        attempt.response_body = result.response_body
        attempt.error = result.error
        attempt.save()
    fields = {"request": result.request or execution.request, "lease_until": None, "lease_token": "", "error": result.error}
    if result.ok:
        fields.update(status=ExecutionStatus.SUCCEEDED, finished_at=now, next_attempt_at=None)
    elif retry and result.retryable and execution.attempt_count < max_attempts():
        delay = retry_delay(execution.attempt_count, result.retry_after)
        fields.update(status=ExecutionStatus.PENDING, next_attempt_at=now + timedelta(seconds=delay))
        logger.info("execution %s: attempt %s failed (%s); retrying in %.0fs", execution.pk, execution.attempt_count, result.error, delay)
    else:
        fields.update(status=ExecutionStatus.FAILED, finished_at=now, next_attempt_at=None)
        logger.warning("execution %s failed: %s", execution.pk, result.error)
    held = Execution.objects.filter(pk=execution.pk, status=ExecutionStatus.RUNNING, lease_token=execution.lease_token)
    if not held.update(**fields):
        logger.warning("execution %s: the lease ran out during attempt %s; another delivery decides", execution.pk, execution.attempt_count)
        return execution
    for field, value in fields.items():
        setattr(execution, field, value)
    integration = execution.automation.integration
    if integration is not None:
        integration.last_used_at = now
        integration.last_error = "" if result.ok else result.error
        integration.save(update_fields=["last_used_at", "last_error"])
        if result.disable_integration:
            integration.disable(f"the receiver answered 410 Gone at {now:%Y-%m-%d %H:%M} UTC")
    metrics.observe_delivery(execution, result)
    return execution


def new_token():
    return uuid.uuid4().hex
