from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class TriplineAdminSite(admin.AdminSite):
    """Team members use the admin with their team role (no staff flag needed); what each admin
    shows and allows follows SPEC.md section 5, per team (teams.admin.TeamScopedAdmin)."""

    site_header = "Tripline administration"
    site_title = "Tripline"

    def has_permission(self, request):
        from teams.models import Membership

        user = request.user
        return user.is_active and (user.is_staff or Membership.objects.filter(user=user).exists())


class TriplineAdminConfig(AdminConfig):
    default_site = "config.admin_site.TriplineAdminSite"
