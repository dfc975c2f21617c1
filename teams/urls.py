from django.urls import path

from . import api

team = "teams/<str:team>/"

urlpatterns = [
    path("me/", api.MeView.as_view(), name="api-me"),
    path("teams/", api.TeamListView.as_view(), name="api-teams"),
    path(team, api.TeamDetailView.as_view(), name="api-team"),
    path(team + "members/", api.MemberListView.as_view(), name="api-members"),
    path(team + "members/<str:username>/", api.MemberDetailView.as_view(), name="api-member"),
    path(team + "secrets/", api.SecretListView.as_view(), name="api-secrets"),
    path(team + "secrets/<str:name>/", api.SecretDetailView.as_view(), name="api-secret"),
]
