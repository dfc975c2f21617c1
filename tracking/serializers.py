import re
from datetime import datetime, timezone as dt_timezone

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from teams.api_input import ModelSerializer, Serializer, shown
from teams.validators import validate_slug_name

from .models import METRIC_KEY_LENGTH, RUN_ID_RE, ArtifactCollection, Project, Registry, Run, RunState, validate_alias, validate_tag

METRIC_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./:@+-]{0,127}\Z")  # \Z: "$" lets a trailing newline through
# a name as a run may hold it, to look one up by (MLflow's clients log others than the REST API's)
STORED_KEY_RE = re.compile(rf"^[^\x00-\x1f\x7f\ud800-\udfff]{{1,{METRIC_KEY_LENGTH}}}\Z")
MAX_ROWS = 10_000
# A metric logged as text is kept as logged up to this many characters; longer is refused.
MAX_METRIC_TEXT = 200
MAX_STEP = 2**62 - 1
ROW_FIELDS = {"step", "metrics", "timestamp"}


def json_object(value, field):
    if not isinstance(value, dict):
        raise serializers.ValidationError({field: ["Must be a JSON object."]})
    return value


class ProjectSerializer(ModelSerializer):
    name = serializers.CharField(max_length=64, validators=[validate_slug_name])

    class Meta:
        model = Project
        fields = ["name", "description", "created_at"]


class RunStateField(serializers.ChoiceField):
    """A run state in either case: `finished` as the runs API writes it, or `FINISHED` as
    automations do."""

    EXPECTED = f"use one of {', '.join(RunState.values)} (either case)."

    def __init__(self, **kwargs):
        super().__init__(choices=RunState.choices, help_text=f"One of {', '.join(RunState.values)}; either case.",
                         error_messages={"null": f"A run state is required; {self.EXPECTED}"}, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str) and data.lower() in RunState.values:
            return data.lower()
        shown_value = repr(shown(data)) if isinstance(data, str) else "This"
        raise serializers.ValidationError(f"{shown_value} is not a run state; {self.EXPECTED}")


class RunSerializer(ModelSerializer):
    """A run as the API shows it; the two subclasses below say which fields a write takes."""

    id = serializers.CharField(source="run_id", max_length=64, required=False)
    name = serializers.CharField(max_length=128, required=False)
    state = RunStateField(required=False)
    user = serializers.CharField(source="user.username", read_only=True, default=None)
    config = serializers.JSONField(required=False)
    summary = serializers.JSONField(required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=128), max_length=64, required=False)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = ["id", "name", "state", "user", "config", "summary", "tags", "created_at", "updated_at", "url"]
        read_only_fields = fields

    def get_url(self, run) -> str:
        request = self.context.get("request")
        path = run.get_absolute_url()
        return request.build_absolute_uri(path) if request else path

    def validate_id(self, value):
        if not RUN_ID_RE.match(value):
            raise serializers.ValidationError("Use up to 64 letters, digits, '-' or '_', starting with a letter or digit.")
        return value

    def validate_config(self, value):
        return json_object(value, "config")

    def validate_summary(self, value):
        return json_object(value, "summary")


class RunCreateSerializer(RunSerializer):
    class Meta(RunSerializer.Meta):
        read_only_fields = ["state", "user", "summary", "created_at", "updated_at", "url"]


class RunUpdateSerializer(RunSerializer):
    class Meta(RunSerializer.Meta):
        read_only_fields = ["id", "user", "config", "created_at", "updated_at", "url"]


