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


class KeepAliveReceiver:
    """HTTP/1.1 on loopback: answers `body` (length-delimited, or chunked) and notes the client
    address (so the connection) of each request."""

    def __init__(self, body=b"ok", chunked=False):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.clients = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.clients.append(self.client_address)
                self.send_response(200)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("chunked", [False, True])
def test_sends_from_one_thread_reuse_the_connection_to_a_receiver(settings, chunked):
    from actions import http

    settings.WEBHOOK_TIMEOUT = (0.5, 1)
    receiver = KeepAliveReceiver(b"ok", chunked=chunked)
    try:
        answers = [http.post(receiver.url, b"{}", {"Content-Type": "application/json"}) for _ in range(5)]
        assert [(a.status_code, bytes(a.content)) for a in answers] == [(200, b"ok")] * 5
        assert len(receiver.clients) == 5 and len(set(receiver.clients)) == 1  # one connection, kept alive
        other = []
        thread = threading.Thread(target=lambda: other.append(http.post(receiver.url, b"{}", {})))
        thread.start()
        thread.join()
        assert other[0].status_code == 200 and len(set(receiver.clients)) == 2  # another thread, its own connection
    finally:
        receiver.close()


def test_a_connection_whose_answer_was_cut_at_the_byte_limit_is_not_reused(settings):
    from actions import http

    settings.WEBHOOK_TIMEOUT = (0.5, 1)
    receiver = KeepAliveReceiver(b"x" * (RESPONSE_READ_LIMIT + 10_000))
    try:
        for _ in range(3):
            answer = http.post(receiver.url, b"{}", {})
            assert answer.truncated and len(answer.content) == RESPONSE_READ_LIMIT
        assert len(set(receiver.clients)) == 3  # the rest of each answer was never read: its connection was closed
    finally:
        receiver.close()


def test_a_changed_address_policy_takes_effect_on_a_kept_connection(settings):
    from actions import http
    from requests_hardened.ip_filter import InvalidIPAddress

    settings.WEBHOOK_TIMEOUT = (0.5, 1)
    receiver = KeepAliveReceiver()
    try:
        assert http.post(receiver.url, b"{}", {}).status_code == 200
        settings.WEBHOOK_ALLOW_PRIVATE_IPS = False
        with pytest.raises(InvalidIPAddress):
            http.post(receiver.url, b"{}", {})  # not through the connection kept from before
        assert len(receiver.clients) == 1
    finally:
        receiver.close()
