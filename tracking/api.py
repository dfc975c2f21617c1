from django.db import IntegrityError, transaction
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from teams.api_errors import Conflict, refuse_name_clash
from teams.api_input import MetricJSONParser, Serializer, shown
from ops.compiled import Compiled
from teams.permissions import TeamScopedMixin

from .history import PAGE_POINTS, log_history, read_history_page
from .models import (
    LATEST,
    ArtifactAlias,
    ArtifactCollection,
    ArtifactTag,
    ArtifactVersion,
    Project,
    Registry,
    Run,
    add_alias,
    add_tag,
    create_version,
    link_version,
    new_run_id,
)
from .serializers import (
    AliasSerializer,
    ArtifactVersionCreateSerializer,
    CollectionSerializer,
    LinkSerializer,
    ProjectSerializer,
    RegistrySerializer,
    RunCreateSerializer,
    RunSerializer,
    RunUpdateSerializer,
    MAX_METRIC_TEXT,
    MAX_ROWS,
    MAX_STEP,
    METRIC_KEY_LENGTH,
    STORED_KEY_RE,
    TagSerializer,
    validate_history,
    version_data,
)

def version_queryset():
    return ArtifactVersion.objects.select_related(
        "collection__team", "collection__project", "collection__registry", "created_by", "run", "source__collection__project"
    ).prefetch_related("aliases", "tags")


class ProjectListView(TeamScopedMixin, generics.ListCreateAPIView):
    serializer_class = ProjectSerializer

    def get_queryset(self):
        return self.team.projects.all()

    def perform_create(self, serializer):
        refuse_name_clash(self.team.projects, serializer.validated_data["name"], "A project")
        serializer.save(team=self.team)


_project = Compiled(lambda team_id, name: Project.objects.filter(team_id=team_id, name=name))  # every project API call


class ProjectMixin(TeamScopedMixin):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        found = _project(self.team.pk, kwargs["project"])
        if not found:
            raise Http404("No Project matches the given query.")  # as get_object_or_404 says it
        self.project = found[0]
        self.project.team = self.team


class ProjectDetailView(ProjectMixin, APIView):
    @extend_schema(responses=ProjectSerializer)
    def get(self, request, team, project):
        return Response(ProjectSerializer(self.project).data)


class RunListView(ProjectMixin, generics.ListCreateAPIView):
    def get_serializer_class(self):
        return RunCreateSerializer if self.request.method == "POST" else RunSerializer

    def get_queryset(self):
        return self.project.runs.select_related("user", "project__team")

    def perform_create(self, serializer):
        run_id = serializer.validated_data.pop("run_id", None) or new_run_id()
        if self.project.runs.filter(run_id=run_id).exists():
            raise Conflict("id", f"A run with id {run_id!r} already exists in the project.")
        serializer.validated_data.setdefault("name", run_id)
        with transaction.atomic():
            serializer.save(project=self.project, run_id=run_id, user=self.request.user)


_run = Compiled(lambda team_id, project, run_id: Run.objects.select_related("user", "project__team").filter(
    project__team_id=team_id, project__name=project, run_id=run_id))


class RunMixin(ProjectMixin):
    def initial(self, request, *args, **kwargs):
        # The run and its project in one query (a history batch is one of these calls); only
        # when it finds none, the project alone, so that each 404 names what is missing.
        TeamScopedMixin.initial(self, request, *args, **kwargs)
        found = _run(self.team.pk, kwargs["project"], kwargs["run"])
        self.run = found[0] if found else None
        if self.run is None:
            self.project = get_object_or_404(Project, team=self.team, name=kwargs["project"])
            self.run = get_object_or_404(self.project.runs.select_related("user", "project__team"), run_id=kwargs["run"])
        self.project = self.run.project