def _timestamp(value):
    """A row's timestamp as an aware UTC datetime, or None when it is not one."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=dt_timezone.utc)
        if isinstance(value, str) and len(value) <= 64:
            parsed = parse_datetime(value)
            if parsed and parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt_timezone.utc)
            return parsed.astimezone(dt_timezone.utc) if parsed else None
    except (OverflowError, OSError, ValueError):
        pass  # well formed but no real time (month 13), or outside the years a datetime holds
    return None


def validate_history(body):
    """Validate a history batch `{"rows": [...]}` by hand: nested serializers cost too much for
    10,000 rows. Returns the rows themselves, each timestamp read as a datetime in place (no copy of
    10,000 rows), or raises with the first bad row named."""
    if not isinstance(body, dict):
        raise serializers.ValidationError({"rows": ['Send an object: {"rows": [...]}.']})
    refused = [key for key in body if key != "rows"]
    if refused:
        raise serializers.ValidationError({shown(key): ["Not a field this request writes; it takes rows."] for key in refused})
    rows = body.get("rows")
    if not isinstance(rows, list) or not rows:
        raise serializers.ValidationError({"rows": ["Must be a non-empty list of rows."]})
    if len(rows) > MAX_ROWS:
        raise serializers.ValidationError({"rows": [f"At most {MAX_ROWS} rows per call."]})
    good_keys = set()  # metric names already checked: a batch repeats the same few
    for i, row in enumerate(rows):
        if type(row) is not dict:
            raise _bad_row(i, "must be an object with step and metrics")
        if not row.keys() <= ROW_FIELDS:
            raise _bad_row(i, f"unknown field {shown(sorted(set(row) - ROW_FIELDS)[0])!r}; a row takes step, metrics and timestamp")
        step = row.get("step")
        if type(step) is not int or not 0 <= step <= MAX_STEP:  # type(): bool is not a step
            raise _bad_row(i, f"step must be a whole number from 0 to {MAX_STEP}")
        metrics = row.get("metrics")
        if type(metrics) is not dict:
            raise _bad_row(i, "metrics must be an object of metric name to value")
        for key, value in metrics.items():
            if key not in good_keys:
                if not METRIC_KEY_RE.match(key):
                    raise _bad_row(i, f"metric name {shown(key)!r} is not valid (letters, digits and _./:@+-, up to 128)")
                good_keys.add(key)
            kind = type(value)
            if kind is float or kind is int:
                continue
            if isinstance(value, (dict, list)):
                raise _bad_row(i, f"metric {key!r} must be a number (or a scalar kept as logged)")
            if isinstance(value, str) and len(value) > MAX_METRIC_TEXT:
                raise _bad_row(i, f"metric {key!r}: text is kept up to {MAX_METRIC_TEXT} characters; this is {len(value)}")
        if row.get("timestamp") is not None:
            ts = _timestamp(row["timestamp"])
            if ts is None:
                raise _bad_row(i, "timestamp must be ISO 8601 or seconds since the epoch")
            row["timestamp"] = ts
    return rows


def _bad_row(i, message):
    return serializers.ValidationError({"rows": [f"row {i}: {message}"]})


def version_data(version, request=None, aliases=None, tags=None):
    """A version as the API shows it; a registry version shows the artifact it links. `aliases`
    and `tags`: the names it holds when the caller knows them (it just made them)."""
    collection = version.collection
    data = {
        "id": version.id,
        "version": version.version,
        "index": version.index,
        "aliases": sorted(a.alias for a in version.aliases.all()) if aliases is None else sorted(set(aliases)),
        "tags": sorted(t.tag for t in version.tags.all()) if tags is None else sorted(set(tags)),
        "metadata": version.metadata,
        "digest": version.digest,
        "description": version.description,
        "created_by": version.created_by.username if version.created_by else None,
        "created_at": serializers.DateTimeField().to_representation(version.created_at),
    }
    if collection.is_registry:
        data.update(collection=collection.name, type=collection.type, artifact=version.source_ref, linked_at=data["created_at"])
    else:
        data.update(name=collection.name, type=collection.type, run=version.run.run_id if version.run else None)
    return data


class ArtifactVersionCreateSerializer(Serializer):
    name = serializers.CharField(max_length=128, validators=[validate_slug_name])
    type = serializers.CharField(max_length=64, validators=[validate_slug_name])
    metadata = serializers.JSONField(required=False, default=dict)
    digest = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    description = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")
    aliases = serializers.ListField(child=serializers.CharField(max_length=128, validators=[validate_alias]), max_length=32, required=False, default=list)
    tags = serializers.ListField(child=serializers.CharField(max_length=128, validators=[validate_tag]), max_length=64, required=False, default=list)
    run = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)

    def validate_metadata(self, value):
        return json_object(value, "metadata")


class AliasSerializer(Serializer):
    alias = serializers.CharField(max_length=128, validators=[validate_alias])


class TagSerializer(Serializer):
    tag = serializers.CharField(max_length=128, validators=[validate_tag])


class CollectionSerializer(ModelSerializer):
    name = serializers.CharField(max_length=128, validators=[validate_slug_name])
    type = serializers.CharField(max_length=64, validators=[validate_slug_name])
    versions = serializers.IntegerField(source="next_index", read_only=True)

    class Meta:
        model = ArtifactCollection
        fields = ["name", "type", "description", "versions", "created_at"]


class RegistrySerializer(ModelSerializer):
    name = serializers.CharField(max_length=64, validators=[validate_slug_name])

    class Meta:
        model = Registry
        fields = ["name", "description", "created_at"]


class LinkSerializer(Serializer):
    artifact = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*:[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=300,
        error_messages={"invalid": "Use project/name:version, e.g. my-project/mnist-model:v3 or …:latest."},
    )
    aliases = serializers.ListField(child=serializers.CharField(max_length=128, validators=[validate_alias]), max_length=32, required=False, default=list)
