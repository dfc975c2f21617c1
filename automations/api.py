from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from events.models import Event
from actions.http import site_of
from teams.api_errors import refuse_name_clash
from teams.api_input import Serializer
from teams.models import Role
from teams.permissions import TeamScopedMixin

from . import dispatch, event_types, lifecycle
from .delivery import deliver
from .models import Automation, Execution, ExecutionStatus, ScopeType
from .spec import SpecError, describe_action, describe_scope, parse_action, parse_event, parse_scope, schema_variants


# The schema describes each section as one variant per `type` (a discriminator), built from
# automations.spec's field tables; automations.spec also validates them.
@extend_schema_field(PolymorphicProxySerializer("Scope", schema_variants("scope"), "type"))
class ScopeField(serializers.JSONField):
    pass


@extend_schema_field(PolymorphicProxySerializer("Event", schema_variants("event"), "type"))
class EventField(serializers.JSONField):
    pass


@extend_schema_field(PolymorphicProxySerializer("Action", schema_variants("action"), "type"))
class ActionField(serializers.JSONField):
    pass


class AutomationSerializer(Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=128)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    enabled = serializers.BooleanField(required=False, default=True)
    scope = ScopeField()
    event = EventField()
    action = ActionField()
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    url = serializers.CharField(read_only=True)

    def validate(self, attrs):
        team, instance = self.context["team"], self.instance
        fields = {k: attrs[k] for k in ("name", "description", "enabled") if k in attrs}
        errors = {}
        scope_fields = {}
        try:
            if "scope" in attrs or instance is None:
                scope_fields = parse_scope(team, attrs.get("scope"))
        except SpecError as exc:
            errors.update(exc.errors)
        scope_type = scope_fields.get("scope_type") or (instance.scope_type if instance else None)
        event = attrs.get("event")
        if event is None and instance is not None and "scope" in attrs:
            event = {"type": instance.event_type, **instance.event_filter}  # a new scope must still allow the event
        try:
            if event is not None or instance is None:
                fields["event_type"], fields["event_filter"] = parse_event(scope_type, event)
        except SpecError as exc:
            errors.update(exc.errors)
        try:
            if "action" in attrs or instance is None:
                fields["action_type"], fields["integration"], fields["action_config"] = parse_action(team, attrs.get("action"))
        except SpecError as exc:
            errors.update(exc.errors)
        if errors:
            raise serializers.ValidationError(errors)
        fields.update(scope_fields)
        return fields

    def to_representation(self, automation):
        last = getattr(automation, "_last_execution", None)
        return {
            "id": automation.pk,
            "name": automation.name,
            "description": automation.description,
            "enabled": automation.enabled,
            "scope": describe_scope(automation),
            "event": {"type": automation.event_type, **automation.event_filter},
            "action": describe_action(automation),
            "created_at": serializers.DateTimeField().to_representation(automation.created_at),
            "updated_at": serializers.DateTimeField().to_representation(automation.updated_at),
            "url": automation.get_absolute_url(),
            **({"last_status": last} if last is not None else {}),
        }


def automation_queryset(team):
    return team.automations.select_related("team", "project", "registry", "collection__project", "collection__registry", "integration")


class AutomationListView(TeamScopedMixin, generics.ListCreateAPIView):
    serializer_class = AutomationSerializer

    def get_queryset(self):
        return automation_queryset(self.team)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "team": self.team}

    def perform_create(self, serializer):
        refuse_name_clash(self.team.automations, serializer.validated_data["name"], "An automation")
        serializer.instance = Automation.objects.create(team=self.team, created_by=self.request.user, **serializer.validated_data)


class AutomationMixin(TeamScopedMixin):
    def get_automation(self, pk):
        return get_object_or_404(automation_queryset(self.team), pk=pk)


