"""Charts, compare and the runs table in a real headless Chromium against the real server, used
as a person would: signed in on the form, hovering, dragging to zoom, ticking runs to compare,
clicking headings to sort and filling in the filter. The screenshots in docs/ come from here."""

import re
from pathlib import Path

import pytest

from .test_chromium import chromium, live, sign_in  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

DOCS = Path(__file__).resolve().parents[2] / "docs"
BIG = 100_000


def post_history(session, url, points, metric="loss", value=lambda i: 1 / (1 + i / 1000)):
    for start in range(0, points, 10_000):
        rows = [{"step": i, "metrics": {metric: value(i)}} for i in range(start, min(points, start + 10_000))]
        session.post(url, json={"rows": rows}).raise_for_status()


@pytest.fixture(scope="module")
def charts_project(live):
    bob = live.session("bob")
    base = f"{live.url}/api/v1/teams/acme"
    bob.post(f"{base}/projects/", json={"name": "charts"}).raise_for_status()
    bob.post(f"{base}/projects/charts/runs/", json={"id": "big", "name": "big run", "tags": ["gpu"], "config": {"lr": 0.1}}).raise_for_status()
    spike = 61_234
    post_history(bob, f"{base}/projects/charts/runs/big/history/", BIG, value=lambda i: 50.0 if i == spike else 1 / (1 + i / 1000))
    for run_id, name, tags, lr in [("a1", "baseline", ["cpu"], 0.01), ("b2", "wider", ["gpu"], 0.03), ("c3", "deeper", ["gpu"], 0.02)]:
        bob.post(f"{base}/projects/charts/runs/", json={"id": run_id, "name": name, "tags": tags, "config": {"lr": lr}}).raise_for_status()
        post_history(bob, f"{base}/projects/charts/runs/{run_id}/history/", 500, value=lambda i, lr=lr: 1 / (1 + i * lr))
    bob.patch(f"{base}/projects/charts/runs/a1/", json={"state": "finished"}).raise_for_status()
    bob.post(f"{base}/automations/", json={"name": "loss under 0.05", "scope": {"type": "project", "project": "charts"},
                                           "event": {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": 0.05},
                                           "action": {"type": "NO_OP"}}).raise_for_status()
    return {"spike": spike, "url": f"{live.url}/acme/projects/charts/"}


def wait(browser, predicate, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(lambda b: predicate(b))


def figure_data(browser, metric="loss"):
    return browser.execute_script(
        "const f = document.querySelector(`figure[data-metric='${arguments[0]}']`); return Object.assign({}, f.dataset)", metric)


def test_a_100000_point_run_charts_hovers_zooms_and_resets(live, chromium, charts_project):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    sign_in(chromium, live, "vic", path="/acme/projects/charts/runs/big/")  # a viewer reads charts
    wait(chromium, lambda b: b.execute_script("return document.body.dataset.chartsDrawn") == "1")
    figure = chromium.find_element(By.CSS_SELECTOR, 'figure[data-metric="loss"]')
    assert figure.find_element(By.CSS_SELECTOR, "canvas").is_displayed()
    assert not figure.find_element(By.CSS_SELECTOR, "svg.fallback").is_displayed()  # the no-JavaScript chart gives way
    assert "100000 points, drawn as each bucket's min and max" in figure.text
    drawn = figure_data(chromium)
    assert drawn["range"] == "all" and 1000 < int(drawn["points"]) <= 2000
    spec_max = chromium.execute_script("return Math.max(...JSON.parse(arguments[0].querySelector('script').textContent).series[0].value)", figure)
    assert spec_max == 50.0  # the one-point spike survives the downsampling

    over = figure.find_element(By.CSS_SELECTOR, ".u-over")
    width = over.size["width"]
    ActionChains(chromium).move_to_element_with_offset(over, int(width * 0.1) - width // 2, 0).perform()
    readout = figure.find_element(By.CSS_SELECTOR, ".readout")
    wait(chromium, lambda b: readout.text.startswith("step "))
    step = int(readout.text.split()[1])
    assert 5_000 < step < 15_000 and "loss " in readout.text

    # drag across about 0.6 % of the x-axis: a few hundred steps, fetched again point by point
    x0 = int(width * 0.6) - width // 2
    ActionChains(chromium).move_to_element_with_offset(over, x0, 0).click_and_hold().move_by_offset(6, 0).release().perform()
    wait(chromium, lambda b: figure_data(b).get("fetches") == "1")
    zoomed = figure_data(chromium)
    low, high = map(int, zoomed["range"].split("-"))
    assert 55_000 < low < high < 65_000 and high - low < 2_000
    assert zoomed["downsampled"] == "false" and int(zoomed["points"]) == high - low + 1  # full resolution
    ActionChains(chromium).double_click(over).perform()
    wait(chromium, lambda b: figure_data(b).get("range") == "all")
    assert int(figure_data(chromium)["points"]) == int(drawn["points"])

    # log scale, relative time and smoothing redraw the chart, and the readout follows
    chromium.find_element(By.NAME, "log").click()
    Select(chromium.find_element(By.NAME, "x")).select_by_value("relative")
    wait(chromium, lambda b: figure.get_attribute("data-x") == "relative")  # times fetched, a new plot drawn
    over = figure.find_element(By.CSS_SELECTOR, ".u-over")
    ActionChains(chromium).move_to_element_with_offset(over, 0, 0).perform()
    wait(chromium, lambda b: readout.text.startswith("relative time "))
    assert re.match(r"relative time (\d+h\d\dm|\d+m\d\ds|[\d.]+s) · loss ", readout.text), readout.text  # since the first point
    Select(chromium.find_element(By.NAME, "x")).select_by_value("time")
    wait(chromium, lambda b: figure.get_attribute("data-x") == "time")
    ActionChains(chromium).move_to_element_with_offset(figure.find_element(By.CSS_SELECTOR, ".u-over"), 0, 0).perform()
    wait(chromium, lambda b: readout.text.startswith("time (UTC) 20"))
    Select(chromium.find_element(By.NAME, "x")).select_by_value("step")
    wait(chromium, lambda b: figure.get_attribute("data-x") == "step")
    chromium.find_element(By.NAME, "log").click()
    chromium.execute_script("const s = document.querySelector('input[name=smooth]'); s.value = '0.9';"
                            "s.dispatchEvent(new Event('input', {bubbles: true}))")
    assert chromium.find_element(By.NAME, "smooth_out").get_attribute("value") == "0.9"
    over = figure.find_element(By.CSS_SELECTOR, ".u-over")
    ActionChains(chromium).move_to_element_with_offset(over, int(width * 0.3) - width // 2, 0).perform()
    wait(chromium, lambda b: readout.text.startswith("step "))
    chromium.execute_script("window.scrollTo(0, 0)")
    DOCS.mkdir(exist_ok=True)
    chromium.save_screenshot(str(DOCS / "run-charts.png"))


FIRED = """
from automations.models import Automation, Execution
from events.models import Event
from tracking.models import Run
run = Run.objects.get(run_id="big", project__name="charts")
automation = Automation.objects.get(name="loss under 0.05")
event = Event.objects.create(team=automation.team, type="RUN_HISTORY", project=run.project, run=run,
                             facts={"keys": ["loss"], "first_step": 89000, "last_step": 90000})
execution = Execution.objects.create(automation=automation, event=event, context={"metric_value": 0.0111}, status="succeeded")
print("EXECUTION", execution.pk)
"""


def test_where_an_automation_fired_is_marked_and_opens_the_execution(live, chromium, charts_project):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    execution = int(live.manage("shell", "-c", FIRED).stdout.split("EXECUTION", 1)[1])
    sign_in(chromium, live, "bob", path="/acme/projects/charts/runs/big/")
    wait(chromium, lambda b: b.execute_script("return document.body.dataset.chartsDrawn") == "1")
    figure = chromium.find_element(By.CSS_SELECTOR, 'figure[data-metric="loss"]')
    assert figure.find_element(By.CSS_SELECTOR, "a.firing").text == "loss under 0.05 at step 90000"
    over = figure.find_element(By.CSS_SELECTOR, ".u-over")
    # the mark's place on the plot, from the chart's own scales
    left, top = chromium.execute_script("const u = arguments[0].uplot; return [u.valToPos(90000, 'x'), u.valToPos(0.0111, 'y')]", figure)
    size = over.size  # (a loss near its lowest sits on the plot's bottom edge: point just inside it)
    at = (round(left - size["width"] / 2), round(min(top, size["height"] - 4) - size["height"] / 2))
    ActionChains(chromium).move_to_element_with_offset(over, *at).perform()
    readout = figure.find_element(By.CSS_SELECTOR, ".readout")
    wait(chromium, lambda b: "fired: loss under 0.05" in readout.text)
    ActionChains(chromium).move_to_element_with_offset(over, *at).click().perform()
    wait(chromium, lambda b: b.current_url == f"{live.url}/acme/executions/{execution}/")


def test_two_runs_are_compared_from_the_table(live, chromium, charts_project):
    from selenium.webdriver.common.by import By

    sign_in(chromium, live, "bob", path="/acme/projects/charts/")
    chromium.find_element(By.CSS_SELECTOR, 'input[aria-label="compare a1"]').click()
    chromium.find_element(By.CSS_SELECTOR, 'input[aria-label="compare c3"]').click()
    chromium.find_element(By.ID, "compare-button").click()
    wait(chromium, lambda b: "/compare/" in b.current_url)
    assert chromium.current_url == charts_project["url"] + "compare/?runs=c3&runs=a1"  # in the order of the table
    wait(chromium, lambda b: b.execute_script("return document.body.dataset.chartsDrawn") == "1")
    legend = chromium.find_element(By.CSS_SELECTOR, 'figure[data-metric="loss"] .u-legend').text
    assert "baseline" in legend and "deeper" in legend and "wider" not in legend
    assert chromium.execute_script("return document.querySelector(\"figure[data-metric='loss'] script\").textContent.length") > 0
    over = chromium.find_element(By.CSS_SELECTOR, 'figure[data-metric="loss"] .u-over')
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(chromium).move_to_element(over).perform()
    readout = chromium.find_element(By.CSS_SELECTOR, 'figure[data-metric="loss"] .readout')
    wait(chromium, lambda b: "baseline " in readout.text and "deeper " in readout.text)
    chromium.save_screenshot(str(DOCS / "compare.png"))


def test_the_runs_table_sorts_and_filters_and_keeps_it_in_the_url(live, chromium, charts_project):
    from selenium.webdriver.common.by import By

    def ids():
        return [row.get_attribute("data-run") for row in chromium.find_elements(By.CSS_SELECTOR, "#runs tr[data-run]")]

    sign_in(chromium, live, "bob", path="/acme/projects/charts/")
    assert ids() == ["c3", "b2", "a1", "big"]  # newest first
    metrics = chromium.find_element(By.NAME, "metrics")
    metrics.send_keys("loss")
    chromium.find_element(By.NAME, "config").send_keys("lr")
    chromium.find_element(By.CSS_SELECTOR, "#runs-filter button[type=submit]").click()
    wait(chromium, lambda b: "metrics=loss" in b.current_url)
    chromium.find_element(By.CSS_SELECTOR, 'th[data-column="config:lr"] a').click()
    wait(chromium, lambda b: "sort=config%3Alr" in b.current_url)
    assert ids() == ["a1", "c3", "b2", "big"]  # lr 0.01 < 0.02 < 0.03 < 0.1
    chromium.find_element(By.CSS_SELECTOR, 'th[data-column="config:lr"] a').click()
    wait(chromium, lambda b: "sort=-config%3Alr" in b.current_url)
    assert ids() == ["big", "b2", "c3", "a1"]
    chromium.find_element(By.CSS_SELECTOR, 'th[data-column="metric:loss"] a').click()
    wait(chromium, lambda b: "sort=metric%3Aloss" in b.current_url)
    assert ids()[0] == "big"  # its latest loss is the lowest

    chromium.find_element(By.NAME, "tag").send_keys("gpu")
    chromium.find_element(By.CSS_SELECTOR, "#runs-filter button[type=submit]").click()
    wait(chromium, lambda b: "tag=gpu" in b.current_url)
    assert ids() == ["big", "b2", "c3"]
    shared = chromium.current_url
    sign_in(chromium, live, "vic", path=shared.replace(live.url, ""))  # the same view, by its URL
    assert chromium.current_url == shared and ids() == ["big", "b2", "c3"]
    assert chromium.find_element(By.CSS_SELECTOR, 'th[data-column="metric:loss"] .sort').text == "▲"
    chromium.find_element(By.NAME, "name").send_keys("deep")
    chromium.find_element(By.CSS_SELECTOR, "#runs-filter button[type=submit]").click()
    wait(chromium, lambda b: "name=deep" in b.current_url)
    assert ids() == ["c3"]
    chromium.get(charts_project["url"] + "?metrics=loss&config=lr&sort=-start")
    chromium.save_screenshot(str(DOCS / "runs-table.png"))
