import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from datetime import timedelta

from django.utils import timezone

from automations.models import Automation, Execution, RunCondition
from automations.tasks import evaluate_event, sweep
from events.models import Event
from tracking.history import log_history
from tracking.models import Run

from .conftest import P, T
from .engine import fired, make_automation

pytestmark = pytest.mark.django_db(transaction=True)

PROJECT = {"type": "project", "project": "vision"}


@pytest.fixture
def other_project(team):
    return team.projects.create(name="audio")


@pytest.fixture
def bobc(api, bob, team, project, registry):
    return api(bob)


def new_version(c, name="mnist", type_="model", project="vision", **extra):
    response = c.post(f"{T}/projects/{project}/artifacts/", {"name": name, "type": type_, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def link(c, artifact, collection="clf", aliases=()):
    response = c.post(f"{T}/registries/models/collections/{collection}/links/", {"artifact": artifact, "aliases": list(aliases)}, format="json")
    assert response.status_code in (200, 201), response.content
    return response.json()


# --- artifact events and scope boundaries


def test_create_artifact_respects_project_collection_type_and_team_scopes(team, bobc, other_project):
    project_auto = make_automation(team, "p", PROJECT, {"type": "CREATE_ARTIFACT"})
    typed = make_automation(team, "typed", PROJECT, {"type": "CREATE_ARTIFACT", "collection_type": "dataset"})
    team_auto = make_automation(team, "t", {"type": "team"}, {"type": "CREATE_ARTIFACT"})
    audio = make_automation(team, "audio", {"type": "project", "project": "audio"}, {"type": "CREATE_ARTIFACT"})
    new_version(bobc)
    assert len(fired(project_auto)) == 1 and len(fired(team_auto)) == 1
    assert fired(typed) == [] and fired(audio) == []
    new_version(bobc, name="data", type_="dataset")
    assert len(fired(typed)) == 1 and len(fired(project_auto)) == 2
    execution = fired(project_auto)[0]
    assert execution.status == "succeeded" and execution.event.author == "bob"
    assert execution.event.object_label == "acme/vision/mnist:v0"


def test_artifact_collection_scope_watches_only_its_collection(team, bobc):
    new_version(bobc)
    new_version(bobc, name="other")
    auto = make_automation(team, "c", {"type": "artifact_collection", "project": "vision", "collection": "mnist"}, {"type": "CREATE_ARTIFACT"})
    new_version(bobc, name="other")
    assert fired(auto) == []
    new_version(bobc)
    assert len(fired(auto)) == 1


def test_link_fires_registry_automations_not_project_ones(team, bobc, registry):
    bobc.post(f"{T}/registries/models/collections/", {"name": "clf", "type": "model"}, format="json")
    bobc.post(f"{T}/registries/models/collections/", {"name": "other", "type": "model"}, format="json")
    new_version(bobc)
    reg = make_automation(team, "reg", {"type": "registry", "registry": "models"}, {"type": "LINK_ARTIFACT"})
    coll = make_automation(team, "coll", {"type": "registry_collection", "registry": "models", "collection": "other"}, {"type": "LINK_ARTIFACT"})
    prod = make_automation(team, "prod", {"type": "registry", "registry": "models"}, {"type": "LINK_ARTIFACT", "alias_regex": "^production$"})
    project_alias = make_automation(team, "palias", PROJECT, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": ".*"})
    link(bobc, "vision/mnist:v0")
    assert len(fired(reg)) == 1 and fired(coll) == [] and fired(prod) == []
    assert fired(project_alias) == []  # the registry's 'latest' is not a project alias
    new_version(bobc)
    link(bobc, "vision/mnist:v1", aliases=["production"])
    assert len(fired(prod)) == 1 and fired(prod)[0].context["alias"] == "production"
    link(bobc, "vision/mnist:v1", collection="other")
    assert len(fired(coll)) == 1


def test_alias_regex_searches_and_anchors(team, bobc, registry):
    bobc.post(f"{T}/registries/models/collections/", {"name": "clf", "type": "model"}, format="json")
    new_version(bobc)
    link(bobc, "vision/mnist:v0")
    exact = make_automation(team, "exact", {"type": "registry", "registry": "models"}, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^production$"})
    anywhere = make_automation(team, "any", {"type": "registry", "registry": "models"}, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "prod"})
    project = make_automation(team, "proj", PROJECT, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "prod"})
    bobc.post(f"{T}/registries/models/collections/clf/versions/v0/aliases/", {"alias": "preproduction"}, format="json")
    assert fired(exact) == [] and len(fired(anywhere)) == 1 and fired(project) == []
    bobc.post(f"{T}/registries/models/collections/clf/versions/v0/aliases/", {"alias": "production"}, format="json")
    assert len(fired(exact)) == 1 and len(fired(anywhere)) == 2
    bobc.post(f"{P}/artifacts/mnist/versions/v0/aliases/", {"alias": "production"}, format="json")
    assert len(fired(project)) == 1 and len(fired(exact)) == 1


def test_adding_an_alias_a_version_already_holds_triggers_nothing(team, bobc):
    new_version(bobc, aliases=["best"])
    auto = make_automation(team, "a", PROJECT, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "best"})
    bobc.post(f"{P}/artifacts/mnist/versions/v0/aliases/", {"alias": "best"}, format="json")
    assert fired(auto) == []


def test_tag_regex(team, bobc):
    new_version(bobc)
    auto = make_automation(team, "eu", {"type": "team"}, {"type": "ADD_ARTIFACT_TAG", "tag_regex": "^europe"})
    bobc.post(f"{P}/artifacts/mnist/versions/v0/tags/", {"tag": "asia"}, format="json")
    bobc.post(f"{P}/artifacts/mnist/versions/v0/tags/", {"tag": "europe-west"}, format="json")
    assert [e.context["tag"] for e in fired(auto)] == ["europe-west"]


def test_disabled_automations_do_not_fire(team, bobc):
    auto = make_automation(team, "off", PROJECT, {"type": "CREATE_ARTIFACT"}, enabled=False)
    new_version(bobc)
    assert fired(auto) == []


# --- run state


def test_run_state_maps_crashed_to_failed_and_never_fires_on_killed(team, bobc):
    failed = make_automation(team, "failed", PROJECT, {"type": "RUN_STATE", "states": ["FAILED"]})
    finished = make_automation(team, "finished", PROJECT, {"type": "RUN_STATE", "states": ["FINISHED", "RUNNING"]})
    for run_id, state in [("a", "crashed"), ("b", "killed"), ("c", "finished"), ("d", "failed")]:
        bobc.post(f"{P}/runs/", {"id": run_id}, format="json")
        bobc.patch(f"{P}/runs/{run_id}/", {"state": state}, format="json")
    assert sorted(e.event.run.run_id for e in fired(failed)) == ["a", "d"]
    # RUNNING fired for each new run; FINISHED for c only.
    assert sorted((e.event.run.run_id, e.context["run_state"]) for e in fired(finished)) == [
        ("a", "running"), ("b", "running"), ("c", "finished"), ("c", "running"), ("d", "running")]


def test_run_filter_by_user_and_name(team, api, alice, bob, project):
    auto = make_automation(team, "f", PROJECT, {"type": "RUN_STATE", "states": ["FINISHED"], "run_filter": {"user": "alice", "name_regex": "^exp-"}})
    for user, run_id, name in [(alice, "r1", "exp-1"), (alice, "r2", "baseline"), (bob, "r3", "exp-3")]:
        api(user).post(f"{P}/runs/", {"id": run_id, "name": name}, format="json")
        api(user).patch(f"{P}/runs/{run_id}/", {"state": "finished"}, format="json")
    assert [e.event.run.run_id for e in fired(auto)] == ["r1"]


# --- metric conditions


def log(c, run_id, values, key="loss", start=0):
    rows = [{"step": start + i, "metrics": {key: v}} for i, v in enumerate(values)]
    assert c.post(f"{P}/runs/{run_id}/history/", {"rows": rows}, format="json").status_code == 201


@pytest.fixture
def run(bobc):
    bobc.post(f"{P}/runs/", {"id": "r"}, format="json")
    return "r"


@pytest.mark.parametrize(
    "agg, cmp, threshold, values, expected",
    [
        ("AVERAGE", "$lt", 0.5, [0.9, 0.1, 0.1, 0.1], True),  # avg of last 3 = 0.1
        ("AVERAGE", "$lt", 0.5, [0.1, 0.9, 0.9, 0.1], False),
        ("MIN", "$lte", 0.2, [0.9, 0.2, 0.8, 0.9], True),
        ("MAX", "$gt", 0.85, [0.9, 0.2, 0.8, 0.8], False),  # 0.9 left the window
        ("MAX", "$gte", 0.8, [0.9, 0.2, 0.8, 0.1], True),
        (None, "$eq", 3, [1, 2, 3], True),
        (None, "$ne", 3, [1, 2, 3], False),
        (None, "$gt", 2, [5, 1], False),  # latest only
    ],
)
def test_threshold_aggregations_and_comparisons(team, bobc, run, agg, cmp, threshold, values, expected):
    event = {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 3, "cmp": cmp, "threshold": threshold}
    if agg:
        event["agg"] = agg
    auto = make_automation(team, "t", PROJECT, event)
    log(bobc, run, values)
    assert bool(fired(auto)) is expected


def test_threshold_context_and_fewer_values_than_the_window(team, bobc, run):
    auto = make_automation(team, "t", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 5, "agg": "AVERAGE", "cmp": "$lt", "threshold": 0.1})
    log(bobc, run, [0.05] * 4)
    assert fired(auto) == []  # 4 values, window 5
    log(bobc, run, [0.05], start=4)
    [execution] = fired(auto)
    assert execution.context["metric_name"] == "loss"
    assert execution.context["metric_value"] == pytest.approx(0.05)
    assert execution.context["metric_values"] == [0.05] * 5
    assert execution.context["metric_filter"] == "average(loss) over 5 < 0.1"


