"""The life of an execution, in one place. Every change of an execution's status is one of the
transitions below, each a conditional update, so that of two workers racing only one wins.

    pending ──claim──▶ running ──finish──▶ succeeded │ failed │ skipped
       ▲                  │
       ├──────────────────┤ finish (a retryable failure, under the cap), postpone (Slack's pace),
       │                  │ recover (its worker died: the lease ran out), hand_back (its worker
       │                  │ is stopping) — or failed, once the attempts of the round are used up
    succeeded │ failed │ skipped ──redeliver──▶ pending (a new round of attempts)

The database is the queue. An execution is *due* when it is pending and its time has come, and
*stuck* when it is running past its lease. Delivery tasks carry no execution: each claims a due
one, and the lease starts at that moment, so an execution waits in the queue however long the
queue is and is never handed out twice. A task that finds nothing due returns after one query.
"""

import logging
import os
import random
import socket
import threading
import uuid
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from actions.http import attempt_deadline
from ops.compiled import Compiled

from .models import DeliveryAttempt, Execution, ExecutionStatus as S

logger = logging.getLogger("tripline.delivery")
CANDIDATES = 20  # due executions looked at per claim: racing workers move on to the next one
RECOVER_BATCH = 200
WORKER_LOST = "the worker stopped during this attempt; its outcome is unknown"


_writer = threading.RLock()


@contextmanager
def writing():
    """Around a write: SQLite has one writer at a time, and a connection that finds it taken
    sleeps in steps of up to 100 ms before it looks again, so the delivery threads of a process
    take turns here instead, without the sleeps. Other databases: nothing."""
    if connection.vendor == "sqlite":
        with _writer:
            yield
    else:
        yield


def due(now):
    return Q(status=S.PENDING, next_attempt_at__lte=now)


def stuck(now):
    return Q(status=S.RUNNING, lease_until__lt=now)


def unfinished():
    """Still to be delivered, or being delivered."""
    return Q(status__in=[S.PENDING, S.RUNNING])


def lease():
    """How long a worker holds an execution it claimed: one attempt's deadline and a margin for
    the work around it. An attempt never outlives its deadline (actions.http), so a lease runs out
    only when the worker died."""
    return timedelta(seconds=attempt_deadline() + settings.DELIVERY_LEASE_MARGIN)


def max_attempts():
    return len(settings.WEBHOOK_RETRY_SCHEDULE) + 1


def cap(execution):
    """The attempts one round may make: a test is sent once."""
    return 1 if execution.is_test else max_attempts()


def worker_id():
    """Who holds a lease: the `manage.py worker` whose cluster this process belongs to (it hands
    back what they hold when it stops), or this process."""
    return os.environ.get("TRIPLINE_WORKER_ID") or f"{socket.gethostname()}:{os.getpid()}"


def new_token():
    return uuid.uuid4().hex


def _claimed_fields(now):
    return {"status": S.RUNNING, "lease_until": now + lease(), "lease_token": new_token(), "claimed_by": worker_id(), "started_at": now}


def due_exists():
    return Execution.objects.filter(due(timezone.now())).exists()


def _due_ids(now, exclude, n):
    candidates = Execution.objects.filter(due(now)).exclude(pk__in=exclude).order_by("next_attempt_at", "id")
    return list(candidates.values_list("pk", flat=True)[:n])


def claim(exclude=()):
    """Take the longest-waiting due execution (but none of `exclude`); None when nothing is due
    (one query). Racing workers move on to the next of CANDIDATES."""
    now = timezone.now()
    claimed = claim_due(_due_ids(now, exclude, CANDIDATES), now, limit=1)
    return claimed[0] if claimed else None


def claim_many(n, exclude=()):
    """Take up to `n` of the longest-waiting due executions (but none of `exclude`) with one
    update; [] when nothing is due (one query)."""
    for _ in range(3):  # a racing worker took all those we looked at: look again
        now = timezone.now()
        pks = _due_ids(now, exclude, n)
        if not pks:
            return []
        claimed = claim_due(pks, now)
        if claimed:
            return claimed
    return []


