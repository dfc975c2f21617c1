from django.contrib.auth import get_user_model
from rest_framework import serializers

from .api_input import ModelSerializer, Serializer
from .models import Membership, Role, Secret, Team
from .validators import validate_secret_name, validate_slug_name


# Team pages live at /{team}/, beside these.
RESERVED_TEAM_NAMES = {"admin", "api", "static", "accounts", "login", "logout", "healthz", "metrics", "mlflow", "_demo"}


class TeamSerializer(ModelSerializer):
    name = serializers.CharField(max_length=64, validators=[validate_slug_name])

    class Meta:
        model = Team
        fields = ["name", "display_name", "created_at"]

    def validate_name(self, value):
        if value.lower() in RESERVED_TEAM_NAMES:
            raise serializers.ValidationError(f"{value!r} is reserved.")
        return value


class MembershipSerializer(Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)

    def validate_username(self, value):
        try:
            return get_user_model().objects.get(username=value)
        except get_user_model().DoesNotExist:
            raise serializers.ValidationError(f"No user named {value!r}.") from None

    def to_representation(self, membership: Membership):
        return {"username": membership.user.username, "role": membership.role, "created_at": membership.created_at}


class RoleSerializer(Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class SecretSerializer(ModelSerializer):
    """Takes a value, never gives one back."""

    name = serializers.CharField(max_length=64, validators=[validate_secret_name])
    value = serializers.CharField(write_only=True, max_length=8192, trim_whitespace=False)

    class Meta:
        model = Secret
        fields = ["name", "value", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class SecretValueSerializer(Serializer):
    value = serializers.CharField(write_only=True, max_length=8192, trim_whitespace=False)
