"""RUN_STALLED through the real server and worker: a running run that stops logging is reported
once after its interval (not before), a run that logs again re-arms, a finished run never is.

The server counts one of the automation's `minutes` as one second (RUN_STALLED_MINUTE_SECONDS)
and its workers' sweep looks twice a second, so "4 minutes" of silence takes 4 seconds here."""

import json
import time
from datetime import datetime

import pytest

from tests.live import LiveTripline, wait_for
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e
MINUTES = 4  # seconds, on this server


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    env = {"RUN_STALLED_MINUTE_SECONDS": "1", "RUN_STALLED_SWEEP_SECONDS": "0.5"}
    server = LiveTripline(tmp_path_factory.mktemp("stalled"), env=env).start()
    yield server
    server.stop()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def watch(live, receiver, project):
    alice, bob = live.session("alice"), live.session("bob")
    base = f"{live.url}/api/v1/teams/acme"
    assert bob.post(f"{base}/projects/", json={"name": project}).status_code == 201
    assert alice.post(f"{base}/integrations/", json={"kind": "webhook", "name": f"{project}-hook", "url": receiver.url}).status_code == 201
    automation = bob.post(f"{base}/automations/", json={
        "name": f"{project} stalled",
        "scope": {"type": "project", "project": project},
        "event": {"type": "RUN_STALLED", "minutes": MINUTES, "run_filter": {"name_regex": "^train"}},
        "action": {"type": "WEBHOOK", "integration": f"{project}-hook",
                   "payload": {"run": "${run_id}", "name": "${run_name}", "last": "${last_activity}", "type": "${event_type}"}},
    })
    assert automation.status_code == 201, automation.text
    assert automation.json()["event"] == {"type": "RUN_STALLED", "minutes": MINUTES, "run_filter": {"name_regex": "^train"}}
    return bob, f"{base}/projects/{project}/runs/"


def log(bob, runs, run_id, step):
    response = bob.post(f"{runs}{run_id}/history/", json={"rows": [{"step": step, "metrics": {"loss": 1.0 / (step + 1)}}]})
    assert response.status_code == 201, response.text
    return time.time()


def reports(receiver, run_id):
    bodies = [json.loads(r["body"]) for r in list(receiver.requests)]
    return [body for body in bodies if body["run"] == run_id]


def parse(stamp):
    return datetime.fromisoformat(stamp).timestamp()


def test_a_silent_run_is_reported_once_after_its_interval_and_again_after_it_resumes(live, receiver):
    bob, runs = watch(live, receiver, "stall-a")
    assert bob.post(runs, json={"id": "r1", "name": "train-1"}).status_code == 201
    assert bob.post(runs, json={"id": "r2", "name": "eval-1"}).status_code == 201  # outside the run filter
    last = log(bob, runs, "r1", 0)
    log(bob, runs, "r2", 0)

    time.sleep(MINUTES - 1.5)
    assert reports(receiver, "r1") == [], "reported before the interval"
    first = wait_for(lambda: reports(receiver, "r1"), timeout=MINUTES + 20, message="the stalled run reported")
    assert time.time() - last >= MINUTES
    assert first[0]["name"] == "train-1" and first[0]["type"] == "RUN_STALLED"
    assert abs(parse(first[0]["last"]) - last) < 2  # the time of its last activity

    time.sleep(2 * MINUTES)  # silent for two more intervals: still one report
    assert len(reports(receiver, "r1")) == 1
    assert reports(receiver, "r2") == []

    resumed = log(bob, runs, "r1", 1)  # logs again: re-armed
    time.sleep(MINUTES - 1.5)
    assert len(reports(receiver, "r1")) == 1
    again = wait_for(lambda: reports(receiver, "r1")[1:], timeout=MINUTES + 20, message="the second silence reported")
    assert abs(parse(again[0]["last"]) - resumed) < 2
    time.sleep(MINUTES)
    assert len(reports(receiver, "r1")) == 2


def test_a_finished_run_is_never_reported(live, receiver):
    bob, runs = watch(live, receiver, "stall-b")
    assert bob.post(runs, json={"id": "done", "name": "train-done"}).status_code == 201
    assert bob.post(runs, json={"id": "live", "name": "train-live"}).status_code == 201
    log(bob, runs, "done", 0)
    log(bob, runs, "live", 0)
    response = bob.patch(f"{runs}done/", json={"state": "finished"})
    assert response.status_code == 200, response.text
    # the running one is reported (so the sweep did look at both), the finished one never
    wait_for(lambda: reports(receiver, "live"), timeout=MINUTES + 20, message="the running run reported")
    time.sleep(MINUTES)
    assert reports(receiver, "done") == []
    assert len(reports(receiver, "live")) == 1
