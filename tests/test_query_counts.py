"""Listing endpoints cost the same number of queries for 2 items as for 20 (no N+1)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automations.models import Execution
from events.models import Event
from tracking.models import ArtifactCollection, add_tag, create_version

from .conftest import P, T
from .engine import make_automation
from .token_client import token_client

pytestmark = pytest.mark.django_db


def queries(client, url):
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_version_lists_do_not_grow_with_versions(api, bob, team, project):
    collection = ArtifactCollection.objects.create(team=team, project=project, name="m", type="model")

    def grow(n):
        for _ in range(n):
            add_tag(create_version(collection, aliases=["x"]), "t")

    grow(2)
    few = [queries(api(bob), f"{P}/artifacts/m/versions/"), queries(api(bob), f"{P}/artifacts/m/")]
    grow(18)
    assert [queries(api(bob), f"{P}/artifacts/m/versions/"), queries(api(bob), f"{P}/artifacts/m/")] == few


def test_execution_lists_do_not_grow_with_executions(api, bob, team, project):
    automation = make_automation(team, "a", {"type": "project", "project": "vision"}, {"type": "CREATE_ARTIFACT"})
    collection = ArtifactCollection.objects.create(team=team, project=project, name="m", type="model")

    def grow(n):
        for _ in range(n):
            version = create_version(collection)
            event = Event.objects.create(team=team, type="CREATE_ARTIFACT", project=project, collection=collection, version=version, actor=bob)
            Execution.objects.create(automation=automation, event=event)

    grow(2)
    few = [queries(api(bob), f"{T}/executions/"), queries(api(bob), f"{T}/automations/{automation.pk}/executions/")]
    grow(18)
    assert [queries(api(bob), f"{T}/executions/"), queries(api(bob), f"{T}/automations/{automation.pk}/executions/")] == few


def evaluation_queries(team, project, count, metrics):
    """Queries of evaluate_event for one history batch (5 metrics) of a run with a history, in a
    project with `count` metric automations of every kind (threshold, change, z-score against
    runs and against history), on the first `metrics` metrics in turn (one: a z-score against
    other runs, which reads both the run's values and the other runs'). The values are constant: nothing fires, so
    only the evaluation is counted (each execution is a row of its own)."""
    from automations.tasks import evaluate_event
    from tests.bench.inproc import metric_event
    from tracking.history import log_history
    from tracking.models import Run

    for i in range(count):
        event = metric_event(i, metrics) if count > 1 else {"type": "RUN_METRIC_ZSCORE", "metric": "m0", "window": 30, "basis": "runs"}
        make_automation(team, f"watch-{count}-{metrics}-{i}", {"type": "project", "project": project.name}, event)
    run = Run.objects.create(project=project, run_id=f"r{count}-{metrics}", name="r")
    other = Run.objects.create(project=project, run_id=f"o{count}-{metrics}", name="o")
    rows = [{"step": s, "metrics": {f"m{k}": 1.0 for k in range(5)}} for s in range(100)]
    log_history(other, rows)
    log_history(run, rows)
    Event.objects.update(evaluated_at=timezone.now())
    log_history(run, [{"step": 100 + s, "metrics": {f"m{k}": 1.0 for k in range(5)}} for s in range(10)])
    event = Event.objects.get(run=run, evaluated_at__isnull=True)
    with CaptureQueriesContext(connection) as captured:
        assert evaluate_event(event.pk) == []
    assert Execution.objects.count() == 0
    return len(captured)


def test_evaluating_a_history_batch_costs_the_same_queries_for_1_and_100_metric_automations(team, project):
    """Issue 9: evaluation costs the same whatever the number of automations and of metrics they
    watch: each window is read once at the largest size needed, all the metrics' windows of a
    kind (the run's values, the other runs' latest) in one query, the conditions' per-run state
    is written in one statement."""
    from automations.models import Automation

    one = evaluation_queries(team, project, 1, 1)
    Automation.objects.all().delete()
    hundred = evaluation_queries(team, project, 100, 1)
    assert hundred == one, (one, hundred)
    Automation.objects.all().delete()
    # on 5 metrics: the same two reads (the run's values, the other runs'), each of all 5 metrics
    assert evaluation_queries(team, project, 100, 5) == one



def test_artifact_creation_answers_what_a_later_read_says(api, team, project, bob):
    """The 201 is built from what the call wrote, not read back (that re-read cost 3 queries
    after commit, 17 % of the call's time under bench row 1 on PostgreSQL): it must say what a
    later GET says, duplicates and jsonb's key order included."""
    c = api(bob)
    body = {"name": "m", "type": "model", "aliases": ["best", "latest", "best"], "tags": ["eu", "a", "eu"],
            "metadata": {"zeta": 1, "a": [1, 2], "nested": {"y": None, "b": "x"}}, "digest": "sha256:ab", "description": "first"}
    created = c.post(f"{P}/artifacts/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json() == c.get(f"{P}/artifacts/m/versions/v0/").json()
    assert created.json()["aliases"] == ["best", "latest"] and created.json()["tags"] == ["a", "eu"]
    second = c.post(f"{P}/artifacts/", {"name": "m", "type": "model"}, format="json").json()
    assert second == c.get(f"{P}/artifacts/m/versions/v1/").json() and second["aliases"] == ["latest"]
    assert c.get(f"{P}/artifacts/m/versions/v0/").json()["aliases"] == ["best"]


def test_a_history_batch_costs_six_statements_whatever_its_size(team, project):
    """Ingestion's queries, pinned: a savepoint, the points' insert (COPY on PostgreSQL, which
    the capture does not see), the metric records' one upsert, the summary's one upsert
    (tracking/summary.py; six statements before it), the event, the release. The first batch of
    a run, which creates its metric records, costs the same; the records hold what was logged."""
    from tracking.history import log_history
    from tracking.models import Run

    run = Run.objects.create(project=project, run_id="r", name="r")
    expected = 5 if connection.vendor == "postgresql" else 6
    for start, n in ((0, 1), (10, 10), (1000, 1000)):
        with CaptureQueriesContext(connection) as captured:
            log_history(run, [{"step": start + i, "metrics": {"a": 1.0, "b": float(i)}} for i in range(n)])
        assert len(captured) == expected, [q["sql"][:80] for q in captured]
        assert len([q for q in captured if "tracking_metricsummary" in q["sql"]]) == 1
        assert len([q for q in captured if "tracking_runmetric" in q["sql"]]) == 1
    records = {m.key: (m.count, m.last_step, m.last_value) for m in run.metrics.all()}
    assert records == {"a": (1011, 1999, 1.0), "b": (1011, 1999, 999.0)}


def test_a_point_is_written_into_one_index_besides_its_key():
    """Every read of points names the run and the metric, which `metric_window` (run, key, -step)
    serves, a run's deletion too; the foreign key's own index on run_id (dropped in migration
    0005) made each batch's insert 11-12 % slower."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "tracking_metricpoint")
    indexes = {name: c["columns"] for name, c in constraints.items() if c["index"] and not c["primary_key"]}
    assert indexes == {"metric_window": ["run_id", "key", "step"]}


def test_evaluating_a_backlog_costs_the_same_queries_for_a_batch_of_2_events_and_of_12(api, bob, team, project):
    """Issue 9: the worker evaluates a backlog a batch of events at a time in one transaction
    (automations.tasks.evaluate_batch): the events taken in one query, marked in one, their
    executions inserted in one — no query per event."""
    from automations.tasks import evaluate_batch

    make_automation(team, "every", {"type": "project", "project": project.name}, {"type": "CREATE_ARTIFACT"})
    client = api(bob)

    def batch(n):
        first = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        for i in range(n):  # stored, not evaluated yet (on-commit hooks do not run in these tests)
            assert client.post(f"{P}/artifacts/", {"name": "mnist", "type": "model"}, format="json").status_code == 201
        ids = list(Event.objects.filter(pk__gt=first, type="CREATE_ARTIFACT").values_list("pk", flat=True))
        with CaptureQueriesContext(connection) as captured:
            evaluate_batch(ids)
        assert Execution.objects.filter(event_id__in=ids).count() == n
        return len(captured)

    batch(1)  # the first loads the scope's automations, which the worker then keeps
    assert batch(2) == batch(12)


def test_a_run_call_finds_its_run_and_project_in_one_query(api, bob, team, project):
    """A run-scoped call (a history batch above all) looks the run and its project up in one
    query; a missing project or run is still a 404 naming which."""
    from tracking.models import Run

    Run.objects.create(project=project, run_id="r", name="r", user=bob)
    c = api(bob)
    with CaptureQueriesContext(connection) as captured:
        assert c.get(f"{P}/runs/r/").status_code == 200
    lookups = [q["sql"] for q in captured if "tracking_project" in q["sql"]]
    assert len(lookups) == 1 and "tracking_run" in lookups[0]
    with CaptureQueriesContext(connection) as captured:
        assert c.post(f"{P}/runs/r/history/", {"rows": [{"step": 0, "metrics": {"loss": 1.0}}]}, format="json").status_code == 201
    assert len([q for q in captured if "tracking_project" in q["sql"]]) == 1
    assert c.get(f"{P}/runs/r/").json()["id"] == "r"

    missing_run = c.post(f"{P}/runs/nope/history/", {"rows": [{"step": 0, "metrics": {"loss": 1.0}}]}, format="json")
    missing_project = c.post(f"{T}/projects/nope/runs/r/history/", {"rows": [{"step": 0, "metrics": {"loss": 1.0}}]}, format="json")
    assert missing_run.status_code == missing_project.status_code == 404
    assert "Run" in missing_run.json()["detail"] and "Project" in missing_project.json()["detail"]
    other = team.projects.create(name="other")
    assert c.get(f"{T}/projects/other/runs/r/").status_code == 404  # a run of another project is not found
    assert c.get(f"{T}/projects/{other.name}/runs/").status_code == 200


def test_an_artifact_post_costs_eleven_statements_and_one_savepoint(team, project, bob):
    """Bench row 1's call, pinned (through a real token): the token, the membership, the
    project, the collection, then — under the collection's row lock, taken by the index's
    UPDATE — the version, its event, `latest` moved in one UPDATE, its event, and the commit
    (the release of the view's savepoint here). No savepoint of create_version's own: each cost
    two round trips under the lock (16 statements before, 10 of them under the lock)."""
    c = token_client(bob)
    assert c.post(f"{P}/artifacts/", {"name": "m", "type": "model"}, format="json").status_code == 201
    with CaptureQueriesContext(connection) as captured:
        assert c.post(f"{P}/artifacts/", {"name": "m", "type": "model"}, format="json").status_code == 201
    sql = [q["sql"] for q in captured]
    assert len(sql) == 11, [s[:80] for s in sql]
    assert len([s for s in sql if s.startswith("SAVEPOINT")]) == 1  # the view's transaction
    locked = sql[next(i for i, s in enumerate(sql) if "next_index = next_index + 1" in s):]
    assert len(locked) == 6, [s[:80] for s in locked]
    # each alias a new version is created with: 2 statements (not held yet) and its event; each tag 1 and its event
    with CaptureQueriesContext(connection) as captured:
        body = {"name": "m", "type": "model", "aliases": ["best", "prod"], "tags": ["eu", "a"]}
        assert c.post(f"{P}/artifacts/", body, format="json").status_code == 201
    assert len(captured) == 11 + 2 * 3 + 2 * 2, [q["sql"][:80] for q in captured]


def test_a_new_version_records_the_events_and_signals_it_did_with_savepoints(team, project, bob):
    """The savepoint-free path moves aliases without Model.save(): the same events, in the same
    order, with the same facts and actor, and post_save says `created` as save() said it."""
    from django.db.models.signals import post_save

    from tracking.models import ArtifactAlias

    signalled = []

    def alias_saved(sender, instance, created, update_fields, **kwargs):
        signalled.append((instance.alias, instance.version.index, created, update_fields and sorted(update_fields), instance.pk))

    c = token_client(bob)
    post_save.connect(alias_saved, sender=ArtifactAlias)
    try:
        assert c.post(f"{P}/artifacts/", {"name": "m", "type": "model", "aliases": ["best"], "tags": ["eu"]}, format="json").status_code == 201
        body = {"name": "m", "type": "model", "aliases": ["best", "prod", "best", "latest"], "tags": ["a", "eu", "a"]}
        assert c.post(f"{P}/artifacts/", body, format="json").status_code == 201
    finally:
        post_save.disconnect(alias_saved, sender=ArtifactAlias)

    events = [(e.type, e.version.index, e.facts, e.actor_id, e.collection.name) for e in Event.objects.order_by("id")]
    created = {"aliases": ["best"], "tags": ["eu"], "collection_type": "model"}
    again = {"aliases": ["best", "prod", "best", "latest"], "tags": ["a", "eu", "a"], "collection_type": "model"}
    assert events == [
        ("CREATE_ARTIFACT", 0, created, bob.pk, "m"),
        ("ADD_ARTIFACT_ALIAS", 0, {"alias": "latest"}, bob.pk, "m"),
        ("ADD_ARTIFACT_ALIAS", 0, {"alias": "best"}, bob.pk, "m"),
        ("ADD_ARTIFACT_TAG", 0, {"tag": "eu"}, bob.pk, "m"),
        ("CREATE_ARTIFACT", 1, again, bob.pk, "m"),
        ("ADD_ARTIFACT_ALIAS", 1, {"alias": "latest"}, bob.pk, "m"),
        ("ADD_ARTIFACT_ALIAS", 1, {"alias": "best"}, bob.pk, "m"),
        ("ADD_ARTIFACT_ALIAS", 1, {"alias": "prod"}, bob.pk, "m"),
        ("ADD_ARTIFACT_TAG", 1, {"tag": "a"}, bob.pk, "m"),
        ("ADD_ARTIFACT_TAG", 1, {"tag": "eu"}, bob.pk, "m"),
    ]
    rows = {a.alias: a.pk for a in ArtifactAlias.objects.all()}
    moved = ["created_by", "updated_at", "version"]
    assert signalled == [
        ("latest", 0, True, None, rows["latest"]),
        ("best", 0, True, None, rows["best"]),
        ("latest", 1, False, moved, rows["latest"]),
        ("best", 1, False, moved, rows["best"]),
        ("prod", 1, True, None, rows["prod"]),
    ]
    assert {a.alias: (a.version.index, a.created_by_id) for a in ArtifactAlias.objects.all()} == {"latest": (1, bob.pk), "best": (1, bob.pk), "prod": (1, bob.pk)}


BOOM = {
    "sqlite": ["CREATE TRIGGER boom BEFORE INSERT ON {table} WHEN NEW.{column} = 'boom' BEGIN SELECT RAISE(ABORT, 'injected'); END"],
    "postgresql": [
        "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN IF NEW.{column} = 'boom' THEN RAISE unique_violation USING MESSAGE = 'injected'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER boom BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION boom()",
    ],
}


@pytest.mark.parametrize("table, column, body", [
    ("tracking_artifactalias", "alias", {"aliases": ["best", "boom", "prod"], "tags": ["eu"]}),
    ("tracking_artifacttag", "tag", {"aliases": ["best"], "tags": ["eu", "boom", "a"]}),
])
def test_an_artifact_post_that_fails_half_way_leaves_nothing(team, project, bob, table, column, body):
    """With no savepoint of its own, a database error half-way through create_version (here a
    trigger's, raising what a unique constraint raises, after the version, `latest`'s move and
    their events are written) fails the view's whole transaction: no version, no alias moved or added, no tag, no event."""
    from tracking.models import ArtifactAlias, ArtifactTag, ArtifactVersion

    c = token_client(bob)
    assert c.post(f"{P}/artifacts/", {"name": "m", "type": "model"}, format="json").status_code == 201
    before = (Event.objects.count(), ArtifactTag.objects.count(), list(ArtifactAlias.objects.values_list("alias", "version__index", "updated_at")))
    with connection.cursor() as cursor:
        for statement in BOOM[connection.vendor]:
            cursor.execute(statement.format(table=table, column=column))
    failed = c.post(f"{P}/artifacts/", {"name": "m", "type": "model", **body}, format="json")
    assert (failed.status_code, failed.json()) == (409, {"detail": "This conflicts with an existing object."})  # as any IntegrityError
    assert list(ArtifactVersion.objects.values_list("index", flat=True)) == [0]
    assert ArtifactCollection.objects.get().next_index == 1
    assert (Event.objects.count(), ArtifactTag.objects.count(), list(ArtifactAlias.objects.values_list("alias", "version__index", "updated_at"))) == before
    # and the next POST takes v1, as if the failed one had never been
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER boom" if connection.vendor == "sqlite" else f"DROP TRIGGER boom ON {table}")
    assert c.post(f"{P}/artifacts/", {"name": "m", "type": "model", **body}, format="json").json()["version"] == "v1"
