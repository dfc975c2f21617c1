"""Webhooks honour the proxy settings of the worker's environment, as requests does — and a
session reads them only when there are any (actions.http.environment_settings): looking at
every environment variable on every send found nothing on most installs, at some 6 % of a
fan-out's CPU."""

import threading

import pytest

from actions import http

from .receivers import Receiver

PROXY_VARIABLES = ["http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                   "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC"]


@pytest.fixture
def bare_environment(monkeypatch, tmp_path):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    return monkeypatch


@pytest.fixture
def receivers():
    made = [Receiver(), Receiver()]
    yield made
    for r in made:
        r.close()


def send_from_a_new_thread(url):
    """http.post from a thread of its own: a new thread makes a new session, as a delivery
    thread of a worker started in this environment would."""
    got = {}
    thread = threading.Thread(target=lambda: got.update(answer=http.post(url, b'{"a": 1}', {"Content-Type": "application/json"})))
    thread.start()
    thread.join(10)
    return got["answer"]


def test_with_no_proxy_in_the_environment_a_webhook_goes_straight_to_its_receiver(bare_environment, receivers):
    target, _ = receivers
    assert not http.environment_settings()
    assert send_from_a_new_thread(target.url + "/hook").status_code == 200
    assert [r["path"] for r in target.requests] == ["/hook"]


def test_a_proxy_in_the_environment_carries_the_webhooks_and_no_proxy_exempts_a_host(bare_environment, receivers):
    target, proxy = receivers
    bare_environment.setenv("HTTP_PROXY", proxy.url)
    assert http.environment_settings()
    assert send_from_a_new_thread(target.url + "/hook").status_code == 200
    assert target.requests == [] and [r["path"] for r in proxy.requests] == [target.url + "/hook"]  # the absolute form, to the proxy

    bare_environment.setenv("NO_PROXY", "127.0.0.1")
    assert send_from_a_new_thread(target.url + "/hook").status_code == 200
    assert [r["path"] for r in target.requests] == ["/hook"] and len(proxy.requests) == 1


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "all_proxy", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC"])
def test_any_setting_requests_reads_from_the_environment_is_read(bare_environment, variable):
    bare_environment.setenv(variable, "http://127.0.0.1:9" if "proxy" in variable.lower() else "/nonexistent")
    assert http.environment_settings() and http.session().trust_env


def test_a_netrc_file_is_read(bare_environment, tmp_path):
    assert not http.session().trust_env
    (tmp_path / ".netrc").write_text("machine example.com login a password b\n")
    assert http.session().trust_env