def test_threshold_fires_on_the_transition_then_cooldown_then_rearms(team, bobc, run, settings):
    auto = make_automation(team, "t", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$gt", "threshold": 1})
    log(bobc, run, [2])
    log(bobc, run, [3], start=1)  # still true: no new firing
    assert len(fired(auto)) == 1
    log(bobc, run, [0], start=2)  # false: re-arms
    log(bobc, run, [5], start=3)  # true again, but within the cooldown
    assert len(fired(auto)) == 1
    settings.AUTOMATION_COOLDOWN = 0
    log(bobc, run, [0], start=4)
    log(bobc, run, [5], start=5)
    assert len(fired(auto)) == 2


def test_each_run_is_evaluated_on_its_own_values(team, bobc, run):
    auto = make_automation(team, "t", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 2, "agg": "AVERAGE", "cmp": "$gt", "threshold": 1})
    bobc.post(f"{P}/runs/", {"id": "other"}, format="json")
    log(bobc, "other", [5, 5])
    log(bobc, run, [0.5])
    log(bobc, run, [0.5], start=1)
    assert [e.event.run.run_id for e in fired(auto)] == ["other"]


def test_non_finite_values_never_satisfy_a_condition(team, bobc, run):
    auto = make_automation(team, "t", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$ne", "threshold": 0})
    log(bobc, run, ["NaN"])
    log(bobc, run, ["inf"], start=1)
    log(bobc, run, ["text"], start=2)
    assert fired(auto) == []
    log(bobc, run, [1], start=3)
    assert len(fired(auto)) == 1


@pytest.mark.parametrize(
    "change_type, change_dir, amount, prior, current, expected",
    [
        ("RELATIVE", "DECREASE", 0.25, [1.0, 1.0], [0.7, 0.7], True),   # -30 %
        ("RELATIVE", "DECREASE", 0.25, [1.0, 1.0], [0.8, 0.8], False),  # -20 %
        ("RELATIVE", "INCREASE", 0.25, [1.0, 1.0], [0.5, 0.5], False),
        ("RELATIVE", "ANY", 0.25, [1.0, 1.0], [1.5, 1.5], True),
        ("RELATIVE", "ANY", 0.25, [0.0, 0.0], [1.5, 1.5], False),       # prior 0: never
        ("ABSOLUTE", "INCREASE", 0.5, [1.0, 1.0], [1.5, 1.5], True),
        ("ABSOLUTE", "INCREASE", 0.5, [1.0, 1.0], [1.4, 1.4], False),
    ],
)
def test_metric_change_windows(team, bobc, run, change_type, change_dir, amount, prior, current, expected):
    auto = make_automation(team, "c", PROJECT, {"type": "RUN_METRIC_CHANGE", "metric": "loss", "agg": "AVERAGE", "current_window": 2,
                                                "prior_window": 2, "change_type": change_type, "change_dir": change_dir, "change_amount": amount})
    log(bobc, run, [9.0] + prior + current)  # the oldest value lies outside both windows
    assert bool(fired(auto)) is expected


def test_metric_change_needs_both_windows_full(team, bobc, run):
    auto = make_automation(team, "c", PROJECT, {"type": "RUN_METRIC_CHANGE", "metric": "loss", "current_window": 2, "prior_window": 3,
                                                "change_dir": "DECREASE", "change_amount": 0.5, "change_type": "ABSOLUTE"})
    log(bobc, run, [5, 5, 1, 1])
    assert fired(auto) == []
    log(bobc, run, [1], start=4)  # prior [5,5,1] avg 3.67, current [1,1]: -2.67
    assert len(fired(auto)) == 1


def test_zscore_against_other_runs(team, bobc, run):
    auto = make_automation(team, "z", PROJECT, {"type": "RUN_METRIC_ZSCORE", "metric": "acc", "window": 10, "threshold": 2.0, "change_dir": "INCREASE"})
    for i, value in enumerate([0.50, 0.52, 0.48, 0.51, 0.49]):
        bobc.post(f"{P}/runs/", {"id": f"o{i}"}, format="json")
        log(bobc, f"o{i}", [value], key="acc")
    assert fired(auto) == []  # each run so far was within 2 sigma of the others (or had < 2)
    log(bobc, run, [0.90], key="acc")
    [execution] = fired(auto)
    assert execution.event.run.run_id == "r" and execution.context["metric_zscore"] > 2


def test_zscore_against_own_history_and_decrease(team, bobc, run):
    auto = make_automation(team, "z", PROJECT, {"type": "RUN_METRIC_ZSCORE", "metric": "loss", "window": 5, "threshold": 3, "change_dir": "DECREASE", "basis": "history"})
    log(bobc, run, [1.0, 1.1, 0.9, 1.0, 1.05])
    log(bobc, run, [5.0], start=5)  # a jump up is not a decrease
    assert fired(auto) == []
    log(bobc, run, [1.0, 1.1, 0.9, 1.0, 1.05], start=6)
    log(bobc, run, [-3.0], start=11)
    assert len(fired(auto)) == 1


def test_zscore_needs_spread_and_two_references(team, bobc, run):
    auto = make_automation(team, "z", PROJECT, {"type": "RUN_METRIC_ZSCORE", "metric": "loss", "window": 5, "threshold": 1, "basis": "history"})
    log(bobc, run, [1.0, 1.0, 1.0, 7.0])  # std of the reference is 0
    assert fired(auto) == []


# --- engine guarantees


def test_evaluating_an_event_twice_creates_nothing_new(team, bobc):
    auto = make_automation(team, "p", PROJECT, {"type": "CREATE_ARTIFACT"})
    new_version(bobc)
    event = Event.objects.get(type="CREATE_ARTIFACT")
    Event.objects.filter(pk=event.pk).update(evaluated_at=None)
    evaluate_event(event.pk)
    assert len(fired(auto)) == 1


def test_the_sweep_evaluates_events_whose_task_was_lost(team, project, alice):
    auto = make_automation(team, "p", PROJECT, {"type": "RUN_STATE", "states": ["RUNNING"]})
    from events.signals import event_committed
    from automations.tasks import enqueue_evaluation

    event_committed.disconnect(dispatch_uid="automations.evaluate")  # the task is "lost"
    try:
        Run.objects.create(project=project, run_id="lost", name="lost")
    finally:
        event_committed.connect(enqueue_evaluation, dispatch_uid="automations.evaluate")
    assert fired(auto) == []
    sweep()
    assert fired(auto) == []  # not late yet: its task may merely be queued
    a_minute_ago = timezone.now() - timedelta(minutes=1)
    Automation.objects.update(enabled_since=a_minute_ago - timedelta(minutes=1))
    Event.objects.update(created_at=a_minute_ago)
    sweep()
    assert len(fired(auto)) == 1
    assert evaluate_event(Event.objects.get().pk) == []  # the lost task, turning up after all, finds it done


def test_an_automation_never_triggers_on_its_own_action(team, bobc, api, bob):
    auto = make_automation(team, "p", PROJECT, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "deployed"})
    other = make_automation(team, "o", PROJECT, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "deployed"})
    new_version(bobc)
    bobc.post(f"{P}/artifacts/mnist/versions/v0/aliases/", {"alias": "deployed"}, format="json")
    [first] = fired(auto)
    # The receiver of `auto`'s webhook calls back with the delivery id it was sent.
    new_version(bobc)
    bobc.post(f"{P}/artifacts/mnist/versions/v1/aliases/", {"alias": "deployed"}, format="json", HTTP_TRIPLINE_CAUSE=first.delivery_id)
    assert len(fired(auto)) == 1 and len(fired(other)) == 2