def claim_due(pks, now=None, limit=None):
    """Take those of executions `pks` that are due, with one conditional update (at most `limit`
    of them: one by one while racing workers take them first) and one query to load them: the
    executions claimed. Claimed together, they share a lease token (`held` checks it with the
    id)."""
    now = now or timezone.now()
    pks = list(pks)
    fields = _claimed_fields(now)
    with writing():
        if limit is not None and limit < len(pks):
            won = []
            for pk in pks:
                if len(won) >= limit:
                    break
                if Execution.objects.filter(due(now), pk=pk).update(**fields):
                    won.append(pk)
            if not won:
                return []
            pks = won
        elif not Execution.objects.filter(due(now), pk__in=pks).update(**fields):
            return []
    mine = Execution.objects.filter(pk__in=pks, status=S.RUNNING, lease_token=fields["lease_token"])
    try:
        return _claimed_with(fields["lease_token"])  # those claimed together share the token
    except Exception:  # one of them cannot be loaded (e.g. its secrets cannot be decrypted): load them one by one
        pass
    claimed = []
    for pk in mine.values_list("pk", flat=True):
        try:
            claimed.append(load(pk))
        except Exception as exc:  # fail it visibly, never loop on it
            logger.error("execution %s could not be loaded: %s: %s", pk, type(exc).__name__, exc)
            give_up(Execution.objects.filter(pk=pk, lease_token=fields["lease_token"]), f"could not be delivered: {type(exc).__name__}: {exc}")
    return claimed


_claimed_with = Compiled(lambda token: load_many(Execution.objects.filter(status=S.RUNNING, lease_token=token)))


def load(pk):
    return load_many(Execution.objects.all()).get(pk=pk)


def load_many(queryset):
    return queryset.order_by("next_attempt_at", "id").select_related(
        "automation__team", "automation__integration__access_token_secret", "automation__integration__secret",
        "automation__integration__token_secret", "event__version__collection__team", "event__version__collection__project",
        "event__version__collection__registry", "event__run__project__team", "event__project", "event__registry", "event__actor",
    )


def initial(automation, now):
    """The state an execution starts in: due at once, or done already when there is nothing to
    send (an action kind that sends nothing, NO_OP)."""
    if not sends(automation):
        return {"status": S.SUCCEEDED, "started_at": now, "finished_at": now, "next_attempt_at": None, "request": {"action": automation.action_type}}
    return {"status": S.PENDING, "next_attempt_at": now}


def sends(automation):
    from .action_kinds import get

    return get(automation.action_type).sends


def start_test(automation, event):
    """A test of `automation`: an execution created already claimed by this process, so that it
    is sent here and now, once, and never waits in the queue (or done, for a NO_OP)."""
    now = timezone.now()
    fields = _claimed_fields(now) if sends(automation) else initial(automation, now)
    return load(Execution.objects.create(automation=automation, event=event, is_test=True, **fields).pk)


def held(execution):
    """The execution, while the worker that claimed it still holds it."""
    return Execution.objects.filter(pk=execution.pk, status=S.RUNNING, lease_token=execution.lease_token)


# The writes of every attempt (start_attempt, finish) in SQL built here rather than by the ORM:
# in a 1,000-webhook fan-out, Django compiling their four statements was a third of the worker's
# CPU (py-spy, bench row 2), and on SQLite it was spent holding the one writer's turn. On
# PostgreSQL each pair is one statement (the first write in a WITH), sent without a transaction
# around it: one round trip, where a transaction of two took four (BEGIN, two statements, COMMIT).
HELD = "id = %s AND status = %s AND lease_token = %s"  # held(), in SQL: its parameters are _held_params


def _held_params(execution):
    return [execution.pk, S.RUNNING, execution.lease_token]


def one_statement():
    """Whether two writes can be one statement: a data-modifying WITH (PostgreSQL)."""
    return connection.vendor == "postgresql"


def _columns(model, fields):
    """([quoted column], [value]) of `fields` {name: value}, each value adapted by its model field
    as the ORM adapts it for a write."""
    meta = model._meta
    columns = [connection.ops.quote_name(meta.get_field(name).column) for name in fields]
    return columns, [meta.get_field(name).get_db_prep_save(value, connection) for name, value in fields.items()]


