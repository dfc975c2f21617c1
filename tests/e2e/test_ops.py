"""/healthz and /metrics over HTTP against gunicorn and `manage.py worker`."""

import signal

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.live import LiveTripline, free_port, wait_for
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e
TEAM_WORDS = ("acme", "ops-project", "ops-hook", "ops-automation", "alice", "bob", "ops-model")


def scrape(live, **headers):
    response = requests.get(f"{live.url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def samples(text):
    """{(name, sorted labels): value} from a Prometheus exposition, parsed by prometheus_client."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def value(parsed, name, **labels):
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


def assert_no_team_data(text):
    for word in TEAM_WORDS:
        assert word not in text


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = LiveTripline(tmp_path_factory.mktemp("ops"), env={"WORKER_HEARTBEAT_TIMEOUT": "8"}).start()
    yield server
    server.stop()


def test_healthz_is_ok_with_a_worker_without_credentials(live):
    response = wait_for(lambda: (r := requests.get(f"{live.url}/healthz", timeout=10)).status_code == 200 and r, timeout=20, message="healthy")
    assert response.json() == {"database": "ok", "broker": "ok", "worker": "ok"}
    assert "no-cache" in response.headers["Cache-Control"] or "no-store" in response.headers["Cache-Control"]
    assert requests.post(f"{live.url}/healthz", timeout=10).status_code in (403, 405)  # the CSRF check or the method


def test_metrics_move_when_an_event_is_delivered_and_name_no_team(live):
    receiver = Receiver()
    try:
        alice, bob = live.session("alice"), live.session("bob")
        base = f"{live.url}/api/v1/teams/acme"
        assert bob.post(f"{base}/projects/", json={"name": "ops-project"}).status_code == 201
        assert alice.post(f"{base}/integrations/", json={"kind": "webhook", "name": "ops-hook", "url": receiver.url}).status_code == 201
        assert bob.post(f"{base}/automations/", json={
            "name": "ops-automation", "scope": {"type": "project", "project": "ops-project"}, "event": {"type": "CREATE_ARTIFACT"},
            "action": {"type": "WEBHOOK", "integration": "ops-hook", "payload": {"v": "${artifact_version_string}"}},
        }).status_code == 201
        before = samples(scrape(live))
        assert bob.post(f"{base}/projects/ops-project/artifacts/", json={"name": "ops-model", "type": "model"}).status_code == 201
        wait_for(lambda: receiver.requests, timeout=30, message="the webhook")

        def moved(s):  # a task is counted when it ends: an evaluate task lingers a second for more events first
            return (value(s, "tripline_deliveries_total", action="WEBHOOK", outcome="succeeded")
                    > value(before, "tripline_deliveries_total", action="WEBHOOK", outcome="succeeded")
                    and value(s, "tripline_delivery_tasks_total", claimed="true") > value(before, "tripline_delivery_tasks_total", claimed="true"))

        after = wait_for(lambda: (s := samples(scrape(live))) and moved(s) and s, timeout=20, message="metrics")
    finally:
        receiver.close()
    assert value(after, "tripline_events_stored_total") >= value(before, "tripline_events_stored_total") + 1
    assert value(after, "tripline_evaluation_seconds_count") >= value(before, "tripline_evaluation_seconds_count") + 1
    assert value(after, "tripline_delivery_tasks_total", claimed="true") >= value(before, "tripline_delivery_tasks_total", claimed="true") + 1
    assert value(after, "tripline_delivery_attempt_seconds_count", action="WEBHOOK") == value(before, "tripline_delivery_attempt_seconds_count", action="WEBHOOK") + 1
    assert value(after, "tripline_delivery_latency_seconds_count", action="WEBHOOK") == value(before, "tripline_delivery_latency_seconds_count", action="WEBHOOK") + 1
    assert value(after, "tripline_delivery_latency_seconds_sum", action="WEBHOOK") > 0
    for gauge in ("tripline_evaluation_lag_seconds", "tripline_oldest_pending_execution_age_seconds", "tripline_worker_heartbeat_age_seconds"):
        assert (gauge, ()) in after
    assert value(after, "tripline_workers_alive") == 1  # one worker, beating every 2 s (a quarter of the timeout)
    assert ("tripline_executions", (("status", "pending"),)) in after
    assert ("tripline_broker_queued_tasks", ()) in after
    assert_no_team_data(scrape(live))
    assert_no_team_data(requests.get(f"{live.url}/healthz", timeout=10).text)


def test_queue_gauges_show_an_event_left_unevaluated(live):
    """With the worker stopped, an event waits: the lag gauge grows, and /healthz names the
    worker once its heartbeat is older than WORKER_HEARTBEAT_TIMEOUT."""
    bob = live.session("bob")
    live.kill("worker", signal.SIGKILL)
    try:
        assert bob.post(f"{live.url}/api/v1/teams/acme/projects/", json={"name": "ops-lag"}).status_code == 201
        assert bob.post(f"{live.url}/api/v1/teams/acme/projects/ops-lag/runs/", json={"id": "r1"}).status_code == 201  # a RUN_STATE event
        lagging = wait_for(lambda: (s := samples(scrape(live))) and value(s, "tripline_evaluation_lag_seconds") >= 1 and s, timeout=20, message="lag")
        assert value(lagging, "tripline_broker_queued_tasks") >= 0
        down = wait_for(lambda: (r := requests.get(f"{live.url}/healthz", timeout=10)).status_code == 503 and [r], timeout=30, message="503")[0]
        assert down.json() == {"database": "ok", "broker": "ok", "worker": "down"}
        assert value(samples(scrape(live)), "tripline_workers_alive") == 0
    finally:
        live.start_worker()
    wait_for(lambda: requests.get(f"{live.url}/healthz", timeout=10).status_code == 200, timeout=30, message="healthy again")
    wait_for(lambda: value(samples(scrape(live)), "tripline_evaluation_lag_seconds") == 0, timeout=30, message="the event evaluated")


def test_without_a_worker_and_a_broker_healthz_names_them_then_the_database(tmp_path):
    """No worker ever started and a broker that refuses connections (Redis on a closed port);
    then the database made unreachable: 503 naming each, never a 500."""
    live = LiveTripline(tmp_path, worker=False, env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "METRICS_TOKEN": "scrape-token"}).start()
    try:
        response = requests.get(f"{live.url}/healthz", timeout=10)
        assert response.status_code == 503
        assert response.json() == {"database": "ok", "broker": "down", "worker": "down"}
        # the token setting: refused without it or with another one, served with it
        assert requests.get(f"{live.url}/metrics", timeout=10).status_code == 401
        for wrong in ("Bearer nope", "Bearer scrape-token-and-more", "Basic scrape-token", "scrape-token"):
            assert requests.get(f"{live.url}/metrics", headers={"Authorization": wrong}, timeout=10).status_code == 401, wrong
        text = scrape(live, Authorization="Bearer scrape-token")
        assert ("tripline_broker_queued_tasks", ()) not in samples(text)  # unreachable: left out, not made up
        assert value(samples(text), "tripline_workers_alive") == 0
        make_database_unreachable(live)
        response = requests.get(f"{live.url}/healthz", timeout=10)
        assert response.status_code == 503
        assert response.json() == {"database": "down", "broker": "down", "worker": "unknown"}
        assert requests.get(f"{live.url}/metrics", headers={"Authorization": "Bearer scrape-token"}, timeout=10).status_code == 200
    finally:
        if live.pg_name:
            live._pg(f"ALTER DATABASE {live.pg_name} ALLOW_CONNECTIONS true")
        live.stop()


def make_database_unreachable(live):
    """PostgreSQL: refuse new connections (each request opens one); SQLite: the file is no
    longer a database."""
    if live.pg_name:
        live._pg(f"ALTER DATABASE {live.pg_name} ALLOW_CONNECTIONS false")
        live._pg(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{live.pg_name}'")
        return
    db = live.tmp_path / "live.sqlite3"
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    db.write_bytes(b"not a database " * 1000)


def test_metrics_are_refused_outside_the_allowed_networks(tmp_path):
    live = LiveTripline(tmp_path, worker=False, env={"METRICS_ALLOWED_IPS": "10.0.0.0/8,fd00::/8"}).start()
    try:
        response = requests.get(f"{live.url}/metrics", timeout=10)
        assert response.status_code == 403
        assert "tripline_" not in response.text
        assert requests.get(f"{live.url}/healthz", timeout=10).status_code == 503  # open to all, no worker
    finally:
        live.stop()


@pytest.mark.parametrize("name", ["healthz", "metrics", "Metrics"])
def test_the_operations_paths_cannot_be_team_names(live, name):
    response = live.session("bob").post(f"{live.url}/api/v1/teams/", json={"name": name})
    assert response.status_code == 400
    assert "reserved" in response.text
