from django.urls import path

from . import api

team = "teams/<str:team>/"
project = team + "projects/<str:project>/"
run = project + "runs/<str:run>/"
artifact = project + "artifacts/<str:name>/"
registry = team + "registries/<str:registry>/"
rcollection = registry + "collections/<str:collection>/"


def collection_routes(prefix, kind):
    return [
        path(prefix + "versions/", api.VersionListView.as_view(), name=f"{kind}-versions"),
        path(prefix + "versions/<str:version>/", api.VersionDetailView.as_view(), name=f"{kind}-version"),
        path(prefix + "versions/<str:version>/aliases/", api.VersionAliasView.as_view(), name=f"{kind}-aliases"),
        path(prefix + "versions/<str:version>/aliases/<str:alias>/", api.VersionAliasDetailView.as_view(), name=f"{kind}-alias"),
        path(prefix + "versions/<str:version>/tags/", api.VersionTagView.as_view(), name=f"{kind}-tags"),
        path(prefix + "versions/<str:version>/tags/<str:tag>/", api.VersionTagDetailView.as_view(), name=f"{kind}-tag"),
    ]


urlpatterns = [
    path(team + "projects/", api.ProjectListView.as_view(), name="api-projects"),
    path(project, api.ProjectDetailView.as_view(), name="api-project"),
    path(project + "runs/", api.RunListView.as_view(), name="api-runs"),
    path(run, api.RunDetailView.as_view(), name="api-run"),
    path(run + "history/", api.HistoryView.as_view(), name="api-history"),
    path(project + "artifacts/", api.ArtifactListView.as_view(), name="api-artifacts"),
    path(artifact, api.CollectionDetailView.as_view(), name="api-artifact"),
    *collection_routes(artifact, "api-artifact"),
    path(team + "registries/", api.RegistryListView.as_view(), name="api-registries"),
    path(registry, api.RegistryDetailView.as_view(), name="api-registry"),
    path(registry + "collections/", api.RegistryCollectionListView.as_view(), name="api-registry-collections"),
    path(rcollection, api.CollectionDetailView.as_view(), name="api-registry-collection"),
    path(rcollection + "links/", api.LinkView.as_view(), name="api-links"),
    *collection_routes(rcollection, "api-registry"),
]