def _update(model, fields, where, params):
    """(sql, params) of UPDATE `model`'s table SET `fields` WHERE `where`."""
    columns, values = _columns(model, fields)
    sets = ", ".join(f"{column} = %s" for column in columns)
    return f"UPDATE {connection.ops.quote_name(model._meta.db_table)} SET {sets} WHERE {where}", [*values, *params]


def _run_updates(updates):
    """Run the UPDATEs [(sql, params)] all or none; how many rows the last one changed."""
    if one_statement():
        sql = "".join(f"{'WITH' if i == 0 else ','} u{i} AS ({update}) " for i, (update, _) in enumerate(updates[:-1])) + updates[-1][0]
        with connection.cursor() as cursor:
            cursor.execute(sql, [value for _, params in updates for value in params])
            return cursor.rowcount
    with transaction.atomic(), connection.cursor() as cursor:
        for sql, params in updates:
            cursor.execute(sql, params)
        return cursor.rowcount


def _attempt_insert(attempt):
    """("INSERT INTO … (columns)", values) of a new attempt."""
    names = ("execution_id", "number", "started_at", "request", "response_body", "error")
    columns, values = _columns(DeliveryAttempt, {name: getattr(attempt, name) for name in names})
    return f"INSERT INTO {connection.ops.quote_name(DeliveryAttempt._meta.db_table)} ({', '.join(columns)})", values


@writing()
def start_attempt(execution):
    """Record the attempt about to be sent, numbered and counted together; None when the lease was
    lost, or the round has used its attempts (the execution then gives up)."""
    if execution.attempt_count - execution.round_start >= cap(execution):
        give_up(held(execution), f"gave up after {execution.attempt_count - execution.round_start} attempts")
        return None
    attempt = DeliveryAttempt(execution=execution, number=execution.attempt_count + 1, started_at=timezone.now())
    count = f"UPDATE {connection.ops.quote_name(Execution._meta.db_table)} SET attempt_count = attempt_count + 1 WHERE {HELD}"
    insert, values = _attempt_insert(attempt)
    placeholders = ", ".join(["%s"] * len(values))
    if one_statement():  # counted, and the attempt inserted only if it was
        sql = f"WITH counted AS ({count} RETURNING id) {insert} SELECT {placeholders} FROM counted RETURNING id"
        with connection.cursor() as cursor:
            cursor.execute(sql, [*_held_params(execution), *values])
            row = cursor.fetchone()
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(count, _held_params(execution))
            if not cursor.rowcount:
                return None
            cursor.execute(f"{insert} VALUES ({placeholders}) RETURNING id", values)
            row = cursor.fetchone()
    if row is None:
        return None
    attempt.pk = row[0]
    attempt._state.adding, attempt._state.db = False, connection.alias
    execution.attempt_count += 1
    return attempt


def retry_delay(attempts_made, retry_after=None):
    """Seconds before the next attempt: the schedule entry with ±10 % jitter, or Retry-After
    when the receiver asks for longer (capped at a day)."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    delay = schedule[max(0, min(attempts_made - 1, len(schedule) - 1))] * random.uniform(0.9, 1.1)
    if retry_after is not None:
        delay = max(delay, min(retry_after, 86400))
    return delay


def after_failure(execution, retryable, retry_after=None, now=None):
    """The fields of an execution whose attempt failed: pending again later, or failed for good
    when the failure is final or the round's attempts are used up."""
    now = now or timezone.now()
    made = execution.attempt_count - execution.round_start
    if retryable and made < cap(execution):
        delay = retry_delay(made, retry_after)
        return {"status": S.PENDING, "next_attempt_at": now + timedelta(seconds=delay)}
    return {"status": S.FAILED, "finished_at": now, "next_attempt_at": None}


RELEASED = {"lease_until": None, "lease_token": "", "claimed_by": ""}


