"""Reading and validating an automation's scope, event filter and action, with the defaults of
SPEC.md. The REST API and the admin form both go through here, so they refuse the same things
with the same messages. Errors are raised as SpecError({"section": {"field": ["message"]}}).

SCOPE_NAMES here, and the `fields` of each event type's definition (automations/event_types) and
of each action kind's (automations/action_kinds), say which fields exist, how each is read and
checked, and how the OpenAPI schema describes it (`schema_variants`)."""

import json
import math
from functools import lru_cache

import re2
from django import forms
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from teams.api_input import shown
from teams.validators import NAME_PATTERN
from tracking.models import ArtifactCollection
from tracking.serializers import METRIC_KEY_RE

from .models import ScopeType

AGGS = ("AVERAGE", "MIN", "MAX")
CMPS = ("$gt", "$gte", "$lt", "$lte", "$eq", "$ne")
DIRS = ("INCREASE", "DECREASE", "ANY")
RUN_STATES = ("RUNNING", "FINISHED", "FAILED")
SEVERITIES = ("INFO", "WARN", "ERROR")
MAX_REGEX = 500
MAX_PAYLOAD = 65536
MAX_USERNAME = 150

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is answered with a 400, not logged to stderr


class SpecError(Exception):
    def __init__(self, errors):
        super().__init__(errors)
        self.errors = errors


@lru_cache(maxsize=1024)
def compile_regex(pattern):
    """RE2: linear time whatever the pattern (no catastrophic backtracking)."""
    return re2.compile(pattern, _RE2_OPTIONS)


def regex_search(pattern, text):
    return compile_regex(pattern).search(text or "") is not None


def regex_error(exc):
    """re2 reports its reason as bytes; show it as text."""
    reason = exc.args[0] if exc.args else ""
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def present(value):
    return value not in (None, "") and value != {}


def _one_of(value, choices):
    return isinstance(value, str) and value in choices


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
                self.errors[shown(key)] = [f"Unknown field for this type; allowed: {', '.join(sorted(allowed))}."]

    def fail(self, field, message):
        self.errors.setdefault(field, []).append(message)

    def done(self):
        if self.errors:
            raise SpecError({self.section: self.errors})

    def present(self, field):
        return present(self.data.get(field))

    def choice(self, field, choices, default=None, required=False):
        value = self.data.get(field, default)
        if value in (None, ""):
            if required:
                self.fail(field, f"This field is required; one of {', '.join(choices)}.")
            return default
        if not _one_of(value, choices):
            self.fail(field, f"{_repr(value)} is not one of {', '.join(choices)}.")
            return default
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
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
            self.fail(field, f"Not a valid regular expression: {regex_error(exc)}.")
        return value

    def text(self, field, max_length, default=""):
        value = self.data.get(field, default)
        if value is None:
            return default
        if not isinstance(value, str) or len(value) > max_length:
            self.fail(field, f"Must be text of at most {max_length} characters.")
            return default
        return value

    def metric(self, field="metric"):
        value = self.data.get(field)
        if not isinstance(value, str) or not METRIC_KEY_RE.match(value):
            self.fail(field, "Required: a metric name (letters, digits and _./:@+-, up to 128).")
        return value

    def states(self, field="states"):
        """Run states in either case (the runs API writes them lowercase), stored uppercase."""
        value = self.data.get(field)
        wanted = f"a non-empty list of {', '.join(RUN_STATES)} (either case; CRASHED counts as FAILED, KILLED never triggers)"
        if not isinstance(value, list) or not value:
            self.fail(field, f"Required: {wanted}.")
            return None
        bad = [s for s in value if not (isinstance(s, str) and s.upper() in RUN_STATES)]
        if bad:
            self.fail(field, f"{_repr(bad[0])} is not a run state an automation watches; use {wanted}.")
            return None
        return sorted({s.upper() for s in value})


def _finite(value):
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float: the API refuses these before, the admin cannot send them
        return False


def _repr(value):
    return repr(shown(value)) if isinstance(value, str) else "This value"