class AutomationDetailView(AutomationMixin, APIView):
    @extend_schema(responses=AutomationSerializer)
    def get(self, request, team, pk):
        return Response(AutomationSerializer(self.get_automation(pk)).data)

    @extend_schema(request=AutomationSerializer, responses=AutomationSerializer)
    def patch(self, request, team, pk):
        automation = self.get_automation(pk)
        serializer = AutomationSerializer(automation, data=request.data, partial=True, context={"team": self.team})
        serializer.is_valid(raise_exception=True)
        refuse_name_clash(self.team.automations, serializer.validated_data.get("name"), "An automation", automation)
        for field, value in serializer.validated_data.items():
            setattr(automation, field, value)
        automation.save()
        return Response(AutomationSerializer(self.get_automation(pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, team, pk):
        self.get_automation(pk).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


def sample_event(automation):
    """A sample event in the automation's scope, never evaluated, to test its action."""
    registry_scoped = automation.scope_type in (ScopeType.REGISTRY, ScopeType.REGISTRY_COLLECTION)
    collection = automation.collection
    kind = event_types.get(automation.event_type).records[0]
    return Event.objects.create(
        team=automation.team,
        type=kind,
        project=automation.project or (collection.project if collection and not registry_scoped else None),
        registry=automation.registry or (collection.registry if collection and registry_scoped else None),
        collection=collection,
        sample=True,
        evaluated_at=timezone.now(),
        facts={"sample": True},
    )


def test_automation(automation, actor=None):
    """Run the action once with a sample event, here and now, without retries: the execution
    never waits in the queue and never stays pending. Returns the execution."""
    with transaction.atomic():
        event = sample_event(automation)
        event.actor = actor
        event.save(update_fields=["actor"])
        execution = lifecycle.start_test(automation, event)
    if execution.status == ExecutionStatus.RUNNING:
        deliver(execution)
    return execution_queryset().get(pk=execution.pk)


class AutomationTestView(AutomationMixin, APIView):
    @extend_schema(request=None, responses={200: dict})
    def post(self, request, team, pk):
        execution = test_automation(self.get_automation(pk), request.user)
        return Response(execution_detail(execution, self.role))


def execution_queryset():
    return Execution.objects.select_related(
        "automation__team", "event__actor", "event__version__collection__team", "event__version__collection__project",
        "event__version__collection__registry", "event__run__project__team",
    )


def execution_summary(execution):
    event = execution.event
    when = serializers.DateTimeField().to_representation
    return {
        "id": execution.pk,
        "automation": execution.automation_id,
        "automation_name": execution.automation.name,
        "status": execution.status,
        "is_test": execution.is_test,
        "event": {"type": execution.automation.event_type, "occurred_at": when(event.created_at), "author": event.author, "object": event.object_label},
        "triggered_at": when(execution.triggered_at),
        "finished_at": when(execution.finished_at) if execution.finished_at else None,
        "next_attempt_at": when(execution.next_attempt_at) if execution.next_attempt_at and execution.status == ExecutionStatus.PENDING else None,
        "attempts": execution.attempt_count,
        "error": execution.error,
        "delivery_id": execution.delivery_id,
    }


def shown_request(request, role):
    """A stored request as `role` may see it: webhook URLs often carry a token (Slack, Teams and
    Discord incoming webhooks), so only team admins, who manage integrations, see them whole;
    everyone else sees the scheme and host."""
    if role == Role.ADMIN or not isinstance(request, dict) or not request.get("url"):
        return request
    return {**request, "url": site_of(request["url"])}


def execution_detail(execution, role=None):
    when = serializers.DateTimeField().to_representation
    data = execution_summary(execution)
    data["context"] = execution.context
    data["request"] = shown_request(execution.request, role)
    data["attempts"] = [
        {"number": a.number, "started_at": when(a.started_at), "duration_ms": a.duration_ms, "status_code": a.status_code,
         "response_body": a.response_body, "error": a.error, "request": shown_request(a.request, role)}
        for a in execution.attempts.all()
    ]
    return data


STATUS_PARAM = OpenApiParameter("status", str, enum=[s.value for s in ExecutionStatus])


class ExecutionListView(TeamScopedMixin, generics.ListAPIView):
    serializer_class = serializers.Serializer

    def get_queryset(self):
        qs = execution_queryset().filter(automation__team=self.team)
        if "pk" in self.kwargs:
            qs = qs.filter(automation_id=get_object_or_404(Automation, team=self.team, pk=self.kwargs["pk"]).pk)
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in ExecutionStatus.values:
                raise serializers.ValidationError({"status": [f"Must be one of {', '.join(ExecutionStatus.values)}."]})
            qs = qs.filter(status=wanted)
        return qs

    @extend_schema(parameters=[STATUS_PARAM], responses={200: dict})
    def get(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([execution_summary(e) for e in page])


class ExecutionDetailView(TeamScopedMixin, APIView):
    @extend_schema(responses={200: dict})
    def get(self, request, team, pk):
        execution = get_object_or_404(execution_queryset().filter(automation__team=self.team), pk=pk)
        return Response(execution_detail(execution, self.role))


def redeliver(execution):
    """Deliver again by hand, with the same delivery id. False when it is being delivered now."""
    if not lifecycle.redeliver(execution):
        return False
    transaction.on_commit(lambda: dispatch.nudge("deliver"))
    return True


class RedeliverView(TeamScopedMixin, APIView):
    @extend_schema(request=None, responses={202: dict})
    def post(self, request, team, pk):
        execution = get_object_or_404(Execution, automation__team=self.team, pk=pk)
        if not lifecycle.sends(execution.automation):
            return Response({"detail": f"A {execution.automation.action_type} execution has nothing to deliver."}, status=status.HTTP_400_BAD_REQUEST)
        if not redeliver(execution):
            return Response({"detail": "This execution is being delivered right now."}, status=status.HTTP_409_CONFLICT)
        return Response({"id": execution.pk, "status": ExecutionStatus.PENDING}, status=status.HTTP_202_ACCEPTED)
