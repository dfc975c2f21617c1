from django.urls import path

from . import api

team = "teams/<str:team>/"

urlpatterns = [
    path(team + "integrations/", api.IntegrationListView.as_view(), name="api-integrations"),
    path(team + "integrations/<int:pk>/", api.IntegrationDetailView.as_view(), name="api-integration"),
    path(team + "integrations/<int:pk>/rotate-signing-secret/", api.RotateSigningSecretView.as_view(), name="api-integration-rotate"),
    path(team + "integrations/<int:pk>/test/", api.IntegrationTestView.as_view(), name="api-integration-test"),
]
