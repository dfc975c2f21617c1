"""Payload templates: JSON whose strings may hold `${variable}` references.

Substitution happens on the parsed JSON, value by value, and the result is serialised again, so
it is always valid JSON whatever a value holds (quotes, backslashes, newlines, unicode). A
string that is exactly one reference to a number, an object or a list keeps that type.
"""

import html
import json
import re
from urllib.parse import quote, quote_plus

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


def echoed_forms(value):
    """The ways a receiver is likely to echo a secret back: as is, JSON-escaped (with and without
    \\uXXXX, and with escaped slashes), URL-encoded (either case of hex, '+' or %20 for spaces),
    HTML-escaped, as Python's repr() or ascii() would quote it, and with CRLF line ends."""
    json_ascii, json_utf8 = json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]
    forms = {
        value, value.replace("\n", "\r\n"), json_ascii, json_utf8, json_ascii.replace("/", "\\/"), json_utf8.replace("/", "\\/"),
        html.escape(value), html.escape(value, quote=False), repr(value)[1:-1], ascii(value)[1:-1],
    }
    for encoded in (quote(value, safe=""), quote(value), quote_plus(value, safe=""), quote_plus(value)):
        forms.update({encoded, PERCENT_HEX.sub(lambda m: m.group(0).lower(), encoded)})
    return {form for form in forms if form}


PERCENT_HEX = re.compile(r"%[0-9A-F]{2}")


def mask_values(text, values, keep=None, truncated=False):
    """`text` (a response body, an error) with every secret of `values` masked, in any of the forms
    a receiver is likely to echo. With `keep`, the first `keep` characters of the masked text; a
    `truncated` text (the rest of it was not read) also has a secret cut off by its end masked,
    so no part of one ever shows."""
    if not text:
        return text
    forms = sorted({form for value in values if value for form in echoed_forms(value)}, key=len, reverse=True)
    for form in forms:
        text = text.replace(form, MASK)
    if keep is None:
        return text
    if truncated:
        for form in forms:
            lead = form[:8]
            for start in range(max(0, len(text) - len(form) + 1), min(len(text), keep)):
                if text.startswith(lead[: len(text) - start], start) and form.startswith(text[start:]):
                    text = text[:start] + MASK
                    break
    return text[:keep]


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
