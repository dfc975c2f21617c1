from django.urls import path

from . import views

urlpatterns = [
    path("", views.serve, {"team": "", "path": ""}),
    path("<str:team>/", views.serve, {"path": ""}),
    path("<str:team>/<path:path>", views.serve),
]
