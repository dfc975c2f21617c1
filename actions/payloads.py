"""Payload templates: JSON whose strings may hold `${variable}` references.

Substitution happens on the parsed JSON, value by value, and the result is serialised again, so
it is always valid JSON whatever a value holds (quotes, backslashes, newlines, unicode). A
string that is exactly one reference to a number, an object or a list keeps that type.
"""

import json
import re

VARIABLES = {
    "event_type": "the event, e.g. ADD_ARTIFACT_ALIAS",
    "event_author": "the username of whoever caused the event",
    "entity_name": "the team",
    "project_name": "the project (empty for registry events)",
    "automation_name": "this automation",
    "event_url": "link to the object's page",
    "alias": "the alias added (or given with a link)",
    "tag": "the tag added",
    "artifact_collection_name": "the artifact or registry collection",
    "artifact_version": "stable id reference of the version",
    "artifact_version_string": "team/project/name:vN or team/registry/collection:vN",
    "artifact_version_index": "the version index (a number)",
    "artifact_metadata.KEY": "a top-level key of the version's metadata",
    "registry_name": "the registry (empty for project events)",
    "run_id": "the run's id",
    "run_name": "the run's display name",
    "run_state": "the run's state",
    "metric_name": "the metric of a metric condition",
    "metric_value": "the aggregated value that met the condition (a number)",
    "metric_values": "the window of values (a list)",
    "metric_filter": "the condition in words, e.g. average(loss) over 5 < 0.1",
}
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?:\.[^${}]+)?)\}")
MASK = "********"


def references(template):
    """Every variable name referenced anywhere in a template (keys and values)."""
    found = []

    def walk(node):
        if isinstance(node, str):
            found.extend(REFERENCE.findall(node))
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(key)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(template)
    return found


def unknown_variables(template, secret_names=()):
    """The references that are neither a payload variable nor an attached secret."""
    allowed = set(VARIABLES) | set(secret_names)
    return sorted({name for name in references(template) if name not in allowed and not name.startswith("artifact_metadata.")})


def render(template, context, secrets=None):
    """Substitute references. `secrets` maps names to the values to put in their place (the real
    values at send time, MASK for anything stored or shown). Unknown names become ''."""
    secrets = secrets or {}

    def lookup(name):
        if name in secrets:
            return secrets[name]
        if name.startswith("artifact_metadata."):
            return (context.get("artifact_metadata") or {}).get(name.split(".", 1)[1], "")
        value = context.get(name, "")
        return "" if value is None else value

    def text(value):
        return value if isinstance(value, str) else json.dumps(value)

    def substitute(node):
        if isinstance(node, str):
            whole = REFERENCE.fullmatch(node)
            if whole:
                value = lookup(whole.group(1))
                keep = isinstance(value, (int, float, dict, list)) and not isinstance(value, bool)
                return value if keep else text(value)
            return REFERENCE.sub(lambda m: text(lookup(m.group(1))), node)
        if isinstance(node, dict):
            return {substitute(k): substitute(v) for k, v in node.items()}
        if isinstance(node, list):
            return [substitute(item) for item in node]
        return node

    return substitute(template)


def mask_values(text, values):
    """Replace every occurrence of the given secret values in `text` (a response body, an error)."""
    if not text:
        return text
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def sample_context(automation_name="sample automation"):
    """A plausible context for previews and tests."""
    return {
        "event_type": "ADD_ARTIFACT_ALIAS",
        "event_author": "alice",
        "entity_name": "acme",
        "project_name": "vision",
        "automation_name": automation_name,
        "event_url": "http://localhost:8000/acme/registries/models/classifier/v3/",
        "alias": "production",
        "tag": "",
        "artifact_collection_name": "classifier",
        "artifact_version": "42",
        "artifact_version_string": "acme/models/classifier:v3",
        "artifact_version_index": 3,
        "artifact_metadata": {"accuracy": 0.93},
        "registry_name": "models",
        "run_id": "",
        "run_name": "",
        "run_state": "",
        "metric_name": "",
        "metric_value": "",
        "metric_values": "",
        "metric_filter": "",
    }
