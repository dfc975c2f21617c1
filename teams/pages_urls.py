from django.urls import path

from . import pages

# Under /accounts/, a reserved team name (teams.serializers.RESERVED_TEAM_NAMES).
urlpatterns = [
    path("accounts/", pages.account_page, name="account"),
    path("accounts/token/", pages.token_regenerate, name="token_regenerate"),
]