class RunDetailView(RunMixin, APIView):
    @extend_schema(responses=RunSerializer)
    def get(self, request, team, project, run):
        return Response(RunSerializer(self.run, context={"request": request}).data)

    @extend_schema(request=RunUpdateSerializer, responses=RunSerializer)
    def patch(self, request, team, project, run):
        serializer = RunUpdateSerializer(self.run, data=request.data, partial=True, context={"request": request})
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            serializer.save()
        return Response(RunSerializer(self.run, context={"request": request}).data)


MAX_KEYS = 100


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "string", "maxLength": MAX_METRIC_TEXT}, {"type": "boolean"}], "nullable": True})
class MetricValueField(serializers.JSONField):
    pass


@extend_schema_field({"oneOf": [{"type": "string", "maxLength": 64}, {"type": "number"}], "description": "ISO 8601, or seconds since the epoch."})
class TimestampField(serializers.JSONField):
    pass


class HistoryRowSerializer(Serializer):
    step = serializers.IntegerField(min_value=0, max_value=MAX_STEP)
    metrics = serializers.DictField(child=MetricValueField(), help_text="Metric name to value; NaN and ±Infinity are kept as logged.")
    timestamp = TimestampField(required=False)


class HistoryRequestSerializer(Serializer):
    """The schema of a history batch; the view validates it by hand (`validate_history`), which
    is much faster than nested serializers at 10,000 rows."""

    rows = serializers.ListField(child=HistoryRowSerializer(), min_length=1, max_length=MAX_ROWS)


class HistoryQuerySerializer(serializers.Serializer):
    keys = serializers.CharField(required=False, allow_blank=True, help_text=f"Comma-separated metric names, at most {MAX_KEYS}; all of the run's when absent.")
    # any step a run can hold: MLflow's clients log from -2**63 (the Link of a page names the step after its last)
    min_step = serializers.IntegerField(required=False, min_value=-2**63, max_value=2**63 - 1, help_text="First step of the range.")
    max_step = serializers.IntegerField(required=False, min_value=-2**63, max_value=2**63 - 1, help_text="Last step of the range.")
    after = serializers.IntegerField(
        required=False, min_value=0, max_value=2**63 - 1,
        help_text="With min_step, from the Link of a page cut within a step: that step's points after this one.",
    )
    samples = serializers.IntegerField(
        required=False, min_value=1, max_value=PAGE_POINTS,
        help_text="At most this many points per metric over the range, keeping each bucket's first, minimum and maximum.",
    )

    def validate_keys(self, value):
        keys = list(dict.fromkeys(k for k in value.split(",") if k))
        for key in keys:  # a name as stored: MLflow's clients log names the REST API does not (spaces, letters of any script)
            if not STORED_KEY_RE.match(key):
                raise serializers.ValidationError(f"{shown(key)!r} is not a metric name (up to {METRIC_KEY_LENGTH} characters, no control characters).")
        if len(keys) > MAX_KEYS:
            raise serializers.ValidationError(f"At most {MAX_KEYS} metrics per request.")
        return keys

    def validate(self, attrs):
        if "after" in attrs and "min_step" not in attrs:
            raise serializers.ValidationError({"after": ["Only with min_step (as a page's Link gives it)."]})
        if "min_step" in attrs and "max_step" in attrs and attrs["min_step"] > attrs["max_step"]:
            raise serializers.ValidationError({"max_step": ["Must not be less than min_step."]})
        return attrs


HISTORY_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {}}},
    "description": "Metric name to [step, value] pairs in step order. Non-finite values read back as \"NaN\", \"Infinity\", \"-Infinity\".",
}


