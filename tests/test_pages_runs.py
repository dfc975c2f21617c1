"""The project page's runs table, the run page's charts and their JSON, the compare page: who
may see them, what the URL chooses, and a query count that does not grow with the rows."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tracking.history import log_history, read_chart
from tracking.models import Run

from .engine import make_automation
from .signin import sign_in

pytestmark = pytest.mark.django_db

PROJECT = "/acme/projects/vision/"


def run_ids(page):
    return re.findall(r'<tr data-run="([^"]+)">', page)


def make_runs(project, users, n, start=0):
    runs = []
    for i in range(start, start + n):
        run = Run.objects.create(project=project, run_id=f"r{i:03d}", name=f"exp-{i % 3}-{i}", user=users[i % len(users)],
                                 state="finished" if i % 2 else "running", tags=["gpu"] if i % 4 == 0 else ["cpu", "big"],
                                 config={"lr": 10 - i, "arch": f"a{i % 2}"})
        log_history(run, [{"step": 0, "metrics": {"loss": 1.0 / (i + 1), "acc": i / 100}}])
        runs.append(run)
    return runs


@pytest.fixture
def runs(project, alice, bob):
    return make_runs(project, [alice, bob], 12)


@pytest.mark.parametrize("who, status", [("alice", 200), ("bob", 200), ("vic", 200), ("charlie", 404)])
def test_every_role_of_the_team_reads_the_runs_table_and_outsiders_get_404(client, runs, team, who, status):
    sign_in(client, who)
    assert client.get(PROJECT).status_code == status
    assert client.get(PROJECT + "compare/?runs=r001,r002").status_code == status
    assert client.get(PROJECT + "runs/r001/").status_code == status
    assert client.get(PROJECT + "runs/r001/chart/?key=loss").status_code == status


def test_signed_out_people_are_sent_to_sign_in(client, runs):
    for url in [PROJECT, PROJECT + "runs/r001/chart/?key=loss", PROJECT + "compare/?runs=r001"]:
        answer = client.get(url)
        assert answer.status_code == 302 and answer["Location"].startswith("/login/")


def test_the_table_pages_on_the_server_newest_first(client, runs, bob):
    sign_in(client, bob.username)
    first = client.get(PROJECT + "?per=5").content.decode()
    assert run_ids(first) == ["r011", "r010", "r009", "r008", "r007"]
    assert "page 1 of 3 · 12 runs" in first
    assert 'href="?per=5&amp;page=2" rel="next"' in first
    last = client.get(PROJECT + "?per=5&page=3").content.decode()
    assert run_ids(last) == ["r001", "r000"] and 'rel="prev"' in last and 'rel="next"' not in last


@pytest.mark.parametrize("sort, expected", [
    ("id", ["r000", "r001", "r002"]),
    ("-name", ["r008", "r005", "r002"]),  # text order: "exp-2-8" > "exp-2-5" > "exp-2-2" > "exp-2-11"
    ("metric:loss", ["r011", "r010", "r009"]),  # loss = 1 / (i + 1)
    ("-metric:acc", ["r011", "r010", "r009"]),
    ("config:lr", ["r011", "r010", "r009"]),  # lr = 10 - i, a number: sorted as numbers
    ("-config:lr", ["r000", "r001", "r002"]),
    ("user", None),
    ("state", None),
    ("duration", None),
    ("tags", None),
    ("-start", ["r011", "r010", "r009"]),
])
def test_the_table_sorts_by_any_column(client, runs, bob, sort, expected):
    sign_in(client, bob.username)
    page = client.get(PROJECT, {"sort": sort, "metrics": "loss,acc", "config": "lr"}).content.decode()
    ids = run_ids(page)
    assert sorted(ids) == [f"r{i:03d}" for i in range(12)]
    if expected:
        assert ids[:3] == expected
    if sort == "user":
        users = re.findall(r"</span></td><td>(alice|bob)</td>", page)
        assert users == sorted(users)
    if sort == "state":
        states = re.findall(r'<span class="pill state-(\w+)">', page)
        assert states == sorted(states)


def test_the_sort_headings_link_to_the_same_view_sorted_and_reversed(client, runs, bob):
    sign_in(client, bob.username)
    page = client.get(PROJECT, {"state": "finished", "metrics": "loss", "sort": "metric:loss"}).content.decode()
    assert 'href="?state=finished&amp;sort=-metric%3Aloss&amp;metrics=loss">loss</a> <span class="sort">▲</span>' in page
    assert 'href="?state=finished&amp;sort=user&amp;metrics=loss">User</a>' in page


def test_the_table_filters_by_state_user_tag_and_name(client, runs, bob):
    sign_in(client, bob.username)

    def ids(**query):
        return sorted(run_ids(client.get(PROJECT, query).content.decode()))

    assert ids(state="finished") == [f"r{i:03d}" for i in range(1, 12, 2)]
    assert ids(user="alice") == [f"r{i:03d}" for i in range(0, 12, 2)]
    assert ids(tag="gpu") == ["r000", "r004", "r008"]
    assert ids(tag="big", user="bob", state="finished") == ["r001", "r003", "r005", "r007", "r009", "r011"]
    assert ids(name="exp-1") == ["r001", "r004", "r007", "r010"]
    assert ids(name="R00") == [f"r{i:03d}" for i in range(10)]  # the id, case-insensitive
    assert ids(tag="gp") == [] and ids(user="nobody") == []
    assert "No runs match." in client.get(PROJECT, {"tag": "none"}).content.decode()


def test_the_metric_and_config_columns_show_latest_values(client, runs, bob):
    log_history(runs[3], [{"step": 5, "metrics": {"loss": 0.125}}])
    sign_in(client, bob.username)
    page = client.get(PROJECT, {"metrics": "loss,missing", "config": "arch", "sort": "id"}).content.decode()
    row = page.split('<tr data-run="r003">')[1].split("</tr>")[0].replace("\n", "")
    assert '<td class="num">0.125</td><td class="num"></td><td>a1</td>' in row
    assert '<th data-column="metric:loss">' in page and '<th data-column="config:arch">' in page


@pytest.mark.parametrize("query, field", [
    ({"state": "sleeping"}, "state"), ({"sort": "password"}, "sort"), ({"page": "x"}, "page"), ({"per": "0"}, "per"),
    ({"per": "100000"}, "per"), ({"page": "-1"}, "page"), ({"metrics": ",".join(f"m{i}" for i in range(11))}, "metrics"),
    ({"config": "x" * 200}, "config"), ({"sort": "metric:loss"}, "sort"), ({"config": "lr,-1"}, "config"), ({"tag": "a\x00"}, "tag"),
    ({"name": "\x00"}, "name"),
])
def test_bad_table_queries_are_400_naming_the_field(client, runs, bob, query, field):
    sign_in(client, bob.username)
    answer = client.get(PROJECT, query)
    assert answer.status_code == 400 and answer.content.decode().startswith(f"{field}:")


def test_a_page_past_the_end_shows_the_last_page(client, runs, bob):
    sign_in(client, bob.username)
    assert run_ids(client.get(PROJECT, {"per": 5, "page": 99}).content.decode()) == ["r001", "r000"]


def queries(client, url, **query):
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, query).status_code == 200
    return len(captured)


def test_the_runs_table_costs_the_same_queries_for_2_runs_as_for_40(client, project, alice, bob):
    make_runs(project, [alice, bob], 2)
    sign_in(client, bob.username)
    view = {"metrics": "loss,acc", "config": "lr,arch", "tag": "big", "sort": "metric:loss"}
    few = queries(client, PROJECT, **view)
    make_runs(project, [alice, bob], 38, start=2)
    assert queries(client, PROJECT, **view) == few


def test_the_run_page_costs_the_same_queries_for_3000_points_as_for_30000(client, team, project, bob):
    run = Run.objects.create(project=project, run_id="long", name="long run")
    make_automation(team, "low loss", {"type": "project", "project": "vision"},
                    {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": 0.1})

    def grow(start, end):
        log_history(run, [{"step": i, "metrics": {"loss": 1 / (i + 1), "acc": 0.5}} for i in range(start, end)])

    grow(0, 20)
    sign_in(client, bob.username)
    short = queries(client, PROJECT + "runs/long/")  # every point, one read per metric
    grow(20, 3000)
    few = queries(client, PROJECT + "runs/long/")  # downsampled: three reads per metric
    assert few > short
    grow(3000, 30_000)
    assert queries(client, PROJECT + "runs/long/") == few
    assert queries(client, PROJECT + "compare/", runs="long") <= few


def test_the_compare_page_costs_the_same_queries_for_more_points(client, project, alice, bob):
    runs = make_runs(project, [alice, bob], 3)
    sign_in(client, bob.username)
    for run in runs:
        log_history(run, [{"step": i, "metrics": {"loss": 1 / (i + 1), "acc": 0.5}} for i in range(1, 3000)])
    few = queries(client, PROJECT + "compare/", runs="r000,r001,r002")
    for run in runs:
        log_history(run, [{"step": i, "metrics": {"loss": 1 / (i + 1), "acc": 0.5}} for i in range(3000, 9000)])
    assert queries(client, PROJECT + "compare/", runs="r000,r001,r002") == few


def test_read_chart_returns_every_point_up_to_samples_then_min_and_max_per_bucket(project):
    run = Run.objects.create(project=project, run_id="spiky", name="spiky")
    start = timezone.now() - timedelta(hours=1)
    values = [0.5] * 10_000
    values[4321] = 99.0  # one spike
    values[7000] = -5.0  # one dip
    log_history(run, [{"step": i, "metrics": {"loss": v}, "timestamp": start + timedelta(seconds=i)} for i, v in enumerate(values)])
    log_history(run, [{"step": 10_000, "metrics": {"loss": float("nan")}}])

    whole = read_chart(run, "loss", samples=200)
    assert whole["downsampled"] and whole["total"] == 10_000 and len(whole["step"]) <= 200
    assert max(whole["value"]) == 99.0 and min(whole["value"]) == -5.0  # spikes survive
    assert whole["step"][0] == 0 and whole["step"][-1] == 9999 and whole["step"] == sorted(whole["step"])
    assert whole["time"][0] == pytest.approx(start.timestamp())

    zoomed = read_chart(run, "loss", min_step=4300, max_step=4399, samples=200)
    assert not zoomed["downsampled"] and zoomed["step"] == list(range(4300, 4400))
    assert zoomed["value"][21] == 99.0 and zoomed["time"][21] == pytest.approx(start.timestamp() + 4321)
    assert read_chart(run, "loss", min_step=20_000)["total"] == 0
    by_step = read_chart(run, "loss", samples=200, times=False)  # what the page embeds
    assert by_step["time"] is None and by_step["step"] == whole["step"] and by_step["value"] == whole["value"]
    assert read_chart(run, "loss", min_step=4300, max_step=4399, samples=200, times=False)["time"] == zoomed["time"]  # cheap there


def test_the_chart_json_refetches_a_range_at_full_resolution(client, project, bob):
    run = Run.objects.create(project=project, run_id="r1", name="r1")
    log_history(run, [{"step": i, "metrics": {"loss": float(i % 7)}} for i in range(3000)])
    sign_in(client, bob.username)
    whole = client.get(PROJECT + "runs/r1/chart/", {"key": "loss", "samples": 100}).json()
    assert whole["downsampled"] and len(whole["step"]) <= 100 and whole["total"] == 3000
    assert len(whole["time"]) == len(whole["step"])  # the time x-axis asks here for its times
    part = client.get(PROJECT + "runs/r1/chart/", {"key": "loss", "samples": 100, "min_step": 1000, "max_step": 1049}).json()
    assert part["step"] == list(range(1000, 1050)) and part["value"] == [float(i % 7) for i in range(1000, 1050)]
    assert part["run"] == "r1" and part["url"] == PROJECT + "runs/r1/chart/"


@pytest.mark.parametrize("query, field", [
    ({}, "key"), ({"key": "nope"}, "key"), ({"key": "loss", "samples": "1"}, "samples"), ({"key": "loss", "samples": "x"}, "samples"),
    ({"key": "loss", "samples": "10001"}, "samples"), ({"key": "loss", "min_step": "1.5"}, "min_step"),
    ({"key": "loss", "max_step": "9" * 30}, "max_step"), ({"key": "lo\x00ss"}, "key"),
])
def test_bad_chart_queries_are_400_naming_the_field(client, project, bob, query, field):
    run = Run.objects.create(project=project, run_id="r1", name="r1")
    log_history(run, [{"step": 0, "metrics": {"loss": 1.0}}])
    sign_in(client, bob.username)
    answer = client.get(PROJECT + "runs/r1/chart/", query)
    assert answer.status_code == 400 and field in answer.json()


def test_the_compare_page_overlays_the_runs_in_the_url_order(client, runs, bob):
    sign_in(client, bob.username)
    page = client.get(PROJECT + "compare/", {"runs": ["r003", "r001"]}).content.decode()
    assert page.index('"run": "r003"') < page.index('"run": "r001"')
    assert 'data-metric="loss"' in page and 'data-metric="acc"' in page
    assert "exp-0-3: 1 values, last 0.25 at step 0; exp-1-1: 1 values, last 0.5 at step 0." in page  # without JavaScript
    assert client.get(PROJECT + "compare/?runs=r003,r001").content.decode().count('"run": "r003"') == 2  # one series per metric
    assert client.get(PROJECT + "compare/?runs=r003,nope").status_code == 404
    assert client.get(PROJECT + "compare/").status_code == 400


def test_the_run_page_marks_where_automations_fired_linking_to_the_execution(client, team, project, bob):
    from automations.models import Execution
    from events.models import Event

    run = Run.objects.create(project=project, run_id="r1", name="r1")
    log_history(run, [{"step": i, "metrics": {"loss": 1 / (i + 1)}} for i in range(50)])
    automation = make_automation(team, "loss under 0.05", {"type": "project", "project": "vision"},
                                 {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": 0.05})
    event = Event.objects.create(team=team, type="RUN_HISTORY", project=project, run=run, facts={"keys": ["loss"], "last_step": 40})
    fired = Execution.objects.create(automation=automation, event=event, context={"metric_value": 0.0243})
    other = Run.objects.create(project=project, run_id="r2", name="r2")
    Execution.objects.create(automation=automation, event=Event.objects.create(team=team, type="RUN_HISTORY", project=project, run=other,
                                                                                 facts={"keys": ["loss"], "last_step": 7}))
    sign_in(client, bob.username)
    page = client.get(PROJECT + "runs/r1/").content.decode()
    assert f'<a class="firing" href="/acme/executions/{fired.pk}/">loss under 0.05 at step 40</a>' in page
    assert '"firings": [{"step": 40, "value": 0.0243, "label": "loss under 0.05"' in page
    assert "at step 7" not in page  # another run's firing
    assert '"thresholds": [{"value": 0.05, "label": "loss under 0.05"}]' in page


def test_a_reopened_run_page_reads_the_history_again_only_once_it_has_grown(client, project, bob):
    run = Run.objects.create(project=project, run_id="long", name="long run")
    log_history(run, [{"step": i, "metrics": {"loss": float(i % 10)}} for i in range(3000)])
    sign_in(client, bob.username)

    def history_reads():
        with CaptureQueriesContext(connection) as captured:
            page = client.get(PROJECT + "runs/long/").content.decode()
        return len([q for q in captured if "tracking_metricpoint" in q["sql"]]), page

    assert history_reads()[0] == 3
    assert history_reads()[0] == 0  # the same history: from the cache
    log_history(run, [{"step": 3000, "metrics": {"loss": 123.0}}])
    reads, page = history_reads()
    assert reads == 3 and "123.0" in page  # grown: read again, with the new point


HOSTILE = ["\x00", "a\x00b", "'; DROP TABLE tracking_run; --", '"', "$.a[0]", "ü" * 64, "%", "_", "\\", "a.b", "-1", " "]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_query_values_never_give_a_500(client, runs, bob, value):
    sign_in(client, bob.username)
    for param in ["name", "user", "tag", "metrics", "config", "state", "sort", "page", "per"]:
        answer = client.get(PROJECT, {param: value, "metrics": "loss", "config": "lr"} if param not in ("metrics", "config") else {param: value})
        assert answer.status_code in (200, 400), (param, answer.status_code)
    for sort in [f"config:{value}", f"metric:{value}"]:
        assert client.get(PROJECT, {"metrics": value, "config": value, "sort": sort}).status_code in (200, 400)
    for param in ["key", "min_step", "max_step", "samples"]:
        answer = client.get(PROJECT + "runs/r001/chart/", {"key": "loss", param: value})
        assert answer.status_code in (200, 400), (param, answer.status_code)
    assert client.get(PROJECT + "compare/", {"runs": value}).status_code in (400, 404)
