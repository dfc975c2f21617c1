"""django-q2 entry points. Arguments are ids and tokens only (django-q2 pickles them in clear)."""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django_q.conf import Conf

from events.models import Event
from ops import metrics
from ops.compiled import Compiled

from . import dispatch, lifecycle
from .delivery import deliver_all
from .matching import candidates, load_conditions, match, save_conditions
from .models import Automation, DeliveryAttempt, Execution, ExecutionStatus

logger = logging.getLogger("tripline.evaluate")
PRUNE_BATCH = 2000


def enqueue_evaluation(sender=None, event_id=None, **kwargs):
    """Once an event has committed: make sure an `evaluate` task is on its way. While one waits
    to start this is a read and nothing more, so a burst of events costs the broker one task,
    not one per event, and the API's write path nothing."""
    dispatch.wake("evaluate")


@metrics.delivery_task
def evaluate_pending(token=""):
    """An `evaluate` nudge: evaluate the events not evaluated yet, oldest first, and deliver the
    executions they create here and now (one broker hop from event to webhook), each claimed
    through the lifecycle like any other, so the delivery guarantees are those of `deliver_due`.

    Events are taken a thread-count at a time when the delivery threads want work
    (delivery.deliver_all), so a backlog is worked through in batches — evaluations in this
    thread, sends on the others — rather than one task per event. Events recorded after the task
    started have nudged another task (dispatch.started frees the nudge first). What is left when
    the task's time is up goes back to the broker as nudges; retries wait for their time in the
    database. A task that runs out of events lingers a moment for the next (`linger`). Returns
    how many executions it delivered."""
    dispatch.started("evaluate", token)
    pending, after, events_left = [], [0], [True]

    def claim(n):
        while True:
            if pending:
                chunk, pending[:n] = pending[:n], []
                claimed = lifecycle.claim_due(chunk)  # only those still due: another worker may have taken them
                if claimed:
                    return claimed
                continue
            if not events_left[0]:
                return []
            ids = one_run([(e.pk, e.run_id) for e in _next_events(after[0])][:n])
            if not ids:
                if not linger(after[0]):
                    events_left[0] = False
                    return []
                continue
            after[0] = ids[-1]
            claimed, due = evaluate_batch(ids, claim=n)
            pending.extend(due)
            if len(pending) > 2 * settings.DELIVERY_THREADS and not Conf.SYNC:
                dispatch.nudge("deliver")  # a fan-out: let an idle worker help
            if claimed:
                return claimed

    def linger(last):
        """Wait up to LINGER for an event after `last`, holding the nudge meanwhile (events
        recorded then enqueue no task: this one finds them), so that under a steady load the
        task goes on instead of ending and being enqueued, polled and started again for the next
        event. The nudge is freed before the last look: an event recorded after that look
        enqueues a task. True when one came."""
        hold = lifecycle.new_token()
        if Conf.SYNC or time.monotonic() + LINGER >= until or not dispatch.hold("evaluate", hold):
            return False
        try:
            for _ in range(int(LINGER / LINGER_POLL)):
                time.sleep(LINGER_POLL)
                if _next_events(last):
                    return True
        finally:
            dispatch.started("evaluate", hold)
        return bool(_next_events(last))

    until = time.monotonic() + dispatch.BUDGET
    delivered, out_of_time = deliver_all(claim, until)
    if out_of_time:
        if pending or lifecycle.due_exists():
            dispatch.nudge("deliver")
        if _next_events(after[0]):
            dispatch.nudge("evaluate")
    return len(delivered)


def one_run(events):
    """The ids of `events` [(id, run id)] up to the first of a second run. A batch keeps the
    conditions of the runs it evaluated locked until it commits; holding one run's at most, two
    batches (two tasks) never wait for each other's in opposite orders (a deadlock)."""
    run, ids = None, []
    for pk, run_id in events:
        if run_id is not None and run_id != run:
            if run is not None:
                break
            run = run_id
        ids.append(pk)
    return ids


