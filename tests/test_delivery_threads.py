"""The process's delivery threads (automations.delivery.helpers): started as work comes, and an
idle one closes its database connections and ends, so an idle worker holds no PostgreSQL session."""

import os
import random
import threading
import time
from types import SimpleNamespace

import pytest
from django.db import connection, connections

from automations import delivery

pytestmark = pytest.mark.django_db(transaction=True)  # a helper thread's connection is a real, separate one

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")


def eventually(predicate, within=10):
    """Poll `predicate` until it is true or `within` seconds have passed; returns its last value."""
    deadline = time.monotonic() + within
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def delivery_threads():
    return {t for t in threading.enumerate() if t.name.startswith("tripline-deliver")}


def scalar(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def sessions():
    return scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")


@pytest.fixture
def pools(monkeypatch):
    """This process's pools start empty; the threads the test started have ended when it is done
    (a thread still connected would keep the test database from being dropped)."""
    monkeypatch.setattr(delivery, "_helpers", {})
    before = delivery_threads()
    yield
    assert eventually(lambda: not (delivery_threads() - before)), "a delivery thread did not end"


def test_an_idle_thread_closes_its_connection_and_ends(pools, monkeypatch):
    monkeypatch.setattr(delivery, "HELPER_IDLE", 0.3)
    before = sessions() if ON_POSTGRES else None
    connected, release, seen = threading.Event(), threading.Event(), {}

    def job():
        seen["thread"] = threading.current_thread()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            if ON_POSTGRES:
                cursor.execute("SELECT pg_backend_pid()")
                seen["pid"] = cursor.fetchone()[0]
        connected.set()
        assert release.wait(10)

    future = delivery.helpers(2).submit(job)
    assert connected.wait(10)
    if ON_POSTGRES:
        assert sessions() == before + 1
    release.set()
    future.result(timeout=10)

    assert eventually(lambda: not seen["thread"].is_alive())
    assert seen["thread"].name.startswith("tripline-deliver")
    if ON_POSTGRES:
        assert eventually(lambda: scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [seen["pid"]]) == 0)
        assert eventually(lambda: sessions() == before)


def test_every_job_runs_once_while_threads_end_all_the_time(pools, monkeypatch):
    monkeypatch.setattr(delivery, "HELPER_IDLE", 0.001)
    pool, count, before = delivery.helpers(3), 3, delivery_threads()
    lock, ran, ran_on, alive = threading.Lock(), [], set(), []

    def job(n):
        with lock:
            ran.append(n)
            ran_on.add(threading.current_thread())
            alive.append(len(delivery_threads() - before))
        if n % 7 == 0:
            time.sleep(0.003)  # the others meanwhile: more threads, or idle ones ending
        return n

    futures, futures_lock = {}, threading.Lock()

    def submitter(first):
        rng = random.Random(first)
        for n in range(first, first + 50):
            future = pool.submit(lambda n=n: job(n))
            with futures_lock:
                futures[n] = future
            time.sleep(rng.choice([0, 0, 0.002, 0.004, 0.008]))  # bursts, and pauses past HELPER_IDLE

    submitters = [threading.Thread(target=submitter, args=(first,)) for first in range(0, 200, 50)]
    for t in submitters:
        t.start()
    for t in submitters:
        t.join()

    assert [futures[n].result(timeout=10) for n in range(200)] == list(range(200))
    assert sorted(ran) == list(range(200))  # each once
    assert max(alive) <= count
    assert len(ran_on) > count  # threads ended and others started (some 60 in 0.2 s here)


def test_a_job_submitted_as_the_thread_times_out_runs(pools, monkeypatch):
    """One submitter, waiting for each job: a job stranded by a thread that ends under it would
    wait for good, since no later submit comes to start another."""
    monkeypatch.setattr(delivery, "HELPER_IDLE", 0.002)
    pool, rng = delivery.helpers(1), random.Random(1)
    for n in range(300):
        assert pool.submit(lambda n=n: n).result(timeout=10) == n
        time.sleep(rng.uniform(0.0015, 0.0035))  # around HELPER_IDLE


def test_a_job_submitted_while_the_thread_closes_its_connections_runs(pools, monkeypatch):
    monkeypatch.setattr(delivery, "HELPER_IDLE", 0.05)
    closing, go = threading.Event(), threading.Event()

    def close_all():
        closing.set()
        assert go.wait(10)
        connections.close_all()

    monkeypatch.setattr(delivery, "connections", SimpleNamespace(close_all=close_all))
    pool = delivery.helpers(1)
    first = pool.submit(threading.current_thread).result(timeout=10)
    assert closing.wait(10)  # it has idled out and is on its way to end: one thread, so no other starts
    late = pool.submit(threading.current_thread)
    go.set()
    assert late.result(timeout=10) is first


def test_a_job_that_raises_hands_its_exception_to_the_future_and_the_thread_goes_on(pools, monkeypatch):
    monkeypatch.setattr(delivery, "HELPER_IDLE", 0.3)
    pool, failing, raised, ran_on = delivery.helpers(1), threading.Event(), ValueError("receiver gone"), []

    def fail():
        ran_on.append(threading.current_thread())
        assert failing.wait(10)
        raise raised

    failed = pool.submit(fail)
    then = pool.submit(threading.current_thread)  # queued behind the failing job: the one thread takes it next
    failing.set()

    with pytest.raises(ValueError) as caught:
        failed.result(timeout=10)
    assert caught.value is raised
    assert then.result(timeout=10) is ran_on[0]
    assert ran_on[0].name.startswith("tripline-deliver")