class HistoryView(RunMixin, APIView):
    parser_classes = [MetricJSONParser]

    @extend_schema(parameters=[HistoryQuerySerializer], responses={200: HISTORY_SCHEMA})
    def get(self, request, team, project, run):
        query = HistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        keys = params.get("keys")
        if not keys:
            keys = list(self.run.metrics.order_by("key").values_list("key", flat=True)[: MAX_KEYS + 1])
            if len(keys) > MAX_KEYS:
                return Response({"keys": [f"This run has more than {MAX_KEYS} metrics; name at most {MAX_KEYS} in keys."]}, status=status.HTTP_400_BAD_REQUEST)
        history, following = read_history_page(self.run, keys, params.get("min_step"), params.get("max_step"), params.get("samples"), params.get("after"))
        response = Response(history)
        if following is not None:
            step, after = following
            url = replace_query_param(request.build_absolute_uri(), "min_step", step)
            url = remove_query_param(url, "after") if after is None else replace_query_param(url, "after", after)
            response["Link"] = f'<{url}>; rel="next"'
        return response

    @extend_schema(request=HistoryRequestSerializer, responses={201: dict})
    def post(self, request, team, project, run):
        rows = validate_history(request.data)
        accepted = log_history(self.run, rows, user=request.user)
        return Response({"accepted": accepted}, status=status.HTTP_201_CREATED)


