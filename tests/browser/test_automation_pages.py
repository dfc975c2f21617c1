"""The executions pages, the automations hub, the admin's automation form and the account page,
used in a real headless Chromium as people do: signed in on the form, against gunicorn and the
real worker, with webhooks delivered to a receiver on loopback. Takes the README's screenshots
of these pages into docs/."""

import json
import re

import pytest
import requests

from tests.live import ROOT, LiveTripline, wait_for
from tests.receivers import Receiver

from .test_chromium import chromium, go, sign_in  # noqa: F401 (fixtures and helpers shared with the other page tests)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

DOCS = ROOT / "docs"
T = "/api/v1/teams/acme"
MANY = 55  # more than a page (50)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = LiveTripline(tmp_path_factory.mktemp("pages-b"), worker=True)
    server.manage("collectstatic", "--noinput", "-v", "0")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def world(live, receiver):
    """Project `many` with a NO_OP automation fired MANY times; project `hooked` with a webhook
    automation to the receiver, fired once; everything delivered before the tests start."""
    alice = live.session("alice")
    for name in ("many", "hooked", "built"):
        alice.post(f"{live.url}{T}/projects/", json={"name": name}).raise_for_status()
    hook = alice.post(f"{live.url}{T}/integrations/", json={"kind": "webhook", "name": "ci", "url": receiver.url + "/hook"})
    hook.raise_for_status()
    down = alice.post(f"{live.url}{T}/integrations/", json={"kind": "webhook", "name": "staging", "url": "http://127.0.0.1:9/hook"})
    down.raise_for_status()  # nothing listens there: its deliveries fail and wait for their retry
    for name, project, action in [
        ("count versions", "many", {"type": "NO_OP"}),
        ("notify ci", "hooked", {"type": "WEBHOOK", "integration": hook.json()["id"], "payload": {"v": "${artifact_version_string}"}}),
        ("notify staging", "hooked", {"type": "WEBHOOK", "integration": down.json()["id"], "payload": {"v": "${artifact_version_string}"}}),
    ]:
        made = alice.post(f"{live.url}{T}/automations/", json={"name": name, "scope": {"type": "project", "project": project},
                                                              "event": {"type": "CREATE_ARTIFACT"}, "action": action})
        assert made.status_code == 201, made.text
    bob = live.session("bob")
    for _ in range(MANY):
        bob.post(f"{live.url}{T}/projects/many/artifacts/", json={"name": "data", "type": "dataset"}).raise_for_status()
    bob.post(f"{live.url}{T}/projects/hooked/artifacts/", json={"name": "model", "type": "model"}).raise_for_status()

    def delivered():
        done = alice.get(f"{live.url}{T}/executions/", params={"status": "succeeded"}).json()
        retrying = alice.get(f"{live.url}{T}/executions/", params={"status": "pending"}).json()["results"]
        return done["count"] >= MANY + 1 and any(e["attempts"] for e in retrying)

    wait_for(delivered, timeout=120, message="the executions to be delivered")
    return {"integration": hook.json()["id"]}


def reload_by(browser, click):
    """Click something that loads a page (maybe the same URL again), and wait until it has."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    click()
    WebDriverWait(browser, 15).until(lambda _: _gone(old))


def _gone(element):
    """Whether the page holding the element has been replaced. Chromium reports a node of the
    page being torn down either as stale or, mid-navigation, as one that "does not belong to the
    document": both mean the old page is gone."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False


