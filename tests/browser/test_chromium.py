"""Pages in a real headless Chromium, against the real server."""

import shutil

import pytest

from tests.live import LiveTripline

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = LiveTripline(tmp_path_factory.mktemp("browser"), worker=False).start()
    server.manage("shell", "-c", "from django.contrib.auth.models import User; User.objects.filter(username='alice').update(is_staff=True, is_superuser=True)")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(live, tmp_path_factory):
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail("chromium and chromedriver are needed: `make test` installs them (Debian packages)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1600", f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    log_in(driver, live)
    yield driver
    driver.quit()


def log_in(browser, live):
    from selenium.webdriver.common.by import By

    browser.get(live.url + "/admin/login/?next=/")
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys("alice-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 15).until(lambda b: "/admin/login/" not in b.current_url)


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
    assert len(points) == 50
    line = figure.find_element(By.CSS_SELECTOR, "line.threshold")
    assert line.is_displayed() and "loss under 0.05" in figure.text
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