# --- Field tables. Each field says how it is read from a section and how the schema shows it.


class Field:
    """A field of a scope, event filter or action. `optional` fields are left out of the stored
    filter when absent; the others are stored with their default. `help` is the admin form's help
    text, given where the field is declared (an event type's definition) or by the kind itself;
    `form_field` builds the admin form's field for it (automations.event_types.admin_form_fields)."""

    optional = False
    help = ""
    form_last = False  # shown after the type's own fields (the run filter every run event shares)

    def __init__(self, help=""):
        self.help = help or type(self).help

    def read(self, reader, name):
        raise NotImplementedError

    def schema(self):
        raise NotImplementedError

    def form_help(self):
        """The admin form's help text for this declaration of it."""
        return self.help

    def form_helps(self, name):
        """{admin form field: help text}: most fields are one form field of their own name."""
        return {name: self.form_help()}

    def form_fields(self, name, help_texts):
        """{admin form field: Django form field}, with the help texts `form_helps` gave (merged
        over the definitions declaring the same name)."""
        return {name: self.form_field(help_texts[name])}

    def form_field(self, help_text=""):
        return forms.CharField(required=False, help_text=help_text)

    def form_initial(self, name, value):
        """{admin form field: initial value} from the stored filter's value."""
        return {name: value}

    def from_form(self, name, data):
        """The value for parse_event from the form's cleaned data (None when left empty)."""
        return data.get(name)


def blank(choices):
    return [("", "—")] + [(c, c) for c in choices]


class Choice(Field):
    def __init__(self, choices, default=None, required=False, help=""):
        super().__init__(help)
        self.choices, self.default, self.required = choices, default, required

    def read(self, reader, name):
        return reader.choice(name, self.choices, self.default, self.required)

    def schema(self):
        return serializers.ChoiceField(choices=self.choices, required=self.required, allow_null=not self.required,
                                       help_text=f"Default {self.default}." if self.default else "")

    def form_field(self, help_text=""):
        return forms.ChoiceField(choices=blank(self.choices), required=False, help_text=help_text)


class Integer(Field):
    def __init__(self, default, low, high, help=""):
        super().__init__(help)
        self.default, self.low, self.high = default, low, high

    def read(self, reader, name):
        return reader.integer(name, self.default, self.low, self.high)

    def form_help(self):
        bounds = f"{self.low} to {self.high}, default {self.default}"
        return f"{self.help} ({bounds})." if self.help else f"{bounds.capitalize()}."

    def form_field(self, help_text=""):
        return forms.IntegerField(required=False, help_text=help_text)

    def schema(self):
        return serializers.IntegerField(min_value=self.low, max_value=self.high, required=False, help_text=f"Default {self.default}.")


class Number(Field):
    def __init__(self, default=None, positive=False, required=False, help=""):
        super().__init__(help)
        self.default, self.positive, self.required = default, positive, required

    def read(self, reader, name):
        return reader.number(name, self.default, self.positive, self.required)

    def schema(self):
        field = PositiveNumberField if self.positive else serializers.FloatField
        help_text = ("Greater than 0." if self.positive else "A finite number.") + (f" Default {self.default}." if self.default else "")
        return field(required=self.required, help_text=help_text)

    def form_field(self, help_text=""):
        return forms.FloatField(required=False, help_text=help_text)


class Regex(Field):
    def __init__(self, required=False, help=""):
        super().__init__(help)
        self.required = required
        self.optional = not required

    def read(self, reader, name):
        return reader.regex(name, self.required)

    def schema(self):
        return serializers.CharField(max_length=MAX_REGEX, required=self.required, allow_blank=not self.required,
                                     help_text="An RE2 regular expression, searched anywhere in the text (anchor with ^ and $).")


