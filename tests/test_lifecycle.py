"""Each transition of an execution (automations.lifecycle) and the nudges that hand work to the
task queue (automations.dispatch), on the real database."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from actions.models import Integration
from actions.transports import DeliveryResult
from automations import dispatch, lifecycle
from automations.models import DeliveryAttempt, Execution, Nudge
from automations.tasks import deliver_due, evaluate_event
from events.models import Event

from .engine import make_automation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def automation(team, project):
    hook = Integration.objects.create(team=team, kind="webhook", name="hook", url="http://127.0.0.1:9/")  # never sent to here
    return make_automation(team, "a", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"},
                           {"type": "WEBHOOK", "integration": hook.pk, "payload": {}})


def new_execution(automation, n=0, **fields):
    event = Event.objects.create(team=automation.team, type="CREATE_ARTIFACT", project=automation.project, evaluated_at=timezone.now())
    fields.setdefault("next_attempt_at", timezone.now() - timedelta(seconds=n))
    return Execution.objects.create(automation=automation, event=event, **fields)


def failure(retryable=True):
    return DeliveryResult(ok=False, error="HTTP 503", retryable=retryable)


def refreshed(execution):
    return Execution.objects.get(pk=execution.pk)


def test_due_and_stuck_are_one_definition(automation):
    due = new_execution(automation, n=1)
    now = timezone.now()
    later = new_execution(automation, next_attempt_at=now + timedelta(minutes=5))
    running = new_execution(automation, status="running", lease_until=now + timedelta(minutes=1))
    stuck = new_execution(automation, status="running", lease_until=now - timedelta(seconds=1))
    done = new_execution(automation, status="succeeded")
    assert list(Execution.objects.filter(lifecycle.due(now))) == [due]
    assert list(Execution.objects.filter(lifecycle.stuck(now))) == [stuck]
    assert {later, running, done}.isdisjoint(Execution.objects.filter(lifecycle.due(now) | lifecycle.stuck(now)))


def test_claim_takes_the_oldest_due_execution_and_starts_its_lease_then(automation):
    # queued for an hour: the lease starts when a worker takes it, not when it was queued
    old = new_execution(automation, n=3600)
    new = new_execution(automation, n=1)
    new_execution(automation, next_attempt_at=timezone.now() + timedelta(minutes=5))
    before = timezone.now()
    first = lifecycle.claim()
    assert first.pk == old.pk and first.status == "running" and first.lease_token and first.claimed_by == lifecycle.worker_id()
    assert first.lease_until >= before + lifecycle.lease()
    assert lifecycle.claim().pk == new.pk
    assert lifecycle.claim() is None  # the third is not due yet


def test_claim_passes_over_excluded_and_taken_executions(automation):
    one, two = new_execution(automation, n=2), new_execution(automation, n=1)
    assert lifecycle.claim(exclude=[one.pk]).pk == two.pk
    assert lifecycle.claim().pk == one.pk
    assert lifecycle.claim() is None


def test_a_claim_that_finds_nothing_costs_one_query(automation):
    new_execution(automation, status="running", lease_until=timezone.now() + timedelta(minutes=1))
    new_execution(automation, status="succeeded")
    with CaptureQueriesContext(connection) as queries:
        assert lifecycle.claim() is None
    assert len(queries) == 1


def test_a_duplicate_task_costs_a_query_or_two(automation):
    """A delivery task with nothing due: it says it started, and finds nothing. An evaluation
    task for an event already evaluated: one query, no lock."""
    new_execution(automation, status="succeeded")
    with CaptureQueriesContext(connection) as queries:
        assert deliver_due("a-token-no-longer-current") == 0
    assert len(queries) == 2, [q["sql"] for q in queries]
    event = Event.objects.create(team=automation.team, type="CREATE_ARTIFACT", project=automation.project, evaluated_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        assert evaluate_event(event.pk) == []
    assert len(queries) == 1, [q["sql"] for q in queries]


def test_a_batch_claims_the_executions_it_delivers_now_and_leaves_the_rest_due(automation, team):
    """evaluate_batch(ids, claim=n), as the evaluate task calls it: the first n executions the
    batch creates are claimed in its transaction (running, under one lease), the others stay
    due for the next claim, and a second claim of those taken finds nothing."""
    from automations.tasks import evaluate_batch

    events = [Event.objects.create(team=team, type="CREATE_ARTIFACT", project=automation.project, facts={"collection_type": "model"})
              for _ in range(3)]
    claimed, due = evaluate_batch([e.pk for e in events], claim=2)
    assert sorted(e.event_id for e in claimed) == [events[0].pk, events[1].pk]
    assert {e.status for e in claimed} == {"running"} and len({e.lease_token for e in claimed}) == 1
    assert [Execution.objects.get(pk=pk).event_id for pk in due] == [events[2].pk]
    assert Execution.objects.get(pk=due[0]).status == "pending"
    assert lifecycle.claim_due([e.pk for e in claimed]) == []
    assert not Event.objects.filter(evaluated_at__isnull=True).exists()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the writer lock is SQLite's")
def test_a_batch_takes_the_processs_writer_before_the_databases(automation, team):
    """On SQLite, delivery threads take lifecycle.writing() and then the database's write lock; a
    batch that claims must take them in that order too, or each waits for the other (the bench
    stalled for the 30 s busy timeout at each collision)."""
    import threading

    from automations.tasks import evaluate_batch

    event = Event.objects.create(team=team, type="CREATE_ARTIFACT", project=automation.project, facts={"collection_type": "model"})
    done = []
    with lifecycle.writing():  # a delivery thread holds the process's writer
        worker = threading.Thread(target=lambda: done.append(evaluate_batch([event.pk], claim=1)))
        worker.start()
        worker.join(0.5)
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 200")
        with transaction.atomic():  # the database's write lock is free: the batch waits for the writer
            Nudge.objects.create(kind="probe")
    worker.join(10)
    assert [len(claimed) for claimed, _ in done] == [1]


def test_start_attempt_numbers_and_counts_it_in_one_step(automation):
    new_execution(automation)
    execution = lifecycle.claim()
    first = lifecycle.start_attempt(execution)
    assert first.number == 1 and refreshed(execution).attempt_count == 1
    assert lifecycle.finish(execution, first, failure())
    Execution.objects.filter(pk=execution.pk).update(next_attempt_at=timezone.now())  # skip the retry delay
    execution = lifecycle.claim()
    assert lifecycle.start_attempt(execution).number == 2


def test_start_attempt_refuses_once_the_lease_is_lost(automation):
    new_execution(automation)
    execution = lifecycle.claim()
    Execution.objects.filter(pk=execution.pk).update(lease_token="someone-else")
    assert lifecycle.start_attempt(execution) is None
    assert refreshed(execution).attempt_count == 0 and not DeliveryAttempt.objects.exists()


def test_finish_succeeds_retries_or_fails(automation, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [60]  # two attempts in all
    new_execution(automation)
    execution = lifecycle.claim()
    attempt = lifecycle.start_attempt(execution)
    assert lifecycle.finish(execution, attempt, failure())
    retry = refreshed(execution)
    assert retry.status == "pending" and 54 <= (retry.next_attempt_at - timezone.now()).total_seconds() <= 66
    assert retry.lease_token == "" and retry.claimed_by == "" and retry.error == "HTTP 503"
    Execution.objects.filter(pk=execution.pk).update(next_attempt_at=timezone.now())
    execution = lifecycle.claim()
    assert lifecycle.finish(execution, lifecycle.start_attempt(execution), failure())
    assert refreshed(execution).status == "failed"  # the cap
    new_execution(automation)
    execution = lifecycle.claim()
    assert lifecycle.finish(execution, lifecycle.start_attempt(execution), failure(retryable=False))
    assert refreshed(execution).status == "failed" and refreshed(execution).attempt_count == 1
    new_execution(automation)
    execution = lifecycle.claim()
    assert lifecycle.finish(execution, lifecycle.start_attempt(execution), DeliveryResult(ok=True, status_code=200))
    done = refreshed(execution)
    assert done.status == "succeeded" and done.finished_at and done.next_attempt_at is None


def test_finish_by_a_worker_that_lost_its_lease_changes_nothing(automation):
    new_execution(automation)
    execution = lifecycle.claim()
    attempt = lifecycle.start_attempt(execution)
    Execution.objects.filter(pk=execution.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert lifecycle.recover_abandoned() == 1
    assert not lifecycle.finish(execution, attempt, DeliveryResult(ok=True, status_code=200))
    assert refreshed(execution).status == "pending"


def test_postpone_and_skip_release_the_lease(automation):
    new_execution(automation)
    new_execution(automation)
    later = timezone.now() + timedelta(seconds=30)
    first = lifecycle.claim()
    assert lifecycle.postpone(first, later)
    postponed = refreshed(first)
    assert (postponed.status, postponed.next_attempt_at, postponed.attempt_count, postponed.lease_token) == ("pending", later, 0, "")
    second = lifecycle.claim()
    assert lifecycle.skip(second, "the automation was disabled")
    assert refreshed(second).status == "skipped" and refreshed(second).finished_at


def test_recover_takes_back_only_expired_leases_and_marks_the_attempt(automation):
    new_execution(automation)
    new_execution(automation)
    dead, alive = lifecycle.claim(), lifecycle.claim()
    lifecycle.start_attempt(dead)
    Execution.objects.filter(pk=dead.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert lifecycle.recover_abandoned() == 1
    assert refreshed(dead).status == "pending" and refreshed(dead).next_attempt_at <= timezone.now()
    assert "the worker stopped during this attempt" in dead.attempts.get().error
    assert refreshed(alive).status == "running"


def test_a_worker_dying_during_every_send_ends_failed_at_the_cap(automation, settings):
    """The cap holds whatever happens: each attempt is abandoned mid-send, its lease runs out, and
    it is taken back; the last one is not delivered again."""
    settings.WEBHOOK_RETRY_SCHEDULE = [1, 1, 1]
    new_execution(automation)
    for number in range(1, 5):
        execution = lifecycle.claim()
        assert execution is not None, number
        assert lifecycle.start_attempt(execution).number == number
        Execution.objects.filter(pk=execution.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
        assert lifecycle.recover_abandoned() == 1
    assert lifecycle.claim() is None
    gave_up = refreshed(execution)
    assert gave_up.status == "failed" and gave_up.attempt_count == 4 and gave_up.finished_at
    assert gave_up.error.startswith("gave up after 4 attempts: the worker stopped during this attempt")
    assert [a.number for a in gave_up.attempts.all()] == [1, 2, 3, 4]
    assert all("worker stopped" in a.error for a in gave_up.attempts.all())


def test_hand_back_returns_only_what_the_stopping_worker_held(automation, monkeypatch):
    new_execution(automation)
    new_execution(automation)
    monkeypatch.setenv("TRIPLINE_WORKER_ID", "stopping")
    mine = lifecycle.claim()
    lifecycle.start_attempt(mine)
    monkeypatch.setenv("TRIPLINE_WORKER_ID", "staying")
    theirs = lifecycle.claim()
    assert lifecycle.hand_back("stopping") == 1
    assert refreshed(mine).status == "pending" and "it was stopped" in mine.attempts.get().error
    assert refreshed(theirs).status == "running"


def test_redeliver_starts_a_new_round_with_the_whole_cap(automation, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = []  # one attempt a round
    new_execution(automation)
    execution = lifecycle.claim()
    assert not lifecycle.redeliver(execution)  # being delivered
    lifecycle.finish(execution, lifecycle.start_attempt(execution), failure())
    assert refreshed(execution).status == "failed"
    assert lifecycle.redeliver(execution)
    again = lifecycle.claim()
    assert again.pk == execution.pk and again.round_start == 1
    assert lifecycle.start_attempt(again).number == 2


def test_a_test_execution_is_sent_once_and_never_delivered_again(automation):
    event = Event.objects.create(team=automation.team, type="CREATE_ARTIFACT", project=automation.project, sample=True, evaluated_at=timezone.now())
    test = lifecycle.start_test(automation, event)
    assert test.status == "running" and test.is_test and lifecycle.claim() is None  # never in the queue
    lifecycle.start_attempt(test)
    Execution.objects.filter(pk=test.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    lifecycle.recover_abandoned()  # its process died mid-send
    assert refreshed(test).status == "failed" and lifecycle.claim() is None
    no_op = make_automation(automation.team, "nothing to send", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"})
    assert lifecycle.start_test(no_op, event).status == "succeeded"


# --- nudges


@pytest.fixture
def enqueued(monkeypatch):
    """The tasks nudges enqueue, recorded instead of run (sync mode would run them at once)."""
    tasks = []
    monkeypatch.setattr(dispatch, "async_task", lambda func, token, **kw: tasks.append((func, token)))
    return tasks


def test_one_nudge_waits_in_the_queue_at_a_time(automation, enqueued):
    assert dispatch.nudge("deliver") and not dispatch.nudge("deliver") and not dispatch.nudge("deliver")
    assert dispatch.nudge("evaluate")  # each kind has its own
    [(func, token), _] = enqueued
    assert func == "automations.tasks.deliver_due"
    dispatch.started("deliver", "not-its-token")
    assert not dispatch.nudge("deliver")
    dispatch.started("deliver", token)
    assert dispatch.nudge("deliver") and len(enqueued) == 3


def test_a_lingering_task_stands_in_for_a_waiting_one_until_it_lets_go(automation, enqueued):
    assert dispatch.hold("evaluate", "lingering")
    assert not dispatch.wake("evaluate") and enqueued == []  # an event meanwhile: the lingering task finds it
    dispatch.started("evaluate", "lingering")
    assert dispatch.wake("evaluate") and len(enqueued) == 1
    assert not dispatch.hold("evaluate", "another")  # a task is waiting already: nothing to stand in for


def test_a_nudge_is_presumed_lost_after_a_while(automation, enqueued, monkeypatch):
    assert dispatch.nudge("deliver")
    monkeypatch.setattr(dispatch, "broker_idle", lambda: False)
    Nudge.objects.update(queued_at=timezone.now() - dispatch.NUDGE_GRACE - timedelta(seconds=1))
    assert not dispatch.nudge("deliver")  # the broker still holds tasks: it may be among them
    monkeypatch.setattr(dispatch, "broker_idle", lambda: True)
    assert dispatch.nudge("deliver")  # nothing left in the broker and still not started: lost
    monkeypatch.setattr(dispatch, "broker_idle", lambda: False)
    Nudge.objects.update(queued_at=timezone.now() - dispatch.NUDGE_LOST_AFTER - timedelta(seconds=1))
    assert dispatch.nudge("deliver")
    assert dispatch.nudge("deliver", force=True) and len(enqueued) == 4


def test_the_ticker_nudges_only_when_work_is_due_or_late(automation, enqueued):
    dispatch.tick()
    assert enqueued == []
    new_execution(automation, next_attempt_at=timezone.now() + timedelta(minutes=1))
    Event.objects.create(team=automation.team, type="CREATE_ARTIFACT", project=automation.project)  # unevaluated, not late
    dispatch.tick()
    assert enqueued == []
    new_execution(automation)
    Event.objects.update(created_at=timezone.now() - dispatch.LATE - timedelta(seconds=1))
    for _ in range(3):
        dispatch.tick()
    assert sorted(func for func, _ in enqueued) == ["automations.tasks.deliver_due", "automations.tasks.evaluate_pending"]
