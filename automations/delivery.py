"""Delivering an execution a worker has claimed (automations.lifecycle): send it once through
its action's transport, record the attempt, and let the lifecycle decide what comes next.
Retries are scheduled by time (`next_attempt_at`), never slept on.

`deliver_all` sends many at once: up to DELIVERY_THREADS threads in the task's process, each
claiming its next execution when it is done with one, so one slow receiver holds one thread and
never the rest; each thread keeps its own keep-alive connections (actions.http)."""

import logging
import os
import random
import threading
import time
from collections import deque
from concurrent.futures import Future
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone
from django_q.conf import Conf

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


def deliver_all(claim, until):
    """Deliver what `claim(n)` hands out (a list of at most n claimed executions; [] when there is
    no more) until it hands out nothing or the monotonic time `until` has passed. Up to
    DELIVERY_THREADS at a time (one, in the calling thread, with synchronous tasks: tests).
    Executions are claimed a thread-count at a time, when the last claimed has been taken up, so
    a claimed execution waits at most one attempt for a free thread: well within its lease. Helpers
    are added as claims bring work, so a single execution costs no other thread; they run on the
    process's delivery threads (`helpers`), kept between tasks.

    Returns (executions delivered, whether time ran out with work perhaps left)."""
    limit = 1 if Conf.SYNC else max(1, settings.DELIVERY_THREADS)
    lock, claiming = threading.Lock(), threading.Lock()
    ready, delivered, out_of_time, started, finished = [], [], [], [], []

    def take():
        """The next execution to deliver: a claimed one waiting, or a new claim; None when done."""
        while True:
            with lock:
                if ready:
                    return ready.pop(0)
                if finished:
                    return None
            with claiming:  # one thread claims for all
                with lock:
                    if ready or finished:
                        continue
                if time.monotonic() >= until:
                    out_of_time.append(True)
                    claimed = []
                else:
                    claimed = claim(limit)
                with lock:
                    ready.extend(claimed)
                    if not claimed:
                        finished.append(True)
                    elif limit > 1:
                        for _ in range(min(limit - 1 - len(started), len(claimed) - 1)):
                            started.append(helpers(limit - 1).submit(run))

    def work():
        while (execution := take()) is not None:
            deliver(execution)
            with lock:
                delivered.append(execution)

    def run():
        try:
            close_old_connections()  # one kept from an earlier task: dropped if it broke or is too old
            work()
        except Exception:  # a database error: what it claimed is taken back once the lease runs out
            logger.exception("a delivery thread stopped")
        finally:
            close_old_connections()  # kept for the next task while CONN_MAX_AGE allows (SQLite: closed)

    try:
        work()  # the calling thread delivers too
    finally:
        for helper in every(started, lock):
            helper.result()
    return delivered, bool(out_of_time)


HELPER_IDLE = 60  # seconds a delivery thread waits for work before it closes its database connections and ends
_helpers = {}  # {(process id, how many): its delivery threads}


def helpers(count):
    """This process's delivery threads, up to `count` of them, kept between tasks with their
    database connections and their receivers' keep-alive sessions. Started anew for each task, each
    thread connected anew: 81 new PostgreSQL sessions in bench row 1's 20 s, and connecting was
    5.8 % of the worker's samples (py-spy). Kept until the process exited, idle threads held their
    connections as long: 2 task processes x 16 threads are 32 PostgreSQL sessions per worker
    machine doing nothing, and four such machines pass the default `max_connections` (100). So a
    thread that has had no work for HELPER_IDLE seconds (60) closes its connections and ends; the
    next burst starts threads again as it needs them."""
    key = (os.getpid(), count)  # a forked process starts its own
    if key not in _helpers:
        _helpers[key] = Helpers(count)
    return _helpers[key]


class Helpers:
    """Up to `count` threads taking jobs from a queue. A submit starts a thread only when there are
    more jobs waiting than idle threads to take them, and fewer than `count` threads; a thread idle
    for HELPER_IDLE seconds closes its database connections and ends. (A ThreadPoolExecutor keeps
    its threads, and their connections, until the process exits.)"""

    def __init__(self, count):
        self.count = count
        self.lock = threading.Lock()
        self.woken = threading.Condition(self.lock)
        self.jobs = deque()  # (future, fn) not taken up yet
        self.threads = 0  # started and not ending
        self.idle = 0  # of those, the ones waiting for a job
        self.ended = []  # threads that have ended but may still be alive: joined before another starts
        self.named = 0  # threads started, to number their names

    def submit(self, fn):
        """Run `fn()` on one of the threads; returns its Future."""
        future = Future()
        with self.lock:
            self.jobs.append((future, fn))
            start = len(self.jobs) > self.idle and self.threads < self.count
            if start:
                self.threads += 1
                self.named += 1
                name, ended, self.ended = f"tripline-deliver_{self.named}", self.ended, []
            self.woken.notify()
        if start:
            for thread in ended:  # it only has to return: never more than `count` alive at once
                thread.join()
            # a daemon: an idle one would otherwise hold up the process's exit for HELPER_IDLE
            threading.Thread(target=self.serve, name=name, daemon=True).start()
        return future

    def serve(self):
        while True:
            with self.lock:
                self.idle += 1
                self.woken.wait_for(lambda: self.jobs, HELPER_IDLE)
                self.idle -= 1
                job = self.jobs.popleft() if self.jobs else None
            if job is None:
                connections.close_all()  # this thread's: PostgreSQL ends their sessions
                with self.lock:
                    # a job submitted meanwhile started no thread if `count` were running, this one
                    # included: take it up (reconnecting) rather than leave it waiting
                    if not self.jobs:
                        self.threads -= 1
                        self.ended.append(threading.current_thread())
                        return
                    job = self.jobs.popleft()
            run_job(*job)


def run_job(future, fn):
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn()
    except BaseException as exc:
        future.set_exception(exc)
        future = None  # the exception's traceback holds this frame, which held the future holding it
    else:
        future.set_result(result)


def every(items, lock):
    """Every item of `items`, including those appended while the earlier ones are handled."""
    seen = 0
    while True:
        with lock:
            if seen >= len(items):
                return
            item = items[seen]
        seen += 1
        yield item


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


USE_RECORDED_EVERY = 1.0  # seconds: an integration's last use is written at most this often by a process, unless its error changes
_uses, _uses_lock = {}, threading.Lock()


def record_use(integration, result):
    """Note the integration's last use and error. A fan-out sends through one integration many
    times a second: its row is written when the error changes, and otherwise once a second at most
    by each process (every write to one row waits for the others)."""
    now = timezone.now()
    error = "" if result.ok else result.error
    with _uses_lock:
        seen = _uses.get(integration.pk)
        if seen and seen[1] == error and time.monotonic() - seen[0] < USE_RECORDED_EVERY and not result.disable_integration:
            return
        _uses[integration.pk] = (time.monotonic(), error)
    integration.last_used_at = now
    integration.last_error = error
    with lifecycle.writing():
        integration.save(update_fields=["last_used_at", "last_error"])
    if result.disable_integration:
        integration.disable(f"the receiver answered 410 Gone at {now:%Y-%m-%d %H:%M} UTC")
