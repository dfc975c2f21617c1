from django.contrib import admin, messages
from django.contrib.admin.apps import AdminConfig
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.shortcuts import redirect
from django.urls import reverse


class TriplineAdminSite(admin.AdminSite):
    """Team members use the admin with their team role (no staff flag needed); what each admin
    shows and allows follows SPEC.md section 5, per team (teams.admin.TeamScopedAdmin)."""

    site_header = "Tripline administration"
    site_title = "Tripline"

    def has_permission(self, request):
        from teams.models import Membership

        user = request.user
        return user.is_active and (user.is_staff or Membership.objects.filter(user=user).exists())

    def login(self, request, extra_context=None):
        from django.contrib.auth.views import redirect_to_login  # this module loads before the apps

        # Everyone signs in through the site's login page: the admin's own form refuses users
        # without the staff flag, which team members and viewers do not have.
        if request.user.is_authenticated and not self.has_permission(request):
            messages.info(request, "The admin shows your teams' objects; you are not in a team yet.")
            return redirect("home")
        return redirect_to_login(request.GET.get(REDIRECT_FIELD_NAME) or reverse("admin:index", current_app=self.name))


class TriplineAdminConfig(AdminConfig):
    default_site = "config.admin_site.TriplineAdminSite"