LINGER = 1.0  # seconds an evaluate task that ran out of events waits for the next one
LINGER_POLL = 0.01  # how often it looks meanwhile: a cheap indexed read (_next_events)
NEXT_EVENTS = 64  # events read at a time, oldest first; a batch takes a thread-count of them
# compiled once (ops.compiled): read before every batch, and every LINGER_POLL while lingering
_next_events = Compiled(lambda after: Event.objects.unevaluated().filter(pk__gt=after).order_by("pk").only("pk", "run_id")[:NEXT_EVENTS])
_unevaluated = Compiled(lambda pk: Event.objects.unevaluated().filter(pk=pk).only("pk")[:1])  # evaluate_event's first look


def evaluate_batch(ids, claim=0):
    """Evaluate the events `ids` (those not evaluated yet) in one transaction: one query takes
    them, one marks them, one commit — where a transaction per event cost five more queries and a
    commit each, and held the evaluating thread at about fifty events a second. The first `claim`
    executions they create are claimed in that transaction too (lifecycle.claim_due: the caller
    delivers them now). Returns (the executions claimed, the ids of the others to deliver). If
    the batch fails, each event is evaluated on its own, so one that cannot be evaluated holds
    up none of the others."""
    if len(ids) > 1 or claim:
        try:
            return _evaluate(ids, claim)
        except Exception:
            logger.warning("a batch of %d events failed; evaluating them one by one", len(ids), exc_info=True)
    return [], [pk for event_id in ids for pk in evaluate_safely(event_id)]


def evaluate_safely(event_id):
    """evaluate_event, but an event that cannot be evaluated (a bug, the database refusing) is
    logged and left for the sweep, never holding up the events behind it."""
    try:
        return evaluate_event(event_id)
    except Exception:
        logger.exception("event %s could not be evaluated; the sweep tries again", event_id)
        return []


def evaluate_event(event_id):
    """Create one execution per automation the event triggers; returns the ids of those to
    deliver (the caller sends them or nudges a task that does). Safe to run twice: executions are
    unique per (automation, event), and the event is locked while it is evaluated, so a second
    evaluation finds it evaluated, or being evaluated (skipped), with one query."""
    if not _unevaluated(event_id):  # a duplicate or late task: one query, and no write lock taken
        return []
    return _evaluate([event_id])[1]


def _evaluate(ids, claim=0):
    """Evaluate those of the events `ids` not evaluated yet nor locked by another evaluation,
    oldest first, in one transaction, and claim the first `claim` executions to deliver: (those
    claimed, the ids of the others to deliver)."""
    started = time.perf_counter()
    # lifecycle.writing() before the transaction, as every write of the delivery threads takes
    # them: claim_due takes it inside, and the other order deadlocks on SQLite
    with lifecycle.writing(), transaction.atomic():
        events = _lock(ids)
        if not events:
            return [], []
        stamps, triggered = {}, []
        for event in events:  # in order: an event's conditions are written before the next reads them
            triggered += triggers(event, stamps)
        executions = create_executions(triggered)
        Event.objects.filter(pk__in=[event.pk for event in events]).update(evaluated_at=timezone.now())
        due = [e.pk for e in executions if e.status == ExecutionStatus.PENDING]
        # claimed before the commit: on SQLite one write transaction fewer per batch
        claimed = lifecycle.claim_due(due[:claim]) if claim and due else []
    metrics.observe_evaluations(len(events), time.perf_counter() - started)
    taken = {e.pk for e in claimed}
    return claimed, [pk for pk in due if pk not in taken]


_locks = {}


def _lock(ids):
    """The events `ids` not evaluated yet, locked (those another evaluation holds are skipped),
    oldest first: a query compiled once per number of ids (ops.compiled), where compiling it
    for each batch was 6 % of the worker's CPU (py-spy on bench row 1)."""
    query = _locks.get(len(ids)) or _locks.setdefault(len(ids), Compiled(lambda *ids: (
        Event.objects.unevaluated().filter(pk__in=ids).order_by("pk")
        .select_for_update(skip_locked=True, of=("self",)).select_related("run__user", "team"))))
    return query(*ids)


def triggers(event, stamps):
    """[(automation, event, context)] for each automation `event` triggers, its run conditions
    written. `stamps`: the automations' change counters read so far in this transaction."""
    automations = candidates(event, Automation.objects.all(), stamps)
    if event.cause:  # never trigger on a change caused by its own action
        own = set(Execution.objects.filter(delivery_id=event.cause).values_list("automation_id", flat=True))
        automations = [a for a in automations if a.pk not in own]
    conditions = load_conditions(event, automations)
    triggered = []
    for automation in automations:
        context = match(automation, event, conditions)
        if context is not None:
            triggered.append((automation, event, context))
    save_conditions(conditions)
    return triggered


