"""Delivering an execution a worker has claimed (automations.lifecycle): send it once through
its action's transport, record the attempt, and let the lifecycle decide what comes next.
Retries are scheduled by time (`next_attempt_at`), never slept on.

`deliver_all` sends many at once: up to DELIVERY_THREADS threads in the task's process, each
claiming its next execution when it is done with one, so one slow receiver holds one thread and
never the rest; each thread keeps its own keep-alive connections (actions.http)."""

import logging
import random
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connections
from django.utils import timezone
from django_q.conf import Conf

from actions.models import SlackChannelSlot
from actions.payloads import MASK, render
from actions.transports import DeliveryResult, Message, send, slack_turn_now
from ops import metrics

from . import lifecycle
from .context import payload_context, slack_message
from .models import ActionType

logger = logging.getLogger("tripline.delivery")


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


def deliver(execution):
    """Send a claimed execution once and record what happened. Returns the execution."""
    try:
        return _deliver(execution)
    except Exception as exc:  # a bug, an undecryptable secret: fail it visibly rather than hold it until its lease runs out
        logger.error("execution %s could not be delivered: %s: %s", execution.pk, type(exc).__name__, exc)
        lifecycle.finish(execution, None, DeliveryResult(ok=False, error=f"could not be delivered: {type(exc).__name__}: {exc}"), retry=False)
        return execution


def deliver_all(next_execution, until):
    """Deliver what `next_execution()` claims (an execution, or None when there is no more) until
    it returns None or the monotonic time `until` has passed. Up to DELIVERY_THREADS at a time
    (one, in the calling thread, with synchronous tasks: tests); a thread is added each time one
    claims something, up to the limit, so a single execution costs no extra thread.

    Returns (executions delivered, whether time ran out with work perhaps left)."""
    limit = 1 if Conf.SYNC else max(1, settings.DELIVERY_THREADS)
    lock = threading.Lock()
    delivered, out_of_time, threads = [], [], []

    def work():
        while True:
            if time.monotonic() >= until:
                out_of_time.append(True)
                return
            execution = next_execution()
            if execution is None:
                return
            with lock:
                if limit > 1 and len(threads) < limit:
                    start()
            deliver(execution)
            with lock:
                delivered.append(execution)

    def run():
        try:
            work()
        except Exception:  # a database error: the claimed execution's lease runs out, and it is taken back
            logger.exception("a delivery thread stopped")
        finally:
            connections.close_all()  # this thread's own connections

    def start():
        thread = threading.Thread(target=run, name=f"tripline-deliver-{len(threads) + 1}", daemon=True)
        threads.append(thread)
        thread.start()

    if limit == 1:
        work()
    else:
        with lock:
            start()
        for thread in iter_threads(threads, lock):
            thread.join()
    return delivered, bool(out_of_time)


def iter_threads(threads, lock):
    """Every thread of `threads`, including those started while the earlier ones are joined."""
    seen = 0
    while True:
        with lock:
            if seen >= len(threads):
                return
            thread = threads[seen]
        seen += 1
        yield thread


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
    if automation.action_type == ActionType.SLACK:
        if execution.is_test:
            # a test is sent now or not at all: it waits its turn in the channel, never in the queue
            busy = slack_turn_now(integration)
            if busy:
                lifecycle.finish(execution, None, busy, retry=False)
                return execution
        else:
            frees_at = SlackChannelSlot.take(integration)
            if frees_at is not None:
                lifecycle.postpone(execution, frees_at + timedelta(seconds=random.uniform(0, SlackChannelSlot.INTERVAL.total_seconds())))
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
