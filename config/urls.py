from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from automations import demo
from ops import views as ops

# Team pages live at /<team>/: every first path segment here is a reserved team name
# (teams.serializers.RESERVED_TEAM_NAMES; a test checks that they agree).
urlpatterns = [
    # One sign-in page for every role; the admin's login sends here (config.admin_site).
    path("login/", auth_views.LoginView.as_view(template_name="tripline/login.html", redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", ops.healthz, name="healthz"),  # before the /<team>/ pages (reserved team names)
    path("metrics", ops.metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/", include("teams.urls")),
    path("api/v1/", include("tracking.urls")),
    path("api/v1/", include("actions.urls")),
    path("api/v1/", include("automations.urls")),
    path("mlflow/", include("mlflow_server.urls")),  # before the /<team>/ pages
    path("_demo/receiver/<int:status>/", demo.receiver, name="demo_receiver"),  # `_`: never a team name
    path("", include("teams.pages_urls")),  # /accounts/: before the /<team>/ pages
    path("", include("tracking.pages_urls")),
    path("", include("automations.pages_urls")),
]
