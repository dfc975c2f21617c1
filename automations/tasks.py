"""django-q2 entry points. Arguments are ids only (django-q2 pickles them in clear)."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django_q.tasks import async_task

from events.models import Event
from ops import metrics

from . import dispatch
from .delivery import deliver
from .matching import candidates, load_conditions, match
from .models import ActionType, Automation, DeliveryAttempt, Execution, ExecutionStatus

logger = logging.getLogger("tripline.evaluate")
SWEEP_AGE = timedelta(seconds=30)
PRUNE_BATCH = 2000


def enqueue_evaluation(sender=None, event_id=None, **kwargs):
    async_task("automations.tasks.evaluate_event", event_id, task_name=f"evaluate-{event_id}")


@metrics.timed_evaluation
def evaluate_event(event_id):
    """Create one execution per automation the event triggers, and hand out the ones with
    something to deliver. Safe to run twice: executions are unique per (automation, event)."""
    with transaction.atomic():
        event = Event.objects.select_related("run__user", "team").filter(pk=event_id, evaluated_at__isnull=True, sample=False).first()
        if event is None:
            return []
        automations = list(candidates(event, Automation.objects.all()))
        own = set(Execution.objects.filter(delivery_id=event.cause).values_list("automation_id", flat=True)) if event.cause else set()
        conditions = load_conditions(event, automations)
        to_deliver = []
        for automation in automations:
            if automation.pk in own:
                continue  # never trigger on a change caused by this automation's own action
            context = match(automation, event, conditions)
            if context is None:
                continue
            execution = create_execution(automation, event, context)
            if execution is not None and automation.action_type != ActionType.NO_OP:
                to_deliver.append(execution.pk)
        Event.objects.filter(pk=event.pk).update(evaluated_at=timezone.now())
        transaction.on_commit(lambda: [dispatch.dispatch(pk) for pk in to_deliver])
    return to_deliver


def create_execution(automation, event, context):
    """The new execution, or None when this event already triggered this automation.
    A NO_OP execution is complete as soon as it exists."""
    now = timezone.now()
    fields = {"context": context, "next_attempt_at": now}
    if automation.action_type == ActionType.NO_OP:
        fields.update(status=ExecutionStatus.SUCCEEDED, finished_at=now, next_attempt_at=None, request={"action": "NO_OP"})
    try:
        with transaction.atomic():
            execution = Execution.objects.create(automation=automation, event=event, **fields)
    except IntegrityError:
        return None
    return execution


def deliver_execution(execution_id, token):
    deliver(execution_id, token)


def sweep():
    """The periodic safety net (a django-q2 schedule): re-enqueue events left unevaluated (a
    lost task) and hand out due or abandoned deliveries."""
    stale = Event.objects.filter(evaluated_at__isnull=True, sample=False, created_at__lt=timezone.now() - SWEEP_AGE)
    ids = list(stale.order_by("id").values_list("pk", flat=True)[:500])
    for pk in ids:
        enqueue_evaluation(event_id=pk)
    if ids:
        logger.warning("sweep: re-enqueued %d unevaluated events", len(ids))
    dispatch.tick()
    prune()
    return len(ids)


def prune():
    """Delete events older than RETENTION_DAYS with their executions and attempts, a batch per
    sweep. Kept: an event evaluated within that time (a late evaluation), or with an execution
    still to deliver or finished within it (a redelivery)."""
    if not settings.RETENTION_DAYS:
        return 0
    cutoff = timezone.now() - timedelta(days=settings.RETENTION_DAYS)
    live = Execution.objects.filter(Q(status__in=[ExecutionStatus.PENDING, ExecutionStatus.RUNNING]) | Q(finished_at__gte=cutoff), event=OuterRef("pk"))
    expired = Event.objects.filter(created_at__lt=cutoff, evaluated_at__lt=cutoff).exclude(Exists(live))
    ids = list(expired.order_by("id").values_list("pk", flat=True)[:PRUNE_BATCH])
    if ids:
        with transaction.atomic():
            DeliveryAttempt.objects.filter(execution__event_id__in=ids).delete()
            Execution.objects.filter(event_id__in=ids).delete()
            Event.objects.filter(pk__in=ids).delete()
        logger.info("sweep: pruned %d events older than %d days with their executions", len(ids), settings.RETENTION_DAYS)
    return len(ids)
