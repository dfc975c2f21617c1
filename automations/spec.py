"""Reading and validating an automation's scope, event filter and action, with the defaults of
SPEC.md. The REST API and the admin form both go through here, so they refuse the same things
with the same messages. Errors are raised as SpecError({"section": {"field": ["message"]}})."""

import json
import math
from functools import lru_cache

import re2

from actions.models import IntegrationKind
from actions.payloads import unknown_variables
from tracking.models import ArtifactCollection
from tracking.serializers import METRIC_KEY_RE

from .models import RUN_EVENTS, SCOPE_EVENTS, ActionType, EventType, ScopeType

AGGS = ("AVERAGE", "MIN", "MAX")
CMPS = ("$gt", "$gte", "$lt", "$lte", "$eq", "$ne")
DIRS = ("INCREASE", "DECREASE", "ANY")
RUN_STATES = ("RUNNING", "FINISHED", "FAILED")
SEVERITIES = ("INFO", "WARN", "ERROR")
MAX_REGEX = 500
MAX_PAYLOAD = 65536


class SpecError(Exception):
    def __init__(self, errors):
        super().__init__(errors)
        self.errors = errors


@lru_cache(maxsize=1024)
def compile_regex(pattern):
    """RE2: linear time whatever the pattern (no catastrophic backtracking)."""
    return re2.compile(pattern)


def regex_search(pattern, text):
    return compile_regex(pattern).search(text or "") is not None


