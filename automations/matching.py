"""Which automations an event triggers, and the facts each triggering carries.

`candidates` finds the enabled automations whose scope covers an event through the indexes on
project / registry / collection / team (never a scan of every automation); `match` hands each to
its event type's definition (automations/event_types). Run metric conditions read each
(run, metric) window once per batch, at the largest size any of them needs (`Window`).
"""

import threading
from collections import OrderedDict

from django.db import connection
from django.db.models import Q

from ops.compiled import prepared_cursor

from . import event_types
from .event_types.base import Window
from .models import AutomationsChanged, RunCondition, ScopeType


CACHED_SCOPES = 512
_cache = OrderedDict()  # {(scope, event types): (stamp, automations)}, this process's
_lock = threading.Lock()


def candidates(event, queryset, stamps=None):
    """The automations of `queryset` whose scope and event type cover `event` and that were
    enabled when it occurred (one created or switched on later never fires for it).

    The automations of one scope are loaded once and kept (a history batch of a project with
    100 metric automations does not load and build 100 of them again): each evaluation reads
    the team's AutomationsChanged counter (one primary-key read), which every change to one of
    its automations bumps, and loads them again when it moved. `stamps` keeps the counters read
    in one transaction, so a batch of events reads each team's once."""
    names = event_types.triggered_by(event.type)
    allowed = set()
    for name in names:
        allowed.update(event_types.get(name).scopes)
    collection_scope = ScopeType.REGISTRY_COLLECTION if event.registry_id else ScopeType.ARTIFACT_COLLECTION
    places = [
        (ScopeType.TEAM, "team_id", event.team_id),
        (ScopeType.PROJECT, "project_id", event.project_id),
        (ScopeType.REGISTRY, "registry_id", event.registry_id),
        (collection_scope, "collection_id", event.collection_id),
    ]
    places = [(scope_type, field, value) for scope_type, field, value in places if scope_type in allowed and value is not None]

    def watching():  # built only when it is read: building the filter cost more than a cache hit
        scope = Q(pk__in=[])
        for scope_type, field, value in places:
            scope |= Q(scope_type=scope_type, **{field: value})
        return queryset.filter(scope, enabled=True, event_type__in=names)

    if queryset.query.has_filters():  # only the whole table is cached
        return list(watching().filter(enabled_since__lte=event.created_at))
    if stamps is None:
        stamps = {}
    if event.team_id not in stamps:
        stamps[event.team_id] = AutomationsChanged.of(event.team_id)
    stamp = stamps[event.team_id]
    key = (event.team_id, tuple(sorted(names)), tuple((scope_type, value) for scope_type, _, value in places))
    hit = _cache.get(key)
    if hit is None or stamp is None or hit[0] != stamp:
        hit = (stamp, list(watching()))
    with _lock:
        _cache[key] = hit
        _cache.move_to_end(key)
        while len(_cache) > CACHED_SCOPES:
            _cache.popitem(last=False)
    return [a for a in hit[1] if a.enabled_since is not None and a.enabled_since <= event.created_at]


def match(automation, event, conditions):
    """The context of a triggering as a dict, or None when the automation does not fire.
    `conditions` maps automation ids to their locked RunCondition for the event's run."""
    return event_types.get(automation.event_type).match(automation, event, conditions.get(automation.pk))


def prepare_window(event, automations):
    """Attach to `event` the batch's one Window, planned for the largest read of each kind."""
    plan = {}
    for automation in automations:
        reads = automation.__dict__.get("_reads")
        if reads is None:  # kept on the automation, which the candidates' cache keeps between batches
            reads = automation.__dict__["_reads"] = event_types.get(automation.event_type).reads(automation)
        for what, size in reads:
            if plan.get(what, 0) < size:
                plan[what] = size
    event.window = Window(event, plan)


