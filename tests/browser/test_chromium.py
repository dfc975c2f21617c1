"""Pages in a real headless Chromium, against the real server. People sign in by typing into the
login form, as they do; none of them is staff."""

import shutil

import pytest

from tests.live import LiveTripline

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ROLES = {"alice": "admin", "bob": "member", "vic": "viewer"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = LiveTripline(tmp_path_factory.mktemp("browser"), worker=False)
    server.manage("collectstatic", "--noinput", "-v", "0")  # served by WhiteNoise, as in production
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chromium(live, tmp_path_factory):
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail("chromium and chromedriver are needed: `make test` installs them (Debian packages)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    # Any request off loopback goes to a closed port: the pages must need nothing from outside.
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1600", "--proxy-server=http://127.0.0.1:9",
                 "--proxy-bypass-list=127.0.0.1", f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def sign_in(browser, live, username, path="/login/"):
    """Open `path` signed out, and sign in on the login form it leads to."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.delete_all_cookies()
    browser.get(live.url + path)
    assert "/login/" in browser.current_url
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(f"{username}-password")
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    WebDriverWait(browser, 15).until(lambda b: "/login/" not in b.current_url)


def sign_out_button(browser):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.XPATH, "//form[@action='/logout/']//button[normalize-space()='Sign out']")


def go(browser, click, url):
    """Click something that loads `url`, and wait until it has."""
    from selenium.webdriver.support.ui import WebDriverWait

    click()
    WebDriverWait(browser, 15).until(lambda b: b.current_url == url)


@pytest.fixture
def browser(live, chromium):
    """Chromium signed in as alice, the team's admin."""
    sign_in(chromium, live, "alice")
    return chromium


@pytest.mark.parametrize("username", ROLES)
def test_every_role_signs_in_on_the_form_and_signs_out(live, chromium, username):
    from selenium.webdriver.common.by import By

    sign_in(chromium, live, username)
    assert chromium.current_url == live.url + "/acme/"  # one team: its page
    header = chromium.find_element(By.TAG_NAME, "header").text
    assert username in header and "Admin" in header
    assert f"You are {ROLES[username]}." in chromium.find_element(By.TAG_NAME, "main").text

    go(chromium, chromium.find_element(By.LINK_TEXT, "Admin").click, live.url + "/admin/")
    assert "Automations" in chromium.find_element(By.ID, "content").text
    go(chromium, sign_out_button(chromium).click, live.url + "/login/")
    chromium.get(live.url + "/acme/")
    assert chromium.current_url == live.url + "/login/?next=/acme/"


def test_signing_in_from_a_page_returns_to_it(live, chromium):
    sign_in(chromium, live, "vic", path="/acme/automations/")
    assert chromium.current_url == live.url + "/acme/automations/"
    sign_in(chromium, live, "bob", path="/admin/automations/automation/")  # the admin's login sends to the same form
    assert chromium.current_url == live.url + "/admin/automations/automation/"
    go(chromium, sign_out_button(chromium).click, live.url + "/login/")


def test_a_member_builds_an_automation_in_the_admin_form(live, chromium):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    live.session("alice").post(f"{live.url}/api/v1/teams/acme/projects/", json={"name": "built"}).raise_for_status()
    sign_in(chromium, live, "bob")
    go(chromium, chromium.find_element(By.LINK_TEXT, "Automations").click, live.url + "/acme/automations/")
    go(chromium, chromium.find_element(By.LINK_TEXT, "New automation").click, live.url + "/admin/automations/automation/add/")
    Select(chromium.find_element(By.ID, "id_team")).select_by_visible_text("acme")
    chromium.find_element(By.ID, "id_name").send_keys("promote to prod")
    Select(chromium.find_element(By.ID, "id_scope_type")).select_by_value("project")
    Select(chromium.find_element(By.ID, "id_project")).select_by_visible_text("acme/built")
    Select(chromium.find_element(By.ID, "id_event_type")).select_by_value("ADD_ARTIFACT_ALIAS")
    chromium.find_element(By.ID, "id_alias_regex").send_keys("^prod$")
    Select(chromium.find_element(By.ID, "id_action_type")).select_by_value("NO_OP")
    go(chromium, chromium.find_element(By.NAME, "_save").click, live.url + "/admin/automations/automation/")
    assert "was added successfully" in chromium.find_element(By.CSS_SELECTOR, ".messagelist").text
    automations = live.session("bob").get(f"{live.url}/api/v1/teams/acme/automations/").json()["results"]
    built = next(a for a in automations if a["name"] == "promote to prod")
    assert built["scope"] == {"type": "project", "project": "built"}
    assert built["event"] == {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^prod$"}


def test_a_viewer_reads_the_admin_without_changing_it(live, chromium):
    from selenium.webdriver.common.by import By

    sign_in(chromium, live, "vic")
    chromium.get(live.url + "/admin/automations/automation/add/")
    assert "403" in chromium.title or "Forbidden" in chromium.page_source
    chromium.get(live.url + "/admin/")
    assert "Automations" in chromium.find_element(By.ID, "content").text
    assert not chromium.find_elements(By.CSS_SELECTOR, "a.addlink")


def test_the_api_docs_work_offline(live, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live.url + "/api/docs/")
    title = WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"))
    assert "Tripline API" in title[0].text
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(live.url) for url in loaded), loaded


def test_the_run_page_shows_a_chart_with_the_threshold_line(live, browser, tmp_path):
    from selenium.webdriver.common.by import By

    bob = live.session("bob")
    base = f"{live.url}/api/v1/teams/acme"
    bob.post(f"{base}/projects/", json={"name": "charts"})
    bob.post(f"{base}/projects/charts/runs/", json={"id": "r1", "name": "chart run"})
    bob.post(f"{base}/projects/charts/runs/r1/history/", json={"rows": [{"step": i, "metrics": {"loss": 1 / (i + 1)}} for i in range(50)]})
    bob.post(f"{base}/automations/", json={"name": "loss under 0.05", "scope": {"type": "project", "project": "charts"},
                                           "event": {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": 0.05},
                                           "action": {"type": "NO_OP"}})
    browser.get(live.url + "/acme/projects/charts/runs/r1/")
    figure = browser.find_element(By.CSS_SELECTOR, 'figure[data-metric="loss"]')
    points = figure.find_element(By.TAG_NAME, "polyline").get_attribute("points").split()
    assert len(points) == 50  # the chart for pages read without JavaScript
    assert figure.find_element(By.CSS_SELECTOR, "canvas").is_displayed()  # uPlot's, drawn over it
    thresholds = browser.execute_script("return JSON.parse(arguments[0].querySelector('script').textContent).thresholds", figure)
    assert thresholds == [{"value": 0.05, "label": "loss under 0.05"}]
    assert sign_out_button(browser).is_displayed()
    browser.save_screenshot(str(tmp_path / "run.png"))


def test_the_automation_form_shows_only_the_fields_of_the_chosen_event(live, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(live.url + "/admin/automations/automation/add/")

    def visible(name):
        return browser.find_element(By.CSS_SELECTOR, f".form-row.field-{name}").is_displayed()

    Select(browser.find_element(By.ID, "id_event_type")).select_by_value("RUN_METRIC_THRESHOLD")
    assert visible("metric") and visible("cmp") and visible("run_name_regex")
    assert not visible("alias_regex") and not visible("change_amount")
    Select(browser.find_element(By.ID, "id_event_type")).select_by_value("ADD_ARTIFACT_TAG")
    assert visible("tag_regex") and not visible("metric")
    Select(browser.find_element(By.ID, "id_action_type")).select_by_value("WEBHOOK")
    assert visible("payload") and visible("integration") and not visible("severity")
    Select(browser.find_element(By.ID, "id_scope_type")).select_by_value("registry")
    assert visible("registry") and not visible("project")
