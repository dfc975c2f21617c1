from django.db.models import ProtectedError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from teams.api_errors import Conflict, refuse_name_clash
from teams.api_input import ModelSerializer, Serializer
from teams.models import Role
from teams.permissions import TeamScopedMixin

from . import kinds
from .models import Integration, IntegrationKind


class IntegrationSerializer(ModelSerializer):
    kind = serializers.ChoiceField(choices=IntegrationKind.choices)
    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    url = serializers.URLField(max_length=2000, required=False, allow_blank=True)
    access_token_secret = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64)
    secret = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64)
    token_secret = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64)
    channel = serializers.CharField(required=False, allow_blank=True, max_length=128)

    class Meta:
        model = Integration
        fields = ["id", "kind", "name", "url", "access_token_secret", "secret", "channel", "token_secret", "enabled",
                  "disabled_reason", "last_error", "last_used_at", "created_at"]
        read_only_fields = ["disabled_reason", "last_error", "last_used_at", "created_at"]

    def to_representation(self, integration):
        data = super().to_representation(integration)
        for field in ("access_token_secret", "secret", "token_secret"):
            secret = getattr(integration, field)
            data[field] = secret.name if secret else None
        return data

    def validate(self, attrs):
        team = self.context["team"]
        kind = attrs.get("kind") or (self.instance.kind if self.instance else None)
        if self.instance and "kind" in attrs and attrs["kind"] != self.instance.kind:
            raise serializers.ValidationError({"kind": ["The kind of an integration cannot change."]})
        errors = {}
        for other_kind, definition in kinds.KINDS.items():  # fields only one kind takes (API.md)
            for field in definition.fields:
                if other_kind != kind and attrs.get(field):
                    errors[field] = [f"Only {other_kind} integrations take {field}."]
        for field in ("access_token_secret", "secret", "token_secret"):
            if field in attrs:
                name = attrs[field]
                if not name:
                    attrs[field] = None
                    continue
                secret = team.secrets.listing().filter(name=name).first()
                if secret is None:
                    errors[field] = [f"No secret named {name!r} in team {team.name}; create it under secrets first."]
                attrs[field] = secret
        merged = {f: attrs.get(f, getattr(self.instance, f, None) if self.instance else None) for f in ("url", "channel", "token_secret")}
        if kind in kinds.KINDS:
            for field, message in kinds.get(kind).missing(merged).items():
                errors.setdefault(field, [message])
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class TestRequestSerializer(Serializer):
    payload = serializers.JSONField(required=False)


class AdminOnly(TeamScopedMixin):
    read_role = Role.ADMIN
    write_role = Role.ADMIN


class IntegrationListView(AdminOnly, generics.ListCreateAPIView):
    serializer_class = IntegrationSerializer

    def get_queryset(self):
        return self.team.integrations.select_related("access_token_secret", "secret", "token_secret").defer(
            "signing_key", "previous_signing_key", "access_token_secret__value", "secret__value", "token_secret__value"
        )

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "team": self.team}

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        refuse_name_clash(self.team.integrations, serializer.validated_data["name"], "An integration")
        integration = serializer.save(team=self.team)
        data = IntegrationSerializer(integration, context=self.get_serializer_context()).data
        if integration.kind in kinds.signing_kinds():
            data["signing_secret"] = integration.signing_key  # shown this once
        return Response(data, status=status.HTTP_201_CREATED)


class IntegrationMixin(AdminOnly):
    def get_integration(self, pk):
        return get_object_or_404(self.team.integrations.select_related("access_token_secret", "secret", "token_secret"), pk=pk)


class IntegrationDetailView(IntegrationMixin, APIView):
    @extend_schema(responses=IntegrationSerializer)
    def get(self, request, team, pk):
        return Response(IntegrationSerializer(self.get_integration(pk), context={"team": self.team}).data)

    @extend_schema(request=IntegrationSerializer, responses=IntegrationSerializer)
    def patch(self, request, team, pk):
        integration = self.get_integration(pk)
        serializer = IntegrationSerializer(integration, data=request.data, partial=True, context={"team": self.team})
        serializer.is_valid(raise_exception=True)
        refuse_name_clash(self.team.integrations, serializer.validated_data.get("name"), "An integration", integration)
        if serializer.validated_data.get("enabled"):
            serializer.validated_data["disabled_reason"] = ""
        serializer.save()
        return Response(IntegrationSerializer(integration, context={"team": self.team}).data)

    @extend_schema(responses={204: None})
    def delete(self, request, team, pk):
        integration = self.get_integration(pk)
        try:
            integration.delete()
        except ProtectedError as exc:
            names = ", ".join(sorted(str(o) for o in exc.protected_objects))
            raise Conflict("integration", f"Used by automations: {names}. Change or delete them first.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class RotateSigningSecretView(IntegrationMixin, APIView):
    @extend_schema(request=None, responses={200: dict})
    def post(self, request, team, pk):
        integration = self.get_integration(pk)
        if integration.kind not in kinds.signing_kinds():
            return Response({"detail": "Only webhooks have a signing secret."}, status=status.HTTP_400_BAD_REQUEST)
        key = integration.rotate_signing_key()
        return Response({"signing_secret": key, "previous_valid_until": integration.previous_key_expires_at})


def send_test(integration, payload=None):
    """Send one sample message now, without retries; the outcome as API.md describes it."""
    kind = kinds.get(integration.kind)
    result = kind.send_test(integration, kind.test_message(integration, payload))
    return {"ok": result.ok, "status_code": result.status_code, "response_body": result.response_body,
            "error": result.error, "duration_ms": result.duration_ms}


class IntegrationTestView(IntegrationMixin, APIView):
    @extend_schema(request=TestRequestSerializer, responses={200: dict})
    def post(self, request, team, pk):
        integration = self.get_integration(pk)
        serializer = TestRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(send_test(integration, serializer.validated_data.get("payload")))