def clickable(browser, css):
    """The element, once it can be clicked (a loaded machine can be slow to lay a page out)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 15).until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, css)))


def text(browser, css):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, css).text


def shot(browser, name):
    DOCS.mkdir(exist_ok=True)
    browser.save_screenshot(str(DOCS / name))


def test_a_viewer_pages_through_the_executions_and_filters_them(live, chromium, world):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    sign_in(chromium, live, "vic")
    go(chromium, chromium.find_element(By.LINK_TEXT, "Executions").click, live.url + "/acme/executions/")
    assert f"Page 1 of 2 · {MANY + 2} in all" in text(chromium, "nav.pager")
    assert "retry at" in text(chromium, "#executions")
    first_page = [a.text for a in chromium.find_elements(By.CSS_SELECTOR, "#executions td:first-child a")]
    assert len(first_page) == 50
    shot(chromium, "executions.png")
    go(chromium, chromium.find_element(By.LINK_TEXT, "Older →").click, live.url + "/acme/executions/?page=2")
    second_page = [a.text for a in chromium.find_elements(By.CSS_SELECTOR, "#executions td:first-child a")]
    assert len(second_page) == MANY + 2 - 50 and not set(first_page) & set(second_page)

    Select(chromium.find_element(By.ID, "id_automation")).select_by_visible_text("notify ci")
    Select(chromium.find_element(By.ID, "id_status")).select_by_value("succeeded")
    chromium.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait_for(lambda: "status=succeeded" in chromium.current_url, timeout=15, message="the filtered page")
    rows = chromium.find_elements(By.CSS_SELECTOR, "#executions tr")[1:]
    assert len(rows) == 1 and "notify ci" in rows[0].text
    assert not chromium.find_elements(By.ID, "redeliver")  # a viewer: nothing to redeliver with


def test_a_member_redelivers_an_execution_after_confirming(live, chromium, world, receiver):
    from selenium.webdriver.common.by import By

    sign_in(chromium, live, "bob")
    chromium.get(live.url + "/acme/executions/?status=succeeded&event=CREATE_ARTIFACT&automation=" + str(_automation_id(live, "notify ci")))
    link = chromium.find_element(By.CSS_SELECTOR, "#executions td:first-child a")
    execution_url = link.get_attribute("href")
    go(chromium, link.click, execution_url)
    assert "Nothing: it is done." in text(chromium, "#next")
    delivery_id = re.search(r"msg_\w+", chromium.find_element(By.TAG_NAME, "main").text).group(0)
    before = len(receiver.requests)
    go(chromium, chromium.find_element(By.ID, "redeliver").click, execution_url + "redeliver/")
    assert delivery_id in chromium.find_element(By.TAG_NAME, "main").text
    assert len(receiver.requests) == before  # asking sends nothing
    go(chromium, chromium.find_element(By.ID, "confirm-redeliver").click, execution_url)
    assert "Queued for redelivery." in chromium.find_element(By.TAG_NAME, "main").text
    wait_for(lambda: len(receiver.requests) > before, timeout=30, message="the redelivery")
    assert receiver.requests[-1]["headers"]["webhook-id"] == delivery_id  # the same message, again

    def two_attempts():
        chromium.refresh()
        return len(chromium.find_elements(By.CSS_SELECTOR, "#attempts tr")) == 3 and text(chromium, "#status") == "succeeded"

    wait_for(two_attempts, timeout=30, message="the execution page to show the second attempt")
    shot(chromium, "execution.png")


def _automation_id(live, name):
    automations = live.session("alice").get(f"{live.url}{T}/automations/").json()["results"]
    return next(a["id"] for a in automations if a["name"] == name)


def test_a_member_disables_and_enables_an_automation_in_the_hub(live, chromium, world):
    from selenium.webdriver.common.by import By

    sign_in(chromium, live, "bob")
    go(chromium, chromium.find_element(By.LINK_TEXT, "Automations").click, live.url + "/acme/automations/")
    pk = _automation_id(live, "count versions")
    row = f'tr[data-automation="{pk}"]'
    assert text(chromium, f"{row} td.enabled").startswith("yes")
    shot(chromium, "hub.png")
    reload_by(chromium, clickable(chromium, f"{row} button.toggle").click)
    assert chromium.current_url == live.url + "/acme/automations/"
    assert "count versions is disabled." in chromium.find_element(By.TAG_NAME, "main").text
    assert text(chromium, f"{row} td.enabled").startswith("no") and text(chromium, f"{row} button.toggle") == "Enable"
    assert live.session("vic").get(f"{live.url}{T}/automations/{pk}/").json()["enabled"] is False

    chromium.find_element(By.ID, "id_q").send_keys("count")
    chromium.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait_for(lambda: "q=count" in chromium.current_url, timeout=15, message="the search")
    filtered = chromium.current_url
    assert len(chromium.find_elements(By.CSS_SELECTOR, "#automations tr[data-automation]")) == 1
    reload_by(chromium, clickable(chromium, f"{row} button.toggle").click)
    assert chromium.current_url == filtered  # back to the same filtered view
    assert text(chromium, f"{row} td.enabled").startswith("yes")
    assert live.session("vic").get(f"{live.url}{T}/automations/{pk}/").json()["enabled"] is True


def test_a_member_builds_a_webhook_automation_in_the_admin_and_it_fires(live, chromium, world, receiver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    sign_in(chromium, live, "bob")
    chromium.get(live.url + "/admin/automations/automation/add/")
    Select(chromium.find_element(By.ID, "id_team")).select_by_visible_text("acme")
    chromium.find_element(By.ID, "id_name").send_keys("built hook")
    Select(chromium.find_element(By.ID, "id_scope_type")).select_by_value("project")
    Select(chromium.find_element(By.ID, "id_project")).select_by_visible_text("acme/built")
    Select(chromium.find_element(By.ID, "id_event_type")).select_by_value("CREATE_ARTIFACT")
    Select(chromium.find_element(By.ID, "id_action_type")).select_by_value("WEBHOOK")

    def shown(name):
        return chromium.find_element(By.CSS_SELECTOR, f".form-row.field-{name}").is_displayed()

    # only the chosen kinds' fields show
    assert shown("collection_type") and not shown("alias_regex") and not shown("metric")
    assert shown("payload") and shown("integration") and not shown("title") and not shown("registry")
    registry_only = chromium.find_element(By.CSS_SELECTOR, "#id_event_type option[value=LINK_ARTIFACT]")
    assert not registry_only.is_enabled()  # a project scope cannot watch links to a registry

    Select(chromium.find_element(By.ID, "id_integration")).select_by_visible_text("ci (webhook)")
    payload = chromium.find_element(By.ID, "id_payload")
    payload.send_keys('{"version": "${artifact_version_string}", "oops": "${not_a_variable}"}')
    chromium.find_element(By.ID, "preview-button").click()
    wait_for(lambda: "Unknown variables" in text(chromium, "#action-preview"), timeout=15, message="the preview's error")
    reload_by(chromium, chromium.find_element(By.NAME, "_save").click)
    assert "Unknown variables: ${not_a_variable}" in text(chromium, ".field-payload .errorlist")

    payload = chromium.find_element(By.ID, "id_payload")
    payload.clear()
    payload.send_keys('{"version": "${artifact_version_string}", "by": "${event_author}"}')
    chromium.find_element(By.ID, "preview-button").click()
    wait_for(lambda: '"version": "acme/built/' in text(chromium, "#action-preview"), timeout=15, message="the preview")
    chromium.execute_script("document.querySelector('.field-payload').scrollIntoView()")
    shot(chromium, "admin-automation.png")
    go(chromium, chromium.find_element(By.NAME, "_save").click, live.url + "/admin/automations/automation/")
    assert "was added successfully" in text(chromium, ".messagelist")

    before = len(receiver.requests)
    live.session("bob").post(f"{live.url}{T}/projects/built/artifacts/", json={"name": "weights", "type": "model"}).raise_for_status()
    wait_for(lambda: len(receiver.requests) > before, timeout=60, message="the new automation to fire")
    body = json.loads(receiver.requests[-1]["body"])
    assert body == {"version": "acme/built/weights:v0", "by": "bob"}

    # Send test, on the saved automation's change page
    go(chromium, chromium.find_element(By.LINK_TEXT, "built hook").click,
       live.url + f"/admin/automations/automation/{_automation_id(live, 'built hook')}/change/")
    before = len(receiver.requests)
    reload_by(chromium, chromium.find_element(By.ID, "send-test").click)
    assert "Test of built hook: succeeded." in text(chromium, ".messagelist")
    assert len(receiver.requests) == before + 1 and json.loads(receiver.requests[-1]["body"])["by"] == "bob"
    go(chromium, chromium.find_element(By.LINK_TEXT, "Open the execution").click, chromium.find_element(
        By.LINK_TEXT, "Open the execution").get_attribute("href"))
    assert "test" in text(chromium, "h1") and "Nothing: a test is sent once" in text(chromium, "#next")


def test_the_integration_form_shows_the_fields_of_its_kind(live, chromium, world):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    sign_in(chromium, live, "alice")
    chromium.get(live.url + "/admin/actions/integration/add/")

    def shown(name):
        return chromium.find_element(By.CSS_SELECTOR, f".form-row.field-{name}").is_displayed()

    Select(chromium.find_element(By.ID, "id_kind")).select_by_value("slack")
    assert shown("channel") and shown("token_secret") and not shown("url") and not shown("secret")
    Select(chromium.find_element(By.ID, "id_kind")).select_by_value("webhook")
    assert shown("url") and shown("access_token_secret") and not shown("channel") and not shown("token_secret")
    chromium.get(live.url + f"/admin/actions/integration/{world['integration']}/change/")
    assert shown("url") and not shown("channel")


def test_a_user_regenerates_their_token_and_uses_it(live, chromium, world):
    from selenium.webdriver.common.by import By

    old = live.tokens["vic"]
    sign_in(chromium, live, "vic")
    go(chromium, chromium.find_element(By.LINK_TEXT, "Account").click, live.url + "/accounts/")
    assert text(chromium, "#token") == old
    go(chromium, chromium.find_element(By.ID, "regenerate").click, live.url + "/accounts/token/")
    go(chromium, chromium.find_element(By.ID, "confirm-regenerate").click, live.url + "/accounts/")
    new = text(chromium, "#token")
    assert new != old and "the old one no longer works" in chromium.find_element(By.TAG_NAME, "main").text
    curl = text(chromium, "#snippet-curl")
    assert curl == f'curl -H "Authorization: Token {new}" {live.url}/api/v1/me/'
    assert f"export MLFLOW_TRACKING_URI={live.url}/mlflow/acme" in text(chromium, "#snippet-mlflow-1")
    me = requests.get(f"{live.url}/api/v1/me/", headers={"Authorization": f"Token {new}"}, timeout=10)
    assert me.status_code == 200 and me.json()["username"] == "vic"
    assert requests.get(f"{live.url}/api/v1/me/", headers={"Authorization": f"Token {old}"}, timeout=10).status_code == 401
    live.tokens["vic"] = new
    shot(chromium, "account.png")
