from django.urls import path

from . import pages

urlpatterns = [
    path("<str:team>/automations/", pages.automation_list, name="automations"),
    path("<str:team>/automations/<int:pk>/", pages.automation_page, name="automation"),
    path("<str:team>/automations/<int:pk>/toggle/", pages.automation_toggle, name="automation_toggle"),
    path("<str:team>/executions/", pages.executions_page, name="executions"),
    path("<str:team>/executions/<int:pk>/", pages.execution_page, name="execution"),
    path("<str:team>/executions/<int:pk>/redeliver/", pages.execution_redeliver, name="execution_redeliver"),
]