class _Reader:
    """Collects field errors of one section while reading values with their defaults."""

    def __init__(self, section, data, allowed):
        self.section = section
        self.errors = {}
        if not isinstance(data, dict):
            raise SpecError({section: ["Must be an object."]})
        self.data = data
        for key in data:
            if key not in allowed:
                self.errors[key] = [f"Unknown field for this type; allowed: {', '.join(sorted(allowed))}."]

    def fail(self, field, message):
        self.errors.setdefault(field, []).append(message)

    def done(self):
        if self.errors:
            raise SpecError({self.section: self.errors})

    def present(self, field):
        return self.data.get(field) not in (None, "")

    def choice(self, field, choices, default=None, required=False):
        value = self.data.get(field, default)
        if value in (None, ""):
            if required:
                self.fail(field, f"This field is required; one of {', '.join(choices)}.")
            return default
        if value not in choices:
            self.fail(field, f"{value!r} is not one of {', '.join(choices)}.")
        return value

    def integer(self, field, default, low, high):
        value = self.data.get(field, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(field, f"Must be a whole number from {low} to {high}.")
            return default
        return value

    def number(self, field, default=None, positive=False, required=False):
        value = self.data.get(field, default)
        if value is None:
            if required:
                self.fail(field, "This field is required.")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(field, "Must be a finite number.")
            return None
        if positive and value <= 0:
            self.fail(field, "Must be greater than 0.")
        return value

    def regex(self, field, required=False):
        value = self.data.get(field)
        if value in (None, ""):
            if required:
                self.fail(field, "This field is required.")
            return None
        if not isinstance(value, str) or len(value) > MAX_REGEX:
            self.fail(field, f"Must be a regular expression of at most {MAX_REGEX} characters.")
            return None
        try:
            compile_regex(value)
        except re2.error as exc:
            self.fail(field, f"Not a valid regular expression: {exc}.")
        return value

    def text(self, field, max_length, default=""):
        value = self.data.get(field, default)
        if value is None:
            return default
        if not isinstance(value, str) or len(value) > max_length:
            self.fail(field, f"Must be text of at most {max_length} characters.")
            return default
        return value

    def metric(self):
        value = self.data.get("metric")
        if not isinstance(value, str) or not METRIC_KEY_RE.match(value):
            self.fail("metric", "Required: a metric name (letters, digits and _./:@+-, up to 128).")
        return value


def parse_scope(team, data):
    """{"type", "project"?, "registry"?, "collection"?} -> model fields."""
    if not isinstance(data, dict):
        raise SpecError({"scope": ["Must be an object with a type."]})
    scope_type = data.get("type")
    needs = {
        ScopeType.PROJECT: ("project",),
        ScopeType.ARTIFACT_COLLECTION: ("project", "collection"),
        ScopeType.REGISTRY: ("registry",),
        ScopeType.REGISTRY_COLLECTION: ("registry", "collection"),
        ScopeType.TEAM: (),
    }
    if scope_type not in needs:
        raise SpecError({"scope": {"type": [f"Must be one of {', '.join(needs)}."]}})
    reader = _Reader("scope", data, {"type", *needs[scope_type]})
    for field in needs[scope_type]:
        if not isinstance(data.get(field), str) or not data.get(field):
            reader.fail(field, "This field is required (a name).")
    reader.done()
    fields = {"scope_type": scope_type, "project": None, "registry": None, "collection": None}
    if "project" in needs[scope_type]:
        fields["project"] = team.projects.filter(name=data["project"]).first()
        if fields["project"] is None:
            raise SpecError({"scope": {"project": [f"No project {data['project']!r} in team {team.name}."]}})
    if "registry" in needs[scope_type]:
        fields["registry"] = team.registries.filter(name=data["registry"]).first()
        if fields["registry"] is None:
            raise SpecError({"scope": {"registry": [f"No registry {data['registry']!r} in team {team.name}."]}})
    if "collection" in needs[scope_type]:
        owner = {"project": fields["project"]} if fields["project"] else {"registry": fields["registry"]}
        fields["collection"] = ArtifactCollection.objects.filter(name=data["collection"], **owner).first()
        if fields["collection"] is None:
            raise SpecError({"scope": {"collection": [f"No collection {data['collection']!r} there."]}})
        if scope_type == ScopeType.ARTIFACT_COLLECTION:
            fields["project"] = None  # the collection says it all; keeps the lookup index exact
        else:
            fields["registry"] = None
    return fields


EVENT_FIELDS = {
    EventType.CREATE_ARTIFACT: {"collection_type"},
    EventType.LINK_ARTIFACT: {"alias_regex"},
    EventType.ADD_ARTIFACT_ALIAS: {"alias_regex"},
    EventType.ADD_ARTIFACT_TAG: {"tag_regex"},
    EventType.RUN_STATE: {"states", "run_filter"},
    EventType.RUN_METRIC_THRESHOLD: {"metric", "window", "agg", "cmp", "threshold", "run_filter"},
    EventType.RUN_METRIC_CHANGE: {"metric", "agg", "current_window", "prior_window", "change_type", "change_dir", "change_amount", "run_filter"},
    EventType.RUN_METRIC_ZSCORE: {"metric", "window", "threshold", "change_dir", "basis", "run_filter"},
}


def parse_event(scope_type, data):
    """{"type", …filter} -> (event_type, filter with defaults)."""
    if not isinstance(data, dict):
        raise SpecError({"event": ["Must be an object with a type."]})
    event_type = data.get("type")
    if event_type not in EVENT_FIELDS:
        raise SpecError({"event": {"type": [f"Must be one of {', '.join(EVENT_FIELDS)}."]}})
    if scope_type in SCOPE_EVENTS and event_type not in SCOPE_EVENTS[scope_type]:
        allowed = ", ".join(sorted(SCOPE_EVENTS[scope_type]))
        raise SpecError({"event": {"type": [f"{event_type} cannot be used with a {scope_type} scope; it allows {allowed}."]}})
    r = _Reader("event", data, {"type", *EVENT_FIELDS[event_type]})
    f = {}
    if event_type == EventType.CREATE_ARTIFACT:
        if r.present("collection_type"):
            f["collection_type"] = r.text("collection_type", 64)
    elif event_type == EventType.LINK_ARTIFACT:
        if r.present("alias_regex"):
            f["alias_regex"] = r.regex("alias_regex")
    elif event_type == EventType.ADD_ARTIFACT_ALIAS:
        f["alias_regex"] = r.regex("alias_regex", required=True)
    elif event_type == EventType.ADD_ARTIFACT_TAG:
        f["tag_regex"] = r.regex("tag_regex", required=True)
    elif event_type == EventType.RUN_STATE:
        states = data.get("states")
        if not isinstance(states, list) or not states or any(s not in RUN_STATES for s in states):
            r.fail("states", f"Required: a non-empty list of {', '.join(RUN_STATES)}.")
        else:
            f["states"] = sorted(set(states))
    elif event_type == EventType.RUN_METRIC_THRESHOLD:
        f["metric"] = r.metric()
        f["window"] = r.integer("window", 5, 1, 1000)
        f["agg"] = r.choice("agg", AGGS)
        f["cmp"] = r.choice("cmp", CMPS, required=True)
        f["threshold"] = r.number("threshold", required=True)
    elif event_type == EventType.RUN_METRIC_CHANGE:
        f["metric"] = r.metric()
        f["agg"] = r.choice("agg", AGGS, default="AVERAGE")
        f["current_window"] = r.integer("current_window", 10, 1, 1000)
        f["prior_window"] = r.integer("prior_window", 50, 1, 10000)
        f["change_type"] = r.choice("change_type", ("ABSOLUTE", "RELATIVE"), default="RELATIVE")
        f["change_dir"] = r.choice("change_dir", DIRS, default="ANY")
        f["change_amount"] = r.number("change_amount", positive=True, required=True)
    elif event_type == EventType.RUN_METRIC_ZSCORE:
        f["metric"] = r.metric()
        f["window"] = r.integer("window", 30, 2, 1000)
        f["threshold"] = r.number("threshold", default=3.0, positive=True)
        f["change_dir"] = r.choice("change_dir", DIRS, default="ANY")
        f["basis"] = r.choice("basis", ("runs", "history"), default="runs")
    if event_type in RUN_EVENTS and data.get("run_filter") not in (None, {}):
        f["run_filter"] = _parse_run_filter(r, data["run_filter"])
    r.done()
    return event_type, f


def _parse_run_filter(reader, value):
    if not isinstance(value, dict) or set(value) - {"user", "name_regex"}:
        reader.fail("run_filter", "Must be an object with user and/or name_regex.")
        return None
    clean = {}
    if value.get("user"):
        if not isinstance(value["user"], str) or len(value["user"]) > 150:
            reader.fail("run_filter", "user must be a username.")
        clean["user"] = value["user"]
    if value.get("name_regex"):
        sub = _Reader("event", {"name_regex": value["name_regex"]}, {"name_regex"})
        sub.regex("name_regex")
        for messages in sub.errors.values():
            reader.fail("run_filter", "name_regex: " + messages[0])
        clean["name_regex"] = value["name_regex"]
    return clean


ACTION_FIELDS = {
    ActionType.WEBHOOK: {"integration", "payload"},
    ActionType.SLACK: {"integration", "title", "message", "severity"},
    ActionType.NO_OP: set(),
}
ACTION_KIND = {ActionType.WEBHOOK: IntegrationKind.WEBHOOK, ActionType.SLACK: IntegrationKind.SLACK}


def parse_action(team, data):
    """{"type", …} -> (action_type, integration, config)."""
    if not isinstance(data, dict):
        raise SpecError({"action": ["Must be an object with a type."]})
    action_type = data.get("type")
    if action_type not in ACTION_FIELDS:
        raise SpecError({"action": {"type": [f"Must be one of {', '.join(ACTION_FIELDS)}."]}})
    r = _Reader("action", data, {"type", *ACTION_FIELDS[action_type]})
    if action_type == ActionType.NO_OP:
        r.done()
        return action_type, None, {}
    integration = resolve_integration(team, data.get("integration"), ACTION_KIND[action_type], r)
    config = {}
    if action_type == ActionType.WEBHOOK:
        payload = data.get("payload")
        if not isinstance(payload, (dict, list)):
            r.fail("payload", "Required: a JSON object (the payload template).")
        else:
            if len(json.dumps(payload)) > MAX_PAYLOAD:
                r.fail("payload", f"At most {MAX_PAYLOAD} bytes.")
            names = integration.attached_secrets().keys() if integration else ()
            unknown = unknown_variables(payload, names)
            if unknown:
                r.fail("payload", f"Unknown variables: {', '.join('${' + n + '}' for n in unknown)}. "
                                  f"Known: the payload variables and this webhook's secrets ({', '.join(sorted(names)) or 'none attached'}).")
            config["payload"] = payload
    else:
        config["title"] = r.text("title", 200)
        config["message"] = r.text("message", 3000)
        config["severity"] = r.choice("severity", SEVERITIES, default="INFO")
        for field in ("title", "message"):
            unknown = unknown_variables(config[field] or "")
            if unknown:
                r.fail(field, f"Unknown variables: {', '.join('${' + n + '}' for n in unknown)}.")
    r.done()
    return action_type, integration, config


def resolve_integration(team, ref, kind, reader):
    if ref in (None, ""):
        reader.fail("integration", f"Required: the id or name of a {kind} integration of the team.")
        return None
    qs = team.integrations.select_related("access_token_secret", "secret")
    if isinstance(ref, int) and not isinstance(ref, bool):
        integration = qs.filter(pk=ref).first()
    elif isinstance(ref, str):
        integration = qs.filter(pk=int(ref)).first() if ref.isdigit() else qs.filter(name=ref).first()
    else:
        integration = None
    if integration is None:
        reader.fail("integration", f"No integration {ref!r} in team {team.name}.")
    elif integration.kind != kind:
        reader.fail("integration", f"{integration.name} is a {integration.kind} integration; this action needs a {kind} one.")
        integration = None
    return integration


def describe_scope(automation):
    data = {"type": automation.scope_type}
    if automation.collection_id:
        owner = automation.collection.project or automation.collection.registry
        data["project" if automation.collection.project_id else "registry"] = owner.name
        data["collection"] = automation.collection.name
    if automation.project_id:
        data["project"] = automation.project.name
    if automation.registry_id:
        data["registry"] = automation.registry.name
    return data


def describe_action(automation):
    data = {"type": automation.action_type, **automation.action_config}
    if automation.integration_id:
        data["integration"] = automation.integration_id
        data["integration_name"] = automation.integration.name
    return data

