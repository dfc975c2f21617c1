from django.urls import path

from . import api

team = "teams/<str:team>/"

urlpatterns = [
    path(team + "automations/", api.AutomationListView.as_view(), name="api-automations"),
    path(team + "automations/<int:pk>/", api.AutomationDetailView.as_view(), name="api-automation"),
    path(team + "automations/<int:pk>/test/", api.AutomationTestView.as_view(), name="api-automation-test"),
    path(team + "automations/<int:pk>/executions/", api.ExecutionListView.as_view(), name="api-automation-executions"),
    path(team + "executions/", api.ExecutionListView.as_view(), name="api-executions"),
    path(team + "executions/<int:pk>/", api.ExecutionDetailView.as_view(), name="api-execution"),
    path(team + "executions/<int:pk>/redeliver/", api.RedeliverView.as_view(), name="api-execution-redeliver"),
]