class CollectionMixin(TeamScopedMixin):
    """Resolves `self.collection` from a project (`…/artifacts/{name}/`) or a registry
    (`…/collections/{collection}/`) URL: both kinds of collection share the views below."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        qs = ArtifactCollection.objects.select_related("team", "project", "registry")
        if "registry" in kwargs:
            self.collection = get_object_or_404(qs, registry__team=self.team, registry__name=kwargs["registry"], name=kwargs["collection"])
        else:
            self.collection = get_object_or_404(qs, project__team=self.team, project__name=kwargs["project"], name=kwargs["name"])

    def get_version(self, ref):
        try:
            return self.collection.resolve(ref)
        except ArtifactVersion.DoesNotExist:
            raise Http404(f"No version {ref!r} in {self.collection.name}.") from None


# every artifact POST: a collection is made once and then found (get_or_create only for the first)
_collection = Compiled(lambda project_id, name: ArtifactCollection.objects.filter(project_id=project_id, name=name))


class ArtifactListView(ProjectMixin, generics.ListCreateAPIView):
    def get_serializer_class(self):
        return ArtifactVersionCreateSerializer if self.request.method == "POST" else CollectionSerializer

    def get_queryset(self):
        return self.project.collections.all()

    @extend_schema(request=ArtifactVersionCreateSerializer, responses={201: dict})
    def post(self, request, team, project):
        serializer = ArtifactVersionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        name, type_, run_ref = data.pop("name"), data.pop("type"), data.pop("run")
        run = None
        if run_ref:
            run = self.project.runs.filter(run_id=run_ref).first()
            if run is None:
                return Response({"run": [f"No run {run_ref!r} in this project."]}, status=status.HTTP_400_BAD_REQUEST)
        with transaction.atomic():
            found = _collection(self.project.pk, name)
            collection = found[0] if found else ArtifactCollection.objects.get_or_create(
                project=self.project, name=name, defaults={"team": self.team, "type": type_}
            )[0]
            if collection.type != type_:
                return Response(
                    {"type": [f"{name} holds artifacts of type {collection.type!r}, not {type_!r}."]},
                    status=status.HTTP_400_BAD_REQUEST,
                )
            version = create_version(collection, created_by=request.user, run=run, **data)
        # answered from what was just written, not read back (3 queries after commit, 17 % of the
        # call's time under row 1's load on PostgreSQL): the aliases and tags it was created with
        return Response(version_data(version, aliases=[LATEST, *data["aliases"]], tags=data["tags"]), status=status.HTTP_201_CREATED)


class CollectionDetailView(CollectionMixin, APIView):
    @extend_schema(responses={200: dict})
    def get(self, request, team, **kwargs):
        versions = version_queryset().filter(collection=self.collection)
        data = CollectionSerializer(self.collection).data
        data["versions"] = [version_data(v) for v in versions]
        return Response(data)


class VersionListView(CollectionMixin, generics.ListAPIView):
    serializer_class = serializers.Serializer

    def get_queryset(self):
        return version_queryset().filter(collection=self.collection)

    @extend_schema(responses={200: dict})
    def get(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([version_data(v) for v in page])


class VersionDetailView(CollectionMixin, APIView):
    @extend_schema(responses={200: dict})
    def get(self, request, team, version, **kwargs):
        return Response(version_data(version_queryset().get(pk=self.get_version(version).pk)))


class VersionAliasView(CollectionMixin, APIView):
    @extend_schema(request=AliasSerializer, responses={201: dict})
    def post(self, request, team, version, **kwargs):
        target = self.get_version(version)
        serializer = AliasSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        add_alias(target, serializer.validated_data["alias"], request.user)
        return Response(version_data(version_queryset().get(pk=target.pk)), status=status.HTTP_201_CREATED)


class VersionAliasDetailView(CollectionMixin, APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, team, version, alias, **kwargs):
        target = self.get_version(version)
        get_object_or_404(ArtifactAlias, version=target, alias=alias).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionTagView(CollectionMixin, APIView):
    @extend_schema(request=TagSerializer, responses={201: dict})
    def post(self, request, team, version, **kwargs):
        target = self.get_version(version)
        serializer = TagSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        add_tag(target, serializer.validated_data["tag"], request.user)
        return Response(version_data(version_queryset().get(pk=target.pk)), status=status.HTTP_201_CREATED)


class VersionTagDetailView(CollectionMixin, APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, team, version, tag, **kwargs):
        target = self.get_version(version)
        get_object_or_404(ArtifactTag, version=target, tag=tag).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class RegistryListView(TeamScopedMixin, generics.ListCreateAPIView):
    serializer_class = RegistrySerializer

    def get_queryset(self):
        return self.team.registries.all()

    def perform_create(self, serializer):
        refuse_name_clash(self.team.registries, serializer.validated_data["name"], "A registry")
        serializer.save(team=self.team)


class RegistryDetailView(TeamScopedMixin, APIView):
    @extend_schema(responses=RegistrySerializer)
    def get(self, request, team, registry):
        return Response(RegistrySerializer(get_object_or_404(Registry, team=self.team, name=registry)).data)


class RegistryCollectionListView(TeamScopedMixin, generics.ListCreateAPIView):
    serializer_class = CollectionSerializer

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.registry = get_object_or_404(Registry, team=self.team, name=kwargs["registry"])

    def get_queryset(self):
        return self.registry.collections.all()

    def perform_create(self, serializer):
        refuse_name_clash(self.registry.collections, serializer.validated_data["name"], "A collection")
        serializer.save(team=self.team, registry=self.registry)


class LinkView(CollectionMixin, APIView):
    @extend_schema(request=LinkSerializer, responses={201: dict})
    def post(self, request, team, registry, collection):
        serializer = LinkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        path, ref = serializer.validated_data["artifact"].rsplit(":", 1)
        project_name, name = path.split("/", 1)
        source_collection = ArtifactCollection.objects.filter(project__team=self.team, project__name=project_name, name=name).first()
        source = None
        if source_collection:
            try:
                source = source_collection.resolve(ref)
            except ArtifactVersion.DoesNotExist:
                pass
        if source is None:
            return Response({"artifact": [f"No artifact version {serializer.validated_data['artifact']!r} in team {self.team.name}."]}, status=status.HTTP_400_BAD_REQUEST)
        if source_collection.type != self.collection.type:
            return Response(
                {"artifact": [f"{name} holds {source_collection.type!r} artifacts; {self.collection.name} takes {self.collection.type!r}."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            version, created = link_version(self.collection, source, linked_by=request.user, aliases=serializer.validated_data["aliases"])
        except IntegrityError:
            raise Conflict("artifact", "This version is being linked by another request; try again.") from None
        return Response(version_data(version_queryset().get(pk=version.pk)), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
