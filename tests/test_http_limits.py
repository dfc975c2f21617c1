"""A receiver cannot make a worker hold more than a small, fixed amount of its answer, nor hold
it past the attempt deadline: real deliveries and the integration test button alike."""

import threading
import time
import tracemalloc

import pytest

from actions.http import RESPONSE_READ_LIMIT
from automations.models import Execution

from .conftest import T
from .engine import fired, make_automation
from .receivers import ENDLESS, Receiver

pytestmark = pytest.mark.django_db(transaction=True)
DEADLINE = 1.5


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_TIMEOUT = (0.5, 1)  # the attempt deadline: 1.5 s
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hook(team, project, api, alice, receiver):
    created = api(alice).post(f"{T}/integrations/", {"kind": "webhook", "name": "endless", "url": receiver.url}, format="json")
    assert created.status_code == 201
    return created.json()


def send_threads():
    return [t for t in threading.enumerate() if t.name == "tripline-send"]


def measured(call):
    """(result, seconds, peak bytes allocated) of `call()`."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = call()
        return result, time.monotonic() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def create_version(client):
    return client.post("/api/v1/teams/acme/projects/vision/artifacts/", {"name": "m", "type": "model"}, format="json")


@pytest.mark.parametrize("pause", [0, 0.05], ids=["64 KiB chunks as fast as they go", "256 bytes every 50 ms"])
def test_an_endless_answer_ends_the_attempt_by_the_deadline_in_bounded_memory(team, project, api, bob, receiver, hook, pause):
    automation = make_automation(team, "hook", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"},
                                 {"type": "WEBHOOK", "integration": hook["id"], "payload": {"v": "${artifact_version_string}"}})
    _, _, ordinary = measured(lambda: create_version(api(bob)))  # the same path, with a plain "ok" answer
    receiver.answer(200, ENDLESS, drip=pause)
    _, seconds, peak = measured(lambda: create_version(api(bob)))
    execution = fired(automation)[1]
    attempt = execution.attempts.get()
    assert execution.status == "succeeded" and attempt.status_code == 200  # the status is the answer; the body is cut
    assert len(attempt.response_body) == 1024
    assert attempt.duration_ms <= DEADLINE * 1000 + 200 and seconds < DEADLINE + 3
    # the receiver never stops sending: the worker held a fixed amount of it at most, and hung up
    assert peak - ordinary < 4 * RESPONSE_READ_LIMIT, f"{peak - ordinary:,} bytes more than for a plain answer"
    time.sleep(0.5)
    assert receiver.endless_stopped is not None  # the connection was dropped...
    assert send_threads() == []  # ...and nothing still reads it in the background


@pytest.mark.parametrize("pause", [0, 0.05], ids=["64 KiB chunks as fast as they go", "256 bytes every 50 ms"])
def test_the_integration_test_button_reads_an_endless_answer_within_the_limits(team, api, alice, receiver, hook, pause):
    _, _, ordinary = measured(lambda: api(alice).post(f"{T}/integrations/{hook['id']}/test/", {}, format="json"))
    receiver.answer(200, ENDLESS, drip=pause)
    response, seconds, peak = measured(lambda: api(alice).post(f"{T}/integrations/{hook['id']}/test/", {}, format="json"))
    outcome = response.json()
    assert outcome["ok"] is True and outcome["status_code"] == 200 and len(outcome["response_body"]) == 1024
    assert outcome["duration_ms"] <= DEADLINE * 1000 + 200 and seconds < DEADLINE + 3
    assert peak - ordinary < 4 * RESPONSE_READ_LIMIT, f"{peak - ordinary:,} bytes more than for a plain answer"
    time.sleep(0.5)
    assert send_threads() == [] and not Execution.objects.exists()


def test_a_receiver_silent_past_the_deadline_fails_the_attempt_and_is_retried(team, project, api, bob, receiver, hook, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [60]
    receiver.answer(200, b"too late", delay=DEADLINE + 1)
    automation = make_automation(team, "hook", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"},
                                 {"type": "WEBHOOK", "integration": hook["id"], "payload": {}})
    api(bob).post("/api/v1/teams/acme/projects/vision/artifacts/", {"name": "m", "type": "model"}, format="json")
    [execution] = fired(automation)
    assert execution.status == "pending" and "Timeout" in execution.error
    assert execution.attempts.get().duration_ms <= DEADLINE * 1000 + 200