class Text(Field):
    def __init__(self, max_length, optional=False, help="", rows=None):
        super().__init__(help)
        self.max_length, self.optional, self.rows = max_length, optional, rows  # rows: a text area in the admin form

    def form_field(self, help_text=""):
        widget = forms.Textarea(attrs={"rows": self.rows}) if self.rows else None
        return forms.CharField(required=False, widget=widget, help_text=help_text)

    def read(self, reader, name):
        return reader.text(name, self.max_length)

    def schema(self):
        return serializers.CharField(max_length=self.max_length, required=False, allow_blank=True)


class Metric(Field):
    help = "The metric name, e.g. loss or val/acc."

    def read(self, reader, name):
        return reader.metric(name)

    def schema(self):
        return serializers.RegexField(METRIC_KEY_RE.pattern, max_length=128, help_text="A metric name, e.g. loss or val/acc.")


class States(Field):
    def read(self, reader, name):
        return reader.states(name)

    def schema(self):
        choices = [*RUN_STATES, *(s.lower() for s in RUN_STATES)]
        return serializers.ListField(child=serializers.ChoiceField(choices=choices), min_length=1,
                                     help_text="CRASHED counts as FAILED; KILLED never triggers. Either case.")

    def form_field(self, help_text=""):
        return forms.MultipleChoiceField(choices=[(s, s) for s in RUN_STATES], required=False, widget=forms.CheckboxSelectMultiple,
                                         help_text=help_text)


class RunFilterSchema(serializers.Serializer):
    user = serializers.CharField(max_length=MAX_USERNAME, required=False, help_text="Only runs of this username.")
    name_regex = serializers.CharField(max_length=MAX_REGEX, required=False, help_text="Only runs whose display name matches.")


class RunFilter(Field):
    """Only runs of a user and/or whose display name matches: two admin form fields."""

    optional = True
    form_last = True
    FORM = {"user": "run_user", "name_regex": "run_name_regex"}  # {key in the filter: admin form field}

    def read(self, reader, name):
        value = reader.data.get(name)
        if not isinstance(value, dict) or set(value) - {"user", "name_regex"}:
            reader.fail(name, "Must be an object with user and/or name_regex.")
            return None
        clean = {}
        if present(value.get("user")):
            if not isinstance(value["user"], str) or len(value["user"]) > MAX_USERNAME:
                reader.fail(name, f"user must be a username (at most {MAX_USERNAME} characters).")
            clean["user"] = value["user"]
        if present(value.get("name_regex")):
            sub = _Reader(reader.section, {"name_regex": value["name_regex"]}, {"name_regex"})
            sub.regex("name_regex")
            for messages in sub.errors.values():
                reader.fail(name, "name_regex: " + messages[0])
            clean["name_regex"] = value["name_regex"]
        return clean

    def schema(self):
        return RunFilterSchema(required=False, allow_null=True)

    def form_helps(self, name):
        return {"run_user": "Run events: only runs of this username.", "run_name_regex": "Run events: only runs whose display name matches."}

    def form_fields(self, name, help_texts):
        return {form_name: forms.CharField(required=False, help_text=help_texts[form_name]) for form_name in self.FORM.values()}

    def form_initial(self, name, value):
        return {form_name: (value or {}).get(key, "") for key, form_name in self.FORM.items()}

    def from_form(self, name, data):
        return {key: data[form_name] for key, form_name in self.FORM.items() if data.get(form_name)}


class Name(Field):
    """The name of a project, registry or collection of the team."""

    def __init__(self, max_length):
        super().__init__()
        self.max_length = max_length

    def read(self, reader, name):
        value = reader.data.get(name)
        if not isinstance(value, str) or not value or len(value) > self.max_length:
            reader.fail(name, f"This field is required (a name of at most {self.max_length} characters).")
        return value

    def schema(self):
        return serializers.RegexField(NAME_PATTERN, max_length=self.max_length)


class Integration(Field):
    """Read by parse_action, which resolves it against the team. The admin form offers the
    integrations (of the user's teams: AutomationForm narrows the queryset) and stores its id."""

    def schema(self):
        return IntegrationRefField(help_text="The id or name of an integration of the team, of the action's kind.")

    def form_field(self, help_text=""):
        from actions.models import Integration as IntegrationModel

        queryset = IntegrationModel.objects.select_related("team").defer("signing_key", "previous_signing_key")
        return forms.ModelChoiceField(queryset, required=False, help_text=help_text)

    def from_form(self, name, data):
        return data[name].pk if data.get(name) else None


