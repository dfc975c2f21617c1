"""Handing work to the task queue without flooding it.

The database is the queue; broker tasks only wake workers up. A `deliver` task claims due
executions until none is left (automations.lifecycle), an `evaluate` task evaluates the events
not evaluated yet and delivers what they trigger (automations.tasks). Enqueuing one is a *nudge*;
every event committed nudges an `evaluate` task (`wake`), and the ticker nudges for events that
are late all the same. A nudge is outstanding from the moment
it is enqueued until its task starts, and while one is outstanding no other of its kind is
enqueued: however deep the queue and however often the ticker looks, it holds at most one nudge
of each kind, and the extra tasks a deep queue used to pile up do not exist.

A nudge can be lost: the Redis broker loses the tasks a killed worker had taken. One still not
started when the broker's queue is empty NUDGE_GRACE later, or in any case NUDGE_LOST_AFTER
later, is presumed lost and another is enqueued; if the first turns up after all, it finds
nothing to do and costs a query.
"""

import logging
import os
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.tasks import async_task

from events.models import Event
from ops.compiled import Compiled

from . import event_types, lifecycle
from .models import Nudge

logger = logging.getLogger("tripline.dispatch")
TASKS = {"deliver": "automations.tasks.deliver_due", "evaluate": "automations.tasks.evaluate_pending"}
NUDGE_GRACE = timedelta(seconds=5)
NUDGE_LOST_AFTER = timedelta(seconds=60)
BUDGET = 10  # seconds a task keeps claiming work before it makes way for other tasks
LATE = timedelta(seconds=30)  # an event still unevaluated this long is evaluated by an `evaluate` task


def nudge(kind, force=False):
    """Enqueue a task of `kind` unless one is already waiting (`force`: whatever is waiting may
    be lost). True when one was enqueued."""
    now = timezone.now()
    token = lifecycle.new_token()
    free = Q() if force else Q(queued_at__isnull=True) | Q(queued_at__lt=now - NUDGE_LOST_AFTER)
    # the nudge is committed before its task is pushed: a task that started first (Redis hands
    # it over at once) would not find its nudge to free, and events would wait for it to expire
    if not _take(kind, free, token, now) and not (broker_idle() and _take(kind, Q(queued_at__lt=now - NUDGE_GRACE), token, now)):
        return False
    async_task(TASKS[kind], token, task_name=f"{kind}-{token[:8]}", broker=broker())
    return True


def wake(kind):
    """`nudge`, unless a task of `kind` is waiting to start: then it will see what the caller has
    committed (a task frees its nudge before it looks for work), and this is one read — no write,
    no broker — which is what a burst of events costs while a task is waiting."""
    waiting = _nudge(kind)
    if waiting and waiting[0].queued_at is not None and waiting[0].queued_at >= timezone.now() - NUDGE_LOST_AFTER:
        return False
    return nudge(kind)


_nudge = Compiled(lambda kind: Nudge.objects.filter(kind=kind))  # read after every write that records an event


def _take(kind, condition, token, now):
    if Nudge.objects.filter(condition, kind=kind).update(token=token, queued_at=now):
        return True
    return Nudge.objects.get_or_create(kind=kind, defaults={"token": token, "queued_at": now})[1]


def hold(kind, token):
    """A running task stands in for a waiting one while it looks for new work itself (an
    evaluate task lingering for the next event): until it calls `started` with `token`, events
    enqueue no other task, as if one were waiting. False when one is waiting already."""
    return _take(kind, Q(queued_at__isnull=True), token, timezone.now())


def started(kind, token):
    """Called first by a nudged task: from now on another nudge may be enqueued."""
    Nudge.objects.filter(kind=kind, token=token).update(token="", queued_at=None)


def broker_idle():
    return Conf.SYNC or broker().queue_size() == 0


_brokers = {}


def broker():
    """This process's broker connection, made once (get_broker connects anew on each call)."""
    return _brokers.get(os.getpid()) or _brokers.setdefault(os.getpid(), get_broker())


def late_events():
    return Event.objects.unevaluated().filter(created_at__lt=timezone.now() - LATE)


def tick():
    """One look for work, every couple of seconds from each `manage.py worker`: take back what
    dead workers held, and nudge when something is due or late."""
    lifecycle.recover_abandoned()
    if lifecycle.due_exists():
        nudge("deliver")
    if late_events().exists():
        nudge("evaluate")
    event_types.sweep()  # events found by time, not by a write (RUN_STALLED)
