from django.urls import path

from . import pages

urlpatterns = [
    path("", pages.home, name="home"),
    path("<str:team>/", pages.team_page, name="team"),
    path("<str:team>/projects/<str:project>/", pages.project_page, name="project"),
    path("<str:team>/projects/<str:project>/runs/<str:run>/", pages.run_page, name="run"),
    path("<str:team>/projects/<str:project>/runs/<str:run>/chart/", pages.run_chart, name="run_chart"),
    path("<str:team>/projects/<str:project>/compare/", pages.compare_page, name="compare"),
    path("<str:team>/projects/<str:project>/artifacts/<str:name>/", pages.artifact_page, name="artifact"),
    path("<str:team>/projects/<str:project>/artifacts/<str:name>/<str:version>/", pages.artifact_version_page, name="artifact_version"),
    path("<str:team>/registries/<str:registry>/", pages.registry_page, name="registry"),
    path("<str:team>/registries/<str:registry>/<str:collection>/", pages.registry_collection_page, name="registry_collection"),
    path("<str:team>/registries/<str:registry>/<str:collection>/<str:version>/", pages.registry_version_page, name="registry_version"),
]