def create_executions(triggered):
    """The new executions of [(automation, event, context)], in one INSERT … ON CONFLICT DO
    NOTHING RETURNING (no savepoint, no ORM compile: it was a third of what a firing batch added);
    one already triggered (an evaluation run again) is left out. Where the database cannot return
    the rows of such an insert, each is created on its own."""
    if not triggered:
        return []
    if not connection.features.can_return_rows_from_bulk_insert:
        return [e for e in (create_execution(a, event, c) for a, event, c in triggered) if e is not None]
    now = timezone.now()
    executions = [Execution(automation=a, event=event, context=c, **lifecycle.initial(a, now)) for a, event, c in triggered]
    fields = [f for f in Execution._meta.concrete_fields if not f.primary_key]
    rows = [[f.get_db_prep_save(f.pre_save(e, True), connection) for f in fields] for e in executions]
    quote = connection.ops.quote_name
    row = f"({', '.join(['%s'] * len(fields))})"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(Execution._meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
            f" VALUES {', '.join([row] * len(rows))} ON CONFLICT (automation_id, event_id) DO NOTHING RETURNING id, automation_id, event_id",
            [value for values in rows for value in values])
        created = {(automation_id, event_id): pk for pk, automation_id, event_id in cursor.fetchall()}
    out = []
    for execution in executions:
        pk = created.get((execution.automation_id, execution.event_id))
        if pk is not None:
            execution.pk = pk
            execution._state.adding, execution._state.db = False, connection.alias
            out.append(execution)
    return out


def create_execution(automation, event, context):
    """The new execution, or None when this event already triggered this automation."""
    try:
        with transaction.atomic():
            execution = Execution.objects.create(automation=automation, event=event, context=context, **lifecycle.initial(automation, timezone.now()))
    except IntegrityError:
        return None
    return execution


@metrics.delivery_task
def deliver_due(token=""):
    """A `deliver` nudge: claim and deliver due executions, several at a time (delivery.deliver_all),
    until none is left, or for BUDGET seconds; then make way for other tasks (nudging again if
    work is left)."""
    dispatch.started("deliver", token)
    # each execution once: one failing at once (a retry due at once) waits for the next task
    claimed, helped = [], [Conf.SYNC]  # in sync mode (tests) this one task delivers everything

    def claim(n):
        executions = lifecycle.claim_many(n, exclude=claimed)
        claimed.extend(e.pk for e in executions)
        if executions and not helped[0]:
            helped[0] = True
            if lifecycle.due_exists():
                dispatch.nudge("deliver")  # more than one task's work: let an idle worker help
        return executions

    delivered, out_of_time = deliver_all(claim, time.monotonic() + dispatch.BUDGET)
    if out_of_time and lifecycle.due_exists():
        dispatch.nudge("deliver")
    return len(delivered)


def sweep():
    """The periodic safety net (a django-q2 schedule, besides each worker's ticker): take back
    abandoned deliveries, nudge due and late work, prune old events."""
    dispatch.tick()
    return prune()


def prune():
    """Delete events older than RETENTION_DAYS with their executions and attempts, a batch per
    sweep. Kept: an event evaluated within that time (a late evaluation), or with an execution
    still to deliver or finished within it (a redelivery)."""
    if not settings.RETENTION_DAYS:
        return 0
    cutoff = timezone.now() - timedelta(days=settings.RETENTION_DAYS)
    live = Execution.objects.filter(lifecycle.unfinished() | Q(finished_at__gte=cutoff), event=OuterRef("pk"))
    expired = Event.objects.filter(created_at__lt=cutoff, evaluated_at__lt=cutoff).exclude(Exists(live))
    ids = list(expired.order_by("id").values_list("pk", flat=True)[:PRUNE_BATCH])
    if ids:
        with transaction.atomic():
            DeliveryAttempt.objects.filter(execution__event_id__in=ids).delete()
            Execution.objects.filter(event_id__in=ids).delete()
            Event.objects.filter(pk__in=ids).delete()
        logger.info("sweep: pruned %d events older than %d days with their executions", len(ids), settings.RETENTION_DAYS)
    return len(ids)
