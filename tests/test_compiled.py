"""ops.compiled: hot queries compiled once, then run with new values, give what the ORM gives —
the same rows, the same related objects, never the rows of the values it was compiled with —
and a query whose SQL depends on more than its values is refused, not run wrong."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from ops.compiled import Compiled
from teams.models import Membership
from tracking import api as tracking_api
from tracking.models import Run

from .conftest import P
from .token_client import token_client

pytestmark = pytest.mark.django_db

memberships = Compiled(lambda team_name, user_id: Membership.objects.select_related("team", "user").filter(team__name=team_name, user_id=user_id))


def fields(obj):
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_each_call_finds_the_rows_of_its_own_values_as_the_orm_does(team, alice, bob, make_user):
    other = make_user("olga")
    cases = [(team.name, alice.pk), (team.name, bob.pk), (team.name, other.pk), ("no-such-team", alice.pk)]
    for name, user_id in cases * 2:  # the second round runs the compiled SQL only
        orm = list(Membership.objects.select_related("team", "user").filter(team__name=name, user_id=user_id))
        compiled = memberships(name, user_id)
        assert [fields(m) for m in compiled] == [fields(m) for m in orm]
        assert [(fields(m.team), fields(m.user)) for m in compiled] == [(fields(m.team), fields(m.user)) for m in orm]


def test_a_compiled_query_is_one_query_with_its_related_objects_loaded(team, alice):
    memberships(team.name, alice.pk)
    with CaptureQueriesContext(connection) as captured:
        (membership,) = memberships(team.name, alice.pk)
        assert (membership.team.name, membership.user.username) == (team.name, alice.username)
    assert len(captured) == 1


def test_a_token_is_found_by_its_own_key(alice, bob):
    keys = {user.pk: Token.objects.create(user=user).key for user in (alice, bob)}
    by_key = Compiled(lambda key: Token.objects.select_related("user").filter(key=key))
    for user_id, key in [*keys.items(), *keys.items()]:
        (token,) = by_key(key)
        assert token.user.pk == user_id
    assert by_key("x" * 40) == []


@pytest.mark.parametrize("build, values, error", [
    (lambda name: Membership.objects.filter(team__name__icontains=name), ("a",), ValueError),  # the value reaches SQL as %a%
    (lambda n: Membership.objects.all()[:n], (3,), ValueError),  # a LIMIT is written into the SQL
    (lambda user_id: Membership.objects.filter(user_id=user_id), (1.5,), TypeError),
    (lambda flag: Membership.objects.filter(user__is_active=flag), (True,), TypeError),
])
def test_a_query_whose_sql_depends_on_more_than_its_values_is_refused(team, build, values, error):
    with pytest.raises(error):
        Compiled(build)(*values)


@pytest.mark.parametrize("first", ["vision", "exp-2"])
def test_a_run_named_as_its_project_is_never_mistaken_for_another(team, project, alice, monkeypatch, first):
    """The run lookup takes (team, project name, run id): a process whose first run call was to
    run `vision` of project `vision` must still find run exp-2 afterwards, and change only it."""
    monkeypatch.setattr(tracking_api._run, "compiled", None)  # as in a process that has served no run call yet
    for run_id in ("vision", "exp-2"):
        Run.objects.create(project=project, run_id=run_id, name=run_id, user=alice)
    client = token_client(alice)
    assert client.get(f"{P}/runs/{first}/").json()["id"] == first
    for run_id in ("exp-2", "vision"):
        answer = client.patch(f"{P}/runs/{run_id}/", {"state": "finished"}, format="json")
        assert (answer.status_code, answer.json()["id"]) == (200, run_id)
        assert Run.objects.get(project=project, run_id=run_id).state == "finished"
    assert client.get(f"{P}/runs/missing/").status_code == 404


def test_on_postgresql_a_compiled_query_is_planned_once_per_connection(team, alice, bob):
    """A prepared statement (config/postgresql): run six times with other values, PostgreSQL
    holds it once, and has run it six times; the rows are each call's own. Django's own queries
    are never prepared."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's prepared statements")
    query = Compiled(lambda user_id: Membership.objects.select_related("team", "user").filter(user_id=user_id))
    for user in [alice, bob] * 3:
        (membership,) = query(user.pk)
        assert membership.user.username == user.username
    assert Membership.objects.filter(user=alice).count() == 1  # Django's own, bound on the client
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements WHERE NOT from_sql")
        prepared = cursor.fetchall()
    mine = [runs for statement, runs in prepared if '"teams_membership"."user_id" = $1' in statement]
    assert mine == [6], prepared
    assert not [s for s, _ in prepared if "COUNT(" in s]


def test_insert_writes_the_row_save_writes(team, project, alice):
    """ops.compiled.insert (events, artifact versions): the row it writes reads back as the one
    `save` writes from the same instance — defaults, the creation time, JSON and foreign keys —
    and the instance it returns is saved, its primary key set."""
    from events.models import Event
    from ops.compiled import insert

    def made(**kwargs):
        return Event(team=team, project=project, type="CREATE_ARTIFACT", actor=alice, facts={"a": [1, "é ☃", None, {"b": 1.5}]}, **kwargs)

    for kwargs in ({}, {"cause": "d-1", "sample": True}):
        saved, inserted = made(**kwargs), made(**kwargs)
        saved.save(force_insert=True)
        assert insert(inserted) is inserted
        assert inserted.pk is not None and inserted.pk != saved.pk and not inserted._state.adding
        a, b = (fields(Event.objects.get(pk=e.pk)) for e in (saved, inserted))
        assert b["created_at"] is not None and abs((b["created_at"] - a["created_at"]).total_seconds()) < 60
        assert {k: v for k, v in a.items() if k not in ("id", "created_at")} == {k: v for k, v in b.items() if k not in ("id", "created_at")}
        assert inserted.created_at == b["created_at"]


def test_insert_refuses_an_unsaved_related_object_as_save_does(team, project):
    from events.models import Event, EventType
    from ops.compiled import insert

    unsaved = Run(project=project, run_id="never-saved", name="x")
    for write in (lambda e: e.save(), insert):
        with pytest.raises(ValueError, match="unsaved related object"):
            write(Event(team=team, type=EventType.RUN_STATE, run=unsaved))
    assert not Event.objects.exists()
