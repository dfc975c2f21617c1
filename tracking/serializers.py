import re
from datetime import datetime, timezone as dt_timezone

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from teams.validators import validate_slug_name

from .models import RUN_ID_RE, ArtifactCollection, Project, Registry, Run, RunState, validate_alias, validate_tag

METRIC_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./:@+-]{0,127}$")
MAX_ROWS = 10_000


def json_object(value, field):
    if not isinstance(value, dict):
        raise serializers.ValidationError({field: ["Must be a JSON object."]})
    return value


class ProjectSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=64, validators=[validate_slug_name])

    class Meta:
        model = Project
        fields = ["name", "description", "created_at"]


class RunSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="run_id", max_length=64, required=False)
    name = serializers.CharField(max_length=128, required=False)
    user = serializers.CharField(source="user.username", read_only=True, default=None)
    config = serializers.JSONField(required=False)
    summary = serializers.JSONField(required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=128), max_length=64, required=False)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = ["id", "name", "state", "user", "config", "summary", "tags", "created_at", "updated_at", "url"]
        read_only_fields = ["created_at", "updated_at"]

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
        read_only_fields = ["state", "created_at", "updated_at"]


class RunUpdateSerializer(RunSerializer):
    state = serializers.ChoiceField(choices=RunState.choices, required=False)

    class Meta(RunSerializer.Meta):
        read_only_fields = ["id", "config", "created_at", "updated_at"]


def _timestamp(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=dt_timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt_timezone.utc)
        return parsed
    return None


def validate_history_rows(rows):
    """Validate a history batch by hand: nested serializers cost too much for 10,000 rows.
    Returns the cleaned rows or raises with the first bad row named."""
    if not isinstance(rows, list) or not rows:
        raise serializers.ValidationError({"rows": ["Must be a non-empty list of rows."]})
    if len(rows) > MAX_ROWS:
        raise serializers.ValidationError({"rows": [f"At most {MAX_ROWS} rows per call."]})
    cleaned = []
    for i, row in enumerate(rows):
        def bad(message):
            return serializers.ValidationError({"rows": [f"row {i}: {message}"]})

        if not isinstance(row, dict):
            raise bad("must be an object with step and metrics")
        step = row.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < 2**62:
            raise bad("step must be a non-negative integer")
        metrics = row.get("metrics")
        if not isinstance(metrics, dict):
            raise bad("metrics must be an object of metric name to value")
        for key, value in metrics.items():
            if not METRIC_KEY_RE.match(key):
                raise bad(f"metric name {key[:140]!r} is not valid (letters, digits and _./:@+-, up to 128)")
            if isinstance(value, (dict, list)):
                raise bad(f"metric {key!r} must be a number (or a scalar kept as logged)")
            if isinstance(value, str) and len(value) > 200:
                raise bad(f"metric {key!r}: strings are limited to 200 characters")
        clean = {"step": step, "metrics": metrics}
        if row.get("timestamp") is not None:
            ts = _timestamp(row["timestamp"])
            if ts is None:
                raise bad("timestamp must be ISO 8601 or seconds since the epoch")
            clean["timestamp"] = ts
        cleaned.append(clean)
    return cleaned


def version_data(version, request=None):
    """A version as the API shows it; a registry version shows the artifact it links."""
    collection = version.collection
    data = {
        "id": version.id,
        "version": version.version,
        "index": version.index,
        "aliases": sorted(a.alias for a in version.aliases.all()),
        "tags": sorted(t.tag for t in version.tags.all()),
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


class ArtifactVersionCreateSerializer(serializers.Serializer):
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


class AliasSerializer(serializers.Serializer):
    alias = serializers.CharField(max_length=128, validators=[validate_alias])


class TagSerializer(serializers.Serializer):
    tag = serializers.CharField(max_length=128, validators=[validate_tag])


class CollectionSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=128, validators=[validate_slug_name])
    type = serializers.CharField(max_length=64, validators=[validate_slug_name])
    versions = serializers.IntegerField(source="next_index", read_only=True)

    class Meta:
        model = ArtifactCollection
        fields = ["name", "type", "description", "versions", "created_at"]


class RegistrySerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=64, validators=[validate_slug_name])

    class Meta:
        model = Registry
        fields = ["name", "description", "created_at"]


class LinkSerializer(serializers.Serializer):
    artifact = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*:[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=300,
        error_messages={"invalid": "Use project/name:version, e.g. my-project/mnist-model:v3 or …:latest."},
    )
    aliases = serializers.ListField(child=serializers.CharField(max_length=128, validators=[validate_alias]), max_length=32, required=False, default=list)
