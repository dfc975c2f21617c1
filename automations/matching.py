"""Which automations an event triggers, and the facts each triggering carries.

`candidates` finds the enabled automations whose scope covers an event through the indexes on
project / registry / collection / team (never a scan of every automation); `match` applies one
automation's filter. Run metric conditions read only the values their window needs.
"""

import math
import statistics

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from events.models import EventType as E
from tracking.models import MetricPoint, RunMetric

from .models import EventType as A, RunCondition, ScopeType
from .spec import regex_search

# The automation event types an event kind can trigger.
TRIGGERS = {
    E.CREATE_ARTIFACT: [A.CREATE_ARTIFACT],
    E.LINK_ARTIFACT: [A.LINK_ARTIFACT],
    E.ADD_ARTIFACT_ALIAS: [A.ADD_ARTIFACT_ALIAS],
    E.ADD_ARTIFACT_TAG: [A.ADD_ARTIFACT_TAG],
    E.RUN_STATE: [A.RUN_STATE],
    E.RUN_HISTORY: [A.RUN_METRIC_THRESHOLD, A.RUN_METRIC_CHANGE, A.RUN_METRIC_ZSCORE],
}
STATE_NAMES = {"running": "RUNNING", "finished": "FINISHED", "failed": "FAILED", "crashed": "FAILED"}  # killed: never
CMP = {
    "$gt": (lambda a, b: a > b, ">"),
    "$gte": (lambda a, b: a >= b, ">="),
    "$lt": (lambda a, b: a < b, "<"),
    "$lte": (lambda a, b: a <= b, "<="),
    "$eq": (lambda a, b: a == b, "=="),
    "$ne": (lambda a, b: a != b, "!="),
}
AGG = {"AVERAGE": (statistics.fmean, "average"), "MIN": (min, "min"), "MAX": (max, "max")}


def candidates(event, queryset):
    """The automations of `queryset` whose scope and event type cover `event` and that were
    enabled when it occurred (one created or switched on later never fires for it)."""
    scope = Q(scope_type=ScopeType.TEAM, team_id=event.team_id)
    if event.type in (E.RUN_STATE, E.RUN_HISTORY):
        scope = Q(scope_type=ScopeType.PROJECT, project_id=event.project_id)  # run events: project scope only
    elif event.registry_id:
        scope |= Q(scope_type=ScopeType.REGISTRY, registry_id=event.registry_id)
        scope |= Q(scope_type=ScopeType.REGISTRY_COLLECTION, collection_id=event.collection_id)
    else:
        scope |= Q(scope_type=ScopeType.PROJECT, project_id=event.project_id)
        scope |= Q(scope_type=ScopeType.ARTIFACT_COLLECTION, collection_id=event.collection_id)
    return queryset.filter(scope, enabled=True, enabled_since__lte=event.created_at, event_type__in=TRIGGERS[event.type])


def run_passes(run, run_filter):
    if not run_filter:
        return True
    if run_filter.get("user") and (run.user is None or run.user.username != run_filter["user"]):
        return False
    if run_filter.get("name_regex") and not regex_search(run_filter["name_regex"], run.name):
        return False
    return True


def match(automation, event, conditions):
    """The context of a triggering as a dict, or None when the automation does not fire.
    `conditions` maps automation ids to their RunCondition for the event's run (metric events)."""
    f = automation.event_filter
    facts = event.facts
    kind = automation.event_type
    if kind == A.CREATE_ARTIFACT:
        wanted = f.get("collection_type")
        return {} if not wanted or wanted == facts.get("collection_type") else None
    if kind == A.LINK_ARTIFACT:
        if not f.get("alias_regex"):
            return {"alias": ", ".join(facts.get("aliases", []))}
        hits = [a for a in facts.get("aliases", []) if regex_search(f["alias_regex"], a)]
        return {"alias": hits[0]} if hits else None
    if kind == A.ADD_ARTIFACT_ALIAS:
        return {"alias": facts["alias"]} if regex_search(f["alias_regex"], facts.get("alias")) else None
    if kind == A.ADD_ARTIFACT_TAG:
        return {"tag": facts["tag"]} if regex_search(f["tag_regex"], facts.get("tag")) else None
    if not run_passes(event.run, f.get("run_filter")):
        return None
    if kind == A.RUN_STATE:
        state = STATE_NAMES.get(facts.get("new_state"))
        return {"run_state": facts["new_state"]} if state in f["states"] else None
    if f["metric"] not in facts.get("keys", ()):
        return None
    return metric_transition(automation, event, conditions.get(automation.pk))


def finite(values):
    return all(v is not None and math.isfinite(v) for v in values)


def window(run_id, key, n, last_step):
    """The n most recent values up to `last_step`, oldest first; None for non-finite ones."""
    rows = (
        MetricPoint.objects.filter(run_id=run_id, key=key, step__lte=last_step)
        .order_by("-step", "-id")
        .values_list("value", flat=True)[:n]
    )
    return list(reversed(rows))