def test_evaluating_a_batch_costs_the_same_queries_whatever_the_history_and_other_automations(team, project, other_project, alice):
    run = Run.objects.create(project=project, run_id="r", name="r", user=alice)
    make_automation(team, "t", PROJECT, {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 5, "agg": "AVERAGE", "cmp": "$lt", "threshold": -1})
    make_automation(team, "c", PROJECT, {"type": "RUN_METRIC_CHANGE", "metric": "loss", "change_amount": 0.5})
    make_automation(team, "z", PROJECT, {"type": "RUN_METRIC_ZSCORE", "metric": "loss", "basis": "history"})
    step = 0

    def measure(history_rows):
        nonlocal step
        if history_rows:
            log_history(run, [{"step": step + i, "metrics": {"loss": 1.0 + (i % 7) / 10}} for i in range(history_rows)])
            step += history_rows
        log_history(run, [{"step": step, "metrics": {"loss": 1.0}}])
        step += 1
        event = Event.objects.filter(run=run, type="RUN_HISTORY").latest("id")
        Event.objects.filter(pk=event.pk).update(evaluated_at=None)
        RunCondition.objects.all().delete()
        with CaptureQueriesContext(connection) as queries:
            evaluate_event(event.pk)
        return len(queries)

    few = measure(10)
    many = measure(10_000)
    for i in range(100):
        make_automation(team, f"elsewhere-{i}", {"type": "project", "project": "audio"},
                        {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$gt", "threshold": 0})
    crowded = measure(0)
    assert few == many == crowded, (few, many, crowded)


def test_executions_api_lists_filters_and_shows_detail(team, bobc, api, vic, charlie):
    auto = make_automation(team, "p", PROJECT, {"type": "CREATE_ARTIFACT"})
    new_version(bobc)
    listing = api(vic).get(f"{T}/automations/{auto.pk}/executions/").json()
    assert listing["count"] == 1
    item = listing["results"][0]
    assert item["status"] == "succeeded" and item["event"]["type"] == "CREATE_ARTIFACT"
    assert item["event"]["author"] == "bob" and item["event"]["object"] == "acme/vision/mnist:v0"
    assert api(vic).get(f"{T}/executions/?status=failed").json()["count"] == 0
    assert api(vic).get(f"{T}/executions/?status=succeeded").json()["count"] == 1
    assert api(vic).get(f"{T}/executions/?status=bogus").status_code == 400
    detail = api(vic).get(f"{T}/executions/{item['id']}/").json()
    assert detail["attempts"] == [] and detail["request"] == {"action": "NO_OP"}
    assert api(charlie).get(f"{T}/executions/{item['id']}/").status_code == 404
    assert Execution.objects.count() == 1


def test_retention_prunes_old_events_with_their_executions_but_keeps_unfinished_work(team, bobc, settings):
    done = make_automation(team, "done", PROJECT, {"type": "CREATE_ARTIFACT"})
    for _ in range(3):
        new_version(bobc)
    old, recent, waiting = (execution.event for execution in fired(done))
    waiting_execution = fired(done)[2]
    waiting_execution.attempts.create(number=1, started_at=waiting_execution.triggered_at)
    Execution.objects.filter(pk=waiting_execution.pk).update(status="pending")  # a retry still to come
    unevaluated = Event.objects.create(team=team, type="CREATE_ARTIFACT", project=old.project)  # its task was lost
    long_ago = old.created_at.replace(year=2020)
    Automation.objects.filter(pk=done.pk).update(enabled_since=long_ago - timedelta(days=1))  # it existed then
    Event.objects.filter(pk__in=[old.pk, waiting.pk, unevaluated.pk]).update(created_at=long_ago)
    Event.objects.filter(pk__in=[old.pk, waiting.pk]).update(evaluated_at=long_ago)
    Execution.objects.filter(event=old).update(finished_at=long_ago)

    settings.RETENTION_DAYS = 0
    sweep()  # evaluates the lost event now, so it fires now
    assert Event.objects.filter(pk=old.pk).exists() and len(fired(done)) == 4  # 0 keeps everything

    settings.RETENTION_DAYS = 30
    sweep()
    assert not Event.objects.filter(pk=old.pk).exists()
    assert Event.objects.filter(pk__in=[recent.pk, waiting.pk, unevaluated.pk]).count() == 3
    assert [e.event_id for e in fired(done)] == [recent.pk, waiting.pk, unevaluated.pk]
    assert waiting_execution.attempts.count() == 1