class Payload(Field):
    """Read by parse_action, which checks its variables against the integration's secrets. The
    admin form edits it as JSON text."""

    def schema(self):
        return PayloadField(help_text="A JSON template; ${variable} references are filled in when sent.")

    def form_field(self, help_text=""):
        return forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 10, "cols": 80, "class": "vLargeTextField"}),
                               help_text=help_text)

    def form_initial(self, name, value):
        return {name: json.dumps(value, indent=2)}

    def from_form(self, name, data):
        try:
            return json.loads(data.get(name) or "null")
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None


@extend_schema_field({"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "minLength": 1, "maxLength": 64}]})
class IntegrationRefField(serializers.JSONField):
    """Only for the schema: an integer id, or a name."""


@extend_schema_field({"oneOf": [{"type": "object", "additionalProperties": {}}, {"type": "array", "items": {}}]})
class PayloadField(serializers.JSONField):
    """Only for the schema: a JSON template."""


@extend_schema_field({"type": "number", "format": "double", "minimum": 0, "exclusiveMinimum": True})
class PositiveNumberField(serializers.FloatField):
    """Only for the schema: a number greater than 0."""


SCOPE_NAMES = {
    ScopeType.PROJECT: {"project": Name(64)},
    ScopeType.ARTIFACT_COLLECTION: {"project": Name(64), "collection": Name(128)},
    ScopeType.REGISTRY: {"registry": Name(64)},
    ScopeType.REGISTRY_COLLECTION: {"registry": Name(64), "collection": Name(128)},
    ScopeType.TEAM: {},
}

def declarations(tables):
    """{field name: spec Field} over several {name: Field} tables (the first declaring each name)."""
    declared = {}
    for fields in tables:
        for name, field in fields.items():
            declared.setdefault(name, field)
    return declared


def build_form_fields(tables):
    """{admin form field name: Django form field} over several {name: Field} tables (the event
    type definitions' filters, or the action kinds' fields): one per name, built by the first
    declaration of it; its help text the distinct help texts of all that declare it, in order.
    Fields marked `form_last` (the run filter's two) come after the others."""
    tables = list(tables)
    helps = {}
    for fields in tables:
        for name, field in fields.items():
            for form_name, help_text in field.form_helps(name).items():
                texts = helps.setdefault(form_name, [])
                if help_text and help_text not in texts:
                    texts.append(help_text)
    joined = {form_name: " ".join(texts) for form_name, texts in helps.items()}
    built = {}
    for name, field in sorted(declarations(tables).items(), key=lambda item: item[1].form_last):
        built.update(field.form_fields(name, joined))
    return built


def event_fields():
    """{event type: {field: Field}}, from the definitions."""
    from . import event_types

    return {name: definition.fields for name, definition in event_types.REGISTRY.items()}


def action_fields():
    """{action kind: {field: Field}}, from the definitions."""
    from . import action_kinds

    return {name: kind.fields for name, kind in action_kinds.KINDS.items()}


def _type_of(section, data, types):
    if not isinstance(data, dict):
        raise SpecError({section: ["Must be an object with a type."]})
    value = data.get("type")
    if not _one_of(value, types):
        raise SpecError({section: {"type": [f"Must be one of {', '.join(types)}."]}})
    return value


def parse_scope(team, data):
    """{"type", "project"?, "registry"?, "collection"?} -> model fields."""
    scope_type = _type_of("scope", data, SCOPE_NAMES)
    names = SCOPE_NAMES[scope_type]
    reader = _Reader("scope", data, {"type", *names})
    for name, field in names.items():
        field.read(reader, name)
    reader.done()
    fields = {"scope_type": scope_type, "project": None, "registry": None, "collection": None}
    if "project" in names:
        fields["project"] = team.projects.filter(name=data["project"]).first()
        if fields["project"] is None:
            raise SpecError({"scope": {"project": [f"No project {_repr(data['project'])} in team {team.name}."]}})
    if "registry" in names:
        fields["registry"] = team.registries.filter(name=data["registry"]).first()
        if fields["registry"] is None:
            raise SpecError({"scope": {"registry": [f"No registry {_repr(data['registry'])} in team {team.name}."]}})
    if "collection" in names:
        owner = {"project": fields["project"]} if fields["project"] else {"registry": fields["registry"]}
        fields["collection"] = ArtifactCollection.objects.filter(name=data["collection"], **owner).first()
        if fields["collection"] is None:
            raise SpecError({"scope": {"collection": [f"No collection {_repr(data['collection'])} there."]}})
        if scope_type == ScopeType.ARTIFACT_COLLECTION:
            fields["project"] = None  # the collection says it all; keeps the lookup index exact
        else:
            fields["registry"] = None
    return fields


def parse_event(scope_type, data):
    """{"type", …filter} -> (event_type, filter with defaults)."""
    from . import event_types

    event_type = _type_of("event", data, event_types.REGISTRY)
    allowed_here = event_types.scope_events()
    if scope_type in allowed_here and event_type not in allowed_here[scope_type]:
        allowed = ", ".join(sorted(allowed_here[scope_type]))
        raise SpecError({"event": {"type": [f"{event_type} cannot be used with a {scope_type} scope; it allows {allowed}."]}})
    fields = event_types.get(event_type).fields
    reader = _Reader("event", data, {"type", *fields})
    f = {}
    for name, field in fields.items():
        if field.optional and not reader.present(name):
            continue
        f[name] = field.read(reader, name)
    reader.done()
    return event_type, f


def parse_action(team, data):
    """{"type", …} -> (action_type, integration, config)."""
    from . import action_kinds

    action_type = _type_of("action", data, action_kinds.KINDS)
    kind = action_kinds.get(action_type)
    reader = _Reader("action", data, {"type", *kind.fields})
    integration, config = kind.parse(team, data, reader)
    reader.done()
    return action_type, integration, config


def resolve_integration(team, ref, kind, reader):
    if ref in (None, ""):
        reader.fail("integration", f"Required: the id or name of a {kind} integration of the team.")
        return None
    qs = team.integrations.select_related("access_token_secret", "secret")
    if isinstance(ref, int) and not isinstance(ref, bool):
        integration = qs.filter(pk=ref).first()
    elif isinstance(ref, str) and ref.isascii() and ref.isdigit():
        integration = qs.filter(pk=int(ref)).first() if len(ref) <= 18 else None
    elif isinstance(ref, str):
        integration = qs.filter(name=ref).first()
    else:
        integration = None
    if integration is None:
        shown_ref = ref if isinstance(ref, int) else _repr(ref)
        reader.fail("integration", f"No integration {shown_ref} in team {team.name}.")
    elif integration.kind != kind:
        reader.fail("integration", f"{integration.name} is a {integration.kind} integration; this action needs a {kind} one.")
        integration = None
    return integration


def _component(value, suffix):
    return "".join(part.capitalize() for part in value.lower().split("_")) + suffix


def schema_variants(section):
    """{type: serializer class} describing one section for the OpenAPI schema, built from the
    field tables above: one variant per type, told apart by `type`."""
    table, suffix = {"scope": (SCOPE_NAMES, "Scope"), "event": (event_fields(), "Event"), "action": (action_fields(), "Action")}[section]
    variants = {}
    for type_value, fields in table.items():
        attrs = {"type": serializers.ChoiceField(choices=[type_value])}
        attrs.update({name: field.schema() for name, field in fields.items()})
        if "integration" in fields:
            attrs["integration_name"] = serializers.CharField(read_only=True)
        variants[str(type_value)] = type(_component(type_value, suffix), (serializers.Serializer,), attrs)
    return variants


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