class Condition:
    """An automation's per-run state (a RunCondition row), as the definitions read and change it:
    loaded in one raw query (building 100 model instances cost more than the query).
    `last_fired_at` is converted from what the database returned when first read: most
    evaluations never read it (on SQLite, parsing the timestamps of 100 rows was a fifth of what
    100 automations added to a batch)."""

    __slots__ = ("pk", "automation_id", "run_id", "met", "last_event_id", "_fired", "_stored", "fired_set", "was", "changed")

    def __init__(self, pk, automation_id, run_id, met, last_event_id, stored_fired):
        self.pk, self.automation_id, self.run_id = pk, automation_id, run_id
        self.met, self.last_event_id = bool(met), last_event_id
        self._fired, self._stored = None, stored_fired
        self.was, self.fired_set, self.changed = self.met, False, False  # `was`: met as read

    @property
    def last_fired_at(self):
        if self._stored is not None:
            convert = getattr(connection.ops, "convert_datetimefield_value", None)  # SQLite stores text
            self._fired, self._stored = convert(self._stored, None, connection) if convert else self._stored, None
        return self._fired

    @last_fired_at.setter
    def last_fired_at(self, value):
        self._fired, self._stored, self.fired_set = value, None, True


TABLE = RunCondition._meta.db_table


def _locked_conditions(run_id, ids=None):
    """The run's conditions, of the automations `ids` (else all of them), locked in automation
    order. All of the run's are read by its id alone: on PostgreSQL a list of 100 ids cost more
    to send and plan than the rows of automations that do not want them cost to read."""
    only = f" AND automation_id IN ({', '.join(['%s'] * len(ids))})" if ids else ""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    # on SQLite, as the text stored: sqlite3 would parse each row's timestamp, read or not
    fired = "CAST(last_fired_at AS TEXT)" if connection.vendor == "sqlite" else "last_fired_at"
    with prepared_cursor() as cursor:
        cursor.execute(f"SELECT id, automation_id, met, last_event_id, {fired} FROM {TABLE}"
                       f" WHERE run_id = %s{only} ORDER BY automation_id{lock}", [run_id, *(ids or ())])
        rows = cursor.fetchall()
    return {row[1]: Condition(row[0], row[1], run_id, *row[2:]) for row in rows}


def load_conditions(event, automations):
    """{automation id: its RunCondition for the event's run}, for the automations whose
    definition keeps per-run state for this event, each row created if need be and locked until
    the evaluation commits: two workers evaluating events of one run take turns (in automation
    order, so never deadlock). The definitions change them in memory; `save_conditions` writes
    them, in one statement, before the evaluation commits."""
    wanting = [a for a in automations if event_types.get(a.event_type).wants_condition(a, event)]
    if not wanting:
        return {}
    prepare_window(event, wanting)
    ids = sorted(a.pk for a in wanting)
    conditions = _locked_conditions(event.run_id)
    missing = [pk for pk in ids if pk not in conditions]
    if missing:  # a new automation or a new run: create its rows (a racing worker may too), then lock them
        RunCondition.objects.bulk_create([RunCondition(automation_id=pk, run_id=event.run_id) for pk in missing], ignore_conflicts=True)
        conditions.update(_locked_conditions(event.run_id, missing))
    return {pk: conditions[pk] for pk in ids}


def save_conditions(conditions):
    """Write what the evaluation changed, in one statement: each field set, per group of
    conditions written alike (the ones that only saw this event, the ones that started or stopped
    holding, each firing with its time), by a CASE on the id — never a statement per automation
    that merely looked, and none for a condition nothing changed."""
    groups = {}
    for condition in conditions.values():
        if not condition.changed:
            continue
        fields = [("last_event_id", condition.last_event_id)]
        if condition.met != condition.was:
            fields.append(("met", condition.met))
        if condition.fired_set:
            fields.append(("last_fired_at", connection.ops.adapt_datetimefield_value(condition.last_fired_at)))
        for field in fields:
            groups.setdefault(field, []).append(condition.pk)
    if not groups:
        return
    sets, params, every = {}, [], set()
    for (field, value), pks in groups.items():
        sets.setdefault(field, []).append((value, pks))
        every.update(pks)
    clauses = []
    for field, cases in sets.items():
        if len(cases) == 1 and set(cases[0][1]) == every:
            clauses.append(f"{field} = %s")
            params.append(cases[0][0])
            continue
        whens = []
        for value, pks in cases:
            whens.append(f"WHEN id IN ({', '.join(['%s'] * len(pks))}) THEN %s")
            params += [*pks, value]
        clauses.append(f"{field} = CASE {' '.join(whens)} ELSE {field} END")
    ids = sorted(every)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET {', '.join(clauses)} WHERE id IN ({', '.join(['%s'] * len(ids))})", [*params, *ids])
