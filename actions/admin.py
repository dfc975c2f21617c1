from django.contrib import admin, messages
from django.db import models

from teams.admin import TeamScopedAdmin
from teams.models import Role, Secret

from .api import send_test
from .kinds import KINDS, signing_kinds
from .models import Integration


def integration_field_map():
    """{kind: the integration form's fields of that kind, "all": every kind-specific field}, from
    the integration kinds' own definitions (actions/kinds.py), with the signing secret's status for
    the kinds that sign: the admin form's script shows only the chosen kind's."""
    kinds = {str(k): [*d.fields, *(["signing_key_status"] if d.signs else [])] for k, d in KINDS.items()}
    return {"kinds": kinds, "all": sorted({f for v in kinds.values() for f in v})}


@admin.register(Integration)
class IntegrationAdmin(TeamScopedAdmin):
    change_form_template = "admin/actions/integration/change_form.html"
    view_role = edit_role = Role.ADMIN
    list_display = ["name", "kind", "team", "enabled", "last_used_at", "last_error"]
    list_filter = ["kind", "enabled", "team"]
    search_fields = ["name", "url", "channel"]
    fields = ["team", "kind", "name", "url", "access_token_secret", "secret", "channel", "token_secret", "enabled",
              "disabled_reason", "signing_key_status", "last_error", "last_used_at"]
    readonly_fields = ["disabled_reason", "signing_key_status", "last_error", "last_used_at"]
    actions = ["send_test_action", "rotate_signing_secret"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("team", "access_token_secret", "secret", "token_secret").defer(
            "access_token_secret__value", "secret__value", "token_secret__value"
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in ("access_token_secret", "secret", "token_secret"):
            kwargs["queryset"] = Secret.objects.listing().select_related("team")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="Signing secret")
    def signing_key_status(self, obj):
        if obj.kind not in signing_kinds() or not obj.pk:
            return "Generated when the webhook is saved, and shown once."
        note = "Set (whsec_…); shown only when created or rotated."
        if obj.previous_key_expires_at:
            note += f" The previous key also signs until {obj.previous_key_expires_at:%Y-%m-%d %H:%M} UTC."
        return note

    def render_change_form(self, request, context, *args, **kwargs):
        context["field_map"] = integration_field_map()
        return super().render_change_form(request, context, *args, **kwargs)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change and obj.kind in signing_kinds():
            messages.warning(request, f"Signing secret for {obj.name} (copy it now, it is not shown again): {obj.signing_key}")

    @admin.action(description="Send a test message", permissions=["change"])
    def send_test_action(self, request, queryset):
        for integration in self.editable(request, queryset):
            outcome = send_test(integration)
            level = messages.SUCCESS if outcome["ok"] else messages.ERROR
            body = outcome["response_body"][:300]
            self.message_user(request, f"{integration.name}: {'ok' if outcome['ok'] else 'failed'} "
                                       f"status={outcome['status_code']} in {outcome['duration_ms']} ms {outcome['error']} {body}", level)

    @admin.action(description="Rotate the signing secret (old key signs for 24 h more)", permissions=["change"])
    def rotate_signing_secret(self, request, queryset):
        for integration in self.editable(request, queryset).filter(kind__in=signing_kinds()):
            key = integration.rotate_signing_key()
            messages.warning(request, f"New signing secret for {integration.name} (shown once): {key}")
