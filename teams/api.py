from django.db import transaction
from django.db.models import ProtectedError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .api_errors import Conflict, refuse_name_clash
from .models import KEEP_AN_ADMIN, Membership, Role, Secret, Team
from .permissions import TeamScopedMixin
from .serializers import MembershipSerializer, RoleSerializer, SecretSerializer, SecretValueSerializer, TeamSerializer


class MeView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request):
        memberships = Membership.objects.filter(user=request.user).select_related("team")
        return Response(
            {
                "username": request.user.username,
                "teams": [{"name": m.team.name, "role": m.role} for m in memberships],
            }
        )


class TeamListView(generics.ListCreateAPIView):
    serializer_class = TeamSerializer

    def get_queryset(self):
        return Team.objects.filter(memberships__user=self.request.user)

    def perform_create(self, serializer):
        refuse_name_clash(Team.objects, serializer.validated_data["name"], "A team")
        with transaction.atomic():
            team = serializer.save()
            Membership.objects.create(team=team, user=self.request.user, role=Role.ADMIN)


class TeamDetailView(TeamScopedMixin, APIView):
    @extend_schema(responses=TeamSerializer)
    def get(self, request, team):
        return Response(TeamSerializer(self.team).data)


class MemberListView(TeamScopedMixin, generics.ListCreateAPIView):
    serializer_class = MembershipSerializer
    write_role = Role.ADMIN

    def get_queryset(self):
        return self.team.memberships.select_related("user")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["username"]
        if self.team.memberships.filter(user=user).exists():
            raise Conflict("username", f"{user.username} is already in the team.")
        membership = Membership.objects.create(team=self.team, user=user, role=serializer.validated_data["role"])
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(TeamScopedMixin, APIView):
    write_role = Role.ADMIN
    read_role = Role.VIEWER

    def get_membership(self, username):
        return get_object_or_404(Membership.objects.select_related("user"), team=self.team, user__username=username)

    @extend_schema(responses=MembershipSerializer)
    def get(self, request, team, username):
        return Response(MembershipSerializer(self.get_membership(username)).data)

    @extend_schema(request=RoleSerializer, responses=MembershipSerializer)
    def patch(self, request, team, username):
        membership = self.get_membership(username)
        serializer = RoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        role = serializer.validated_data["role"]
        if role != Role.ADMIN and membership.is_last_admin():
            return Response({"role": [KEEP_AN_ADMIN]}, status=status.HTTP_400_BAD_REQUEST)
        membership.role = role
        membership.save(update_fields=["role"])
        return Response(MembershipSerializer(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request, team, username):
        membership = self.get_membership(username)
        if membership.is_last_admin():
            return Response({"username": [KEEP_AN_ADMIN]}, status=status.HTTP_400_BAD_REQUEST)
        membership.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class SecretListView(TeamScopedMixin, generics.ListCreateAPIView):
    serializer_class = SecretSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def get_queryset(self):
        return self.team.secrets.listing()

    def perform_create(self, serializer):
        refuse_name_clash(self.team.secrets, serializer.validated_data["name"], "A secret")
        serializer.save(team=self.team)


class SecretDetailView(TeamScopedMixin, APIView):
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(responses=SecretSerializer)
    def get(self, request, team, name):
        return Response(SecretSerializer(get_object_or_404(self.team.secrets.listing(), name=name)).data)

    @extend_schema(request=SecretValueSerializer, responses=SecretSerializer)
    def put(self, request, team, name):
        secret = get_object_or_404(self.team.secrets.listing(), name=name)
        serializer = SecretValueSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        secret.value = serializer.validated_data["value"]
        secret.save(update_fields=["value", "updated_at"])
        return Response(SecretSerializer(secret).data)

    @extend_schema(responses={204: None})
    def delete(self, request, team, name):
        secret = get_object_or_404(Secret.objects.listing(), team=self.team, name=name)
        try:
            secret.delete()
        except ProtectedError as exc:
            users = ", ".join(sorted({str(o) for o in exc.protected_objects}))
            raise Conflict("name", f"The secret is used by: {users}. Detach it first.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)