def evaluate_condition(automation, event):
    """(met, context) for a run metric automation, as of the event's last step."""
    f = automation.event_filter
    kind, metric, run_id, last_step = automation.event_type, f["metric"], event.run_id, event.facts["last_step"]
    if kind == A.RUN_METRIC_THRESHOLD:
        agg = f.get("agg")
        values = window(run_id, metric, f["window"] if agg else 1, last_step)
        if not values or (agg and len(values) < f["window"]) or not finite(values):
            return False, {}
        value = AGG[agg][0](values) if agg else values[-1]
        op, symbol = CMP[f["cmp"]]
        words = f"{AGG[agg][1]}({metric}) over {f['window']}" if agg else metric
        return op(value, f["threshold"]), {"metric_value": value, "metric_values": values, "metric_filter": f"{words} {symbol} {f['threshold']}"}
    if kind == A.RUN_METRIC_CHANGE:
        cur, prior = f["current_window"], f["prior_window"]
        values = window(run_id, metric, cur + prior, last_step)
        if len(values) < cur + prior or not finite(values):
            return False, {}
        fn, name = AGG[f["agg"]]
        before, now = fn(values[:prior]), fn(values[prior:])
        if f["change_type"] == "RELATIVE":
            if before == 0:
                return False, {}
            change = (now - before) / abs(before)
        else:
            change = now - before
        amount = f["change_amount"]
        met = {"INCREASE": change >= amount, "DECREASE": -change >= amount, "ANY": abs(change) >= amount}[f["change_dir"]]
        unit = f"{amount:.0%}" if f["change_type"] == "RELATIVE" else f"{amount}"
        words = f"{name}({metric}) over {cur} changed {f['change_dir'].lower()} by ≥ {unit} vs the {prior} before"
        return met, {"metric_value": now, "metric_values": values[prior:], "metric_filter": words, "metric_change": change}
    # RUN_METRIC_ZSCORE
    if f["basis"] == "history":
        values = window(run_id, metric, f["window"] + 1, last_step)
        if len(values) < 3 or not finite(values):
            return False, {}
        value, reference = values[-1], values[:-1]
    else:
        latest = window(run_id, metric, 1, last_step)
        if not latest or not finite(latest):
            return False, {}
        value = latest[0]
        reference = list(
            RunMetric.objects.filter(key=metric, run__project_id=event.project_id, last_value__isnull=False)
            .exclude(run_id=run_id)
            .order_by("-updated_at", "-id")
            .values_list("last_value", flat=True)[: f["window"]]
        )
        reference = [v for v in reference if math.isfinite(v)]
        if len(reference) < 2:
            return False, {}
    spread = statistics.pstdev(reference)
    if spread == 0:
        return False, {}
    z = (value - statistics.fmean(reference)) / spread
    t = f["threshold"]
    met = {"INCREASE": z >= t, "DECREASE": z <= -t, "ANY": abs(z) >= t}[f["change_dir"]]
    against = f"its last {len(reference)} values" if f["basis"] == "history" else f"{len(reference)} other runs"
    bound = {"INCREASE": f"≥ {t}", "DECREASE": f"≤ -{t}", "ANY": f"beyond ±{t}"}[f["change_dir"]]
    words = f"z-score of {metric} against {against} {bound}"
    return met, {"metric_value": value, "metric_values": reference, "metric_filter": words, "metric_zscore": z}


def metric_transition(automation, event, condition):
    """Fire on the false → true transition, at most once per run per cooldown; re-arm on false.
    `condition` is locked (load_conditions), so two workers never both see the transition."""
    if event.pk <= condition.last_event_id:
        return None  # an older batch evaluated late: the newer one already decided
    met, context = evaluate_condition(automation, event)
    fire = False
    now = timezone.now()
    if met and not condition.met:
        cooled = condition.last_fired_at is None or (now - condition.last_fired_at).total_seconds() >= settings.AUTOMATION_COOLDOWN
        if cooled:
            fire = True
            condition.last_fired_at = now
    condition.met = met
    condition.last_event_id = event.pk
    condition.save(update_fields=["met", "last_event_id", "last_fired_at"])
    if not fire:
        return None
    return {"metric_name": automation.event_filter["metric"], **context}


def load_conditions(event, automations):
    """{automation id: its RunCondition for the event's run}, for the metric automations the
    batch concerns, each row created if need be and locked until the evaluation commits: two
    workers evaluating batches of one run take turns (in automation order, so never deadlock)."""
    if event.type != E.RUN_HISTORY:
        return {}
    keys = set(event.facts.get("keys", ()))
    ids = sorted(a.pk for a in automations if a.event_filter.get("metric") in keys)
    if not ids:
        return {}
    RunCondition.objects.bulk_create([RunCondition(automation_id=pk, run_id=event.run_id) for pk in ids], ignore_conflicts=True)
    locked = RunCondition.objects.select_for_update().filter(run_id=event.run_id, automation_id__in=ids).order_by("automation_id")
    return {c.automation_id: c for c in locked}
