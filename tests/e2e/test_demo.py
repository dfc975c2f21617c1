"""`make run`'s demo shows deliveries at first start: the demo's automations, loaded by
`load_demo` and run by the real worker, deliver real webhooks over loopback to Tripline's own demo
receiver (one succeeds, one answers 500 and retries) and a Slack message that fails with a clear
error. Slack here is a closed port on loopback: no network, as on a laptop offline."""

import re

import pytest
import requests

from tests.live import LiveTripline, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    server = LiveTripline(tmp_path_factory.mktemp("demo"), env={"DEMO_RECEIVER": "true", "DEMO_PASSWORD": "demo-password",
                                                                 "SLACK_API_URL": "http://127.0.0.1:9/api/"})
    server.start()
    server.manage("load_demo", "--site", server.url)
    token = re.search(r"Generated token (\w+)", server.manage("drf_create_token", "admin").stdout).group(1)
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token}"
    yield server, api
    server.stop()


def latest(api, url):
    return {e["automation_name"]: e for e in reversed(api.get(url + "/api/v1/teams/demo/executions/", timeout=10).json()["results"])}


def test_the_demo_delivers_one_webhook_retries_one_and_shows_a_clear_slack_error(demo):
    live, api = demo

    def settled():
        seen = latest(api, live.url)
        wanted = ["promoted to production: deploy", "best model: evaluate", "run failed: tell #ml-alerts"]
        return seen if all(seen.get(n, {}).get("attempts", 0) >= 1 and seen[n]["status"] != "running" for n in wanted) else None

    seen = wait_for(settled, timeout=90, message="the demo's executions to be attempted")
    ok, failing, slack = seen["promoted to production: deploy"], seen["best model: evaluate"], seen["run failed: tell #ml-alerts"]
    assert ok["status"] == "succeeded" and ok["attempts"] == 1 and not ok["error"]
    assert failing["status"] in ("pending", "running") and failing["error"] == "HTTP 500"
    assert slack["status"] in ("pending", "running", "failed") and "Connection refused" in slack["error"]
    assert "Traceback" not in slack["error"] and len(slack["error"]) < 300

    detail = api.get(f"{live.url}/api/v1/teams/demo/executions/{ok['id']}/", timeout=10).json()
    assert f'"webhook_id": "{ok["delivery_id"]}"' in detail["attempts"][0]["response_body"]  # the receiver got it, signed
    failed_once = api.get(f"{live.url}/api/v1/teams/demo/executions/{failing['id']}/", timeout=10).json()
    assert "fails on purpose" in failed_once["attempts"][0]["response_body"]
    assert failing["next_attempt_at"] or failed_once["status"] == "running"

    # the executions page, signed in on the form with the password load_demo was given
    browser = requests.Session()
    form = browser.get(live.url + "/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    browser.post(live.url + "/login/", data={"username": "admin", "password": "demo-password", "csrfmiddlewaretoken": csrf}, timeout=10)
    page = browser.get(live.url + "/demo/executions/", timeout=10).text
    assert "status-succeeded" in page and "HTTP 500" in page and "Connection refused" in page


def test_loading_the_demo_again_points_its_webhooks_at_the_new_address(demo):
    live, api = demo
    out = live.manage("load_demo", "--site", "http://127.0.0.1:1").stdout
    assert "already loaded" in out
    hooks = {i["name"]: i for i in api.get(live.url + "/api/v1/teams/demo/integrations/", timeout=10).json()["results"]}
    assert hooks["demo-receiver"]["url"] == "http://127.0.0.1:1/_demo/receiver/200/"
    live.manage("load_demo", "--site", live.url)
