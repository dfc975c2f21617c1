"""Handing executions to workers, and taking them back from workers that died.

An execution is handed out with a fresh `lease_token`; only the task holding that token may
claim it, so a duplicated or late task does nothing. A delivery holds a lease for the length of
its timeouts; when a worker dies the lease runs out and the execution is handed out again with
the same delivery id (at least once; receivers deduplicate on webhook-id).
"""

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from .delivery import new_token
from .models import DeliveryAttempt, Execution, ExecutionStatus

logger = logging.getLogger("tripline.dispatch")
HANDOUT_LEASE = timedelta(seconds=60)  # a handed-out task that never starts is handed out again
BATCH = 200


def dispatch(execution_id):
    now = timezone.now()
    token = new_token()
    claimed = Execution.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=execution_id, status=ExecutionStatus.PENDING, next_attempt_at__lte=now
    ).update(lease_token=token, lease_until=now + HANDOUT_LEASE)
    if claimed:
        async_task("automations.tasks.deliver_execution", execution_id, token, task_name=f"deliver-{execution_id}-{token[:8]}")
    return bool(claimed)


def recover_abandoned():
    """Executions whose worker died mid-delivery: note it on the attempt, deliver again."""
    now = timezone.now()
    lost = list(Execution.objects.filter(status=ExecutionStatus.RUNNING, lease_until__lt=now).values_list("pk", flat=True)[:BATCH])
    for pk in lost:
        if Execution.objects.filter(pk=pk, status=ExecutionStatus.RUNNING, lease_until__lt=now).update(
            status=ExecutionStatus.PENDING, next_attempt_at=now, lease_until=None, lease_token=""
        ):
            DeliveryAttempt.objects.filter(execution_id=pk, duration_ms__isnull=True, error="").update(
                error="the worker stopped during this attempt; its outcome is unknown, so it is delivered again"
            )
            logger.warning("execution %s: worker lost mid-delivery, delivering again", pk)
    return len(lost)


def dispatch_due():
    now = timezone.now()
    due = Execution.objects.filter(status=ExecutionStatus.PENDING, next_attempt_at__lte=now).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    return sum(dispatch(pk) for pk in due.order_by("next_attempt_at").values_list("pk", flat=True)[:BATCH])


def tick():
    """One look for due work, every couple of seconds from `manage.py worker`."""
    recover_abandoned()
    return dispatch_due()