@writing()
def finish(execution, attempt, result, retry=True):
    """Record the attempt's outcome and decide what comes next, but only while this worker still
    holds the execution: if its lease ran out and another worker took it over, that one decides.
    Returns whether it still held it."""
    now = timezone.now()
    updates = []
    if attempt is not None:
        outcome = ("duration_ms", "request", "status_code", "response_body", "error")
        for field in outcome:
            setattr(attempt, field, getattr(result, field))
        updates.append(_update(DeliveryAttempt, {field: getattr(attempt, field) for field in outcome}, "id = %s", [attempt.pk]))
    fields = {**RELEASED, "request": result.request or execution.request, "error": result.error}
    if result.ok:
        fields.update(status=S.SUCCEEDED, finished_at=now, next_attempt_at=None)
    else:
        fields.update(after_failure(execution, retry and result.retryable, result.retry_after, now))
    updates.append(_update(Execution, fields, HELD, _held_params(execution)))
    if not _run_updates(updates):
        logger.warning("execution %s: the lease ran out during attempt %s; another delivery decides", execution.pk, execution.attempt_count)
        return False
    for field, value in fields.items():
        setattr(execution, field, value)
    if fields["status"] == S.PENDING:
        logger.info("execution %s: attempt %s failed (%s); next at %s", execution.pk, execution.attempt_count, result.error, fields["next_attempt_at"])
    elif fields["status"] == S.FAILED:
        logger.warning("execution %s failed: %s", execution.pk, result.error)
    return True


def skip(execution, reason):
    return bool(held(execution).update(**RELEASED, status=S.SKIPPED, error=reason, finished_at=timezone.now(), next_attempt_at=None))


def postpone(execution, until):
    """Back in the queue until `until` without using an attempt (a Slack channel's pace)."""
    return bool(held(execution).update(**RELEASED, status=S.PENDING, next_attempt_at=until))


def give_up(queryset, reason):
    return bool(queryset.update(**RELEASED, status=S.FAILED, error=reason, finished_at=timezone.now(), next_attempt_at=None))


def _release_lost(queryset, why):
    """Take executions back from a worker that is gone: their unfinished attempt is marked, and
    they are due again at once (at least once: receivers deduplicate on webhook-id), or fail
    when the round has used its attempts. Returns how many were taken back."""
    taken = 0
    now = timezone.now()
    for execution in queryset.only("pk", "attempt_count", "round_start", "is_test", "lease_token")[:RECOVER_BATCH]:
        made = execution.attempt_count - execution.round_start
        mine = Execution.objects.filter(pk=execution.pk, status=S.RUNNING, lease_token=execution.lease_token)
        with transaction.atomic():
            if made >= cap(execution):
                done = give_up(mine, f"gave up after {made} attempt{'s' if made != 1 else ''}: {WORKER_LOST} ({why})")
            else:
                done = mine.update(**RELEASED, status=S.PENDING, next_attempt_at=now)
            if done:
                DeliveryAttempt.objects.filter(execution_id=execution.pk, duration_ms__isnull=True, error="").update(
                    error=f"{WORKER_LOST} ({why})"
                )
                taken += 1
    return taken


def recover_abandoned():
    """Executions whose worker died mid-delivery: the lease ran out."""
    taken = _release_lost(Execution.objects.filter(stuck(timezone.now())), "its lease ran out")
    if taken:
        logger.warning("took back %d executions whose worker died", taken)
    return taken


def hand_back(worker):
    """What a stopping worker held, for another worker to deliver now rather than after the lease."""
    taken = _release_lost(Execution.objects.filter(status=S.RUNNING, claimed_by=worker), "it was stopped")
    if taken:
        logger.warning("handed back %d executions", taken)
    return taken


def redeliver(execution):
    """Deliver again by hand, with the same delivery id, as a new round of attempts. False while
    it is being delivered, or when its action kind sends nothing (NO_OP)."""
    if not sends(execution.automation):
        return False
    return bool(
        Execution.objects.filter(pk=execution.pk).exclude(status=S.RUNNING).update(
            **RELEASED, status=S.PENDING, next_attempt_at=timezone.now(), finished_at=None, round_start=F("attempt_count")
        )
    )
