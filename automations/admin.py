import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html

from teams.admin import ReadOnlyAdmin, TeamScopedAdmin, TeamScopedInline, team_ids
from tracking.models import ArtifactCollection

from .api import redeliver, shown_request, test_automation
from .context import sample_context_for
from .models import Automation, DeliveryAttempt, Execution, ExecutionStatus, RunCondition, ScopeType
from . import action_kinds, event_types
from .spec import SpecError, action_fields, event_fields, parse_action, parse_event, parse_scope

SCOPE_FIELDS = {
    ScopeType.PROJECT: ["project"],
    ScopeType.ARTIFACT_COLLECTION: ["collection"],
    ScopeType.REGISTRY: ["registry"],
    ScopeType.REGISTRY_COLLECTION: ["collection"],
    ScopeType.TEAM: [],
}
FILTER_FIELDS = event_types.admin_form_fields()  # {name: form field}, built from the definitions' filter fields
FILTER_FORM_FIELDS = list(FILTER_FIELDS)
ACTION_FIELDS = action_kinds.admin_form_fields()  # likewise from the action kinds' fields
ACTION_FORM_FIELDS = list(ACTION_FIELDS)


def field_map():
    """The admin form fields each scope type, event type and action kind uses, computed from the
    definitions (automations/event_types, automations/action_kinds): the form's script shows
    only those of the chosen ones."""
    return {
        "scope": {k: v for k, v in SCOPE_FIELDS.items()},
        "event": event_types.filter_form_fields(),
        "action": action_kinds.form_fields(),
        "scope_events": {str(k): sorted(str(e) for e in v) for k, v in event_types.scope_events().items()},
        "all": {"scope": ["project", "registry", "collection"], "event": FILTER_FORM_FIELDS, "action": ACTION_FORM_FIELDS},
    }


def preview_of(automation):
    """What the automation's action would send for a sample event of its type, secrets masked:
    {"kind": "payload" | "slack" | "none", "preview": …} (the action kind's own preview)."""
    shown = action_kinds.get(automation.action_type).preview(automation, sample_context_for(automation))
    if shown is None:
        return {"kind": "none", "preview": "This action sends nothing to preview."}
    return shown


class AutomationForm(forms.ModelForm):
    collection = forms.ModelChoiceField(ArtifactCollection.objects.select_related("project", "registry", "team"), required=False,
                                        help_text="For artifact_collection (a project's) or registry_collection (a registry's) scopes.")
    class Meta:
        model = Automation
        fields = ["team", "name", "description", "enabled", "scope_type", "project", "registry", "collection", "event_type", "action_type"]

    team_ids = None  # the teams the user may edit in; set per request by AutomationAdmin.get_form

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.team_ids is not None:
            for name in ("collection", "integration"):
                self.fields[name].queryset = self.fields[name].queryset.filter(team__in=self.team_ids)
        instance = self.instance
        if instance.pk:
            f = instance.event_filter
            for name, field in event_types.filter_declarations().items():
                if name in f:
                    self.initial.update(field.form_initial(name, f[name]))
            config = {**instance.action_config, "integration": instance.integration_id}
            for name, field in action_kinds.field_declarations().items():
                if name in config:
                    self.initial.update(field.form_initial(name, config[name]))

    def clean(self):
        data = super().clean()
        team = data.get("team")
        if team is None:
            return data
        for field in ("project", "registry", "collection", "integration"):
            obj = data.get(field)
            if obj is not None and obj.team_id != team.pk:
                self.add_error(field, f"{obj} belongs to another team than {team}.")
        if self.errors:
            return data
        scope = {"type": data.get("scope_type")}
        for field in SCOPE_FIELDS.get(data.get("scope_type"), []):
            obj = data.get(field)
            if field == "collection" and obj is not None:
                scope["project" if obj.project_id else "registry"] = (obj.project or obj.registry).name
            scope[field] = obj.name if obj is not None else None
        event_type = data.get("event_type")
        event = {"type": event_type}
        for name, field in event_fields().get(event_type, {}).items():
            value = field.from_form(name, data)
            if value not in (None, "", [], {}):
                event[name] = value
        action = {"type": data.get("action_type")}
        for name, field in action_fields().get(data.get("action_type"), {}).items():
            try:
                value = field.from_form(name, data)
            except forms.ValidationError as exc:  # the payload's JSON text
                self.add_error(name, exc)
                return data
            if value not in (None, ""):
                action[name] = value
        self._parsed = {}
        for section, parse in (("scope", lambda: parse_scope(team, scope)), ("event", lambda: parse_event(scope["type"], event)),
                               ("action", lambda: parse_action(team, action))):
            try:
                self._parsed[section] = parse()
            except SpecError as exc:
                self._add_spec_errors(exc.errors)
        return data

    def _add_spec_errors(self, errors):
        for section, detail in errors.items():
            items = detail.items() if isinstance(detail, dict) else [(None, detail)]
            for field, messages_ in items:
                target = {"run_filter": "run_name_regex", "type": {"scope": "scope_type", "event": "event_type", "action": "action_type"}[section]}.get(field, field)
                if target not in self.fields:
                    target = None
                for message in messages_:
                    self.add_error(target, f"{field}: {message}" if target is None and field else message)

    def save(self, commit=True):
        automation = super().save(commit=False)
        scope = self._parsed["scope"]
        automation.scope_type = scope["scope_type"]
        automation.project, automation.registry, automation.collection = scope["project"], scope["registry"], scope["collection"]
        automation.event_type, automation.event_filter = self._parsed["event"]
        automation.action_type, automation.integration, automation.action_config = self._parsed["action"]
        if commit:
            automation.save()
        return automation


for _name, _field in {**FILTER_FIELDS, **ACTION_FIELDS}.items():  # the event filter's and action's fields, as if declared in the class
    AutomationForm.declared_fields[_name] = AutomationForm.base_fields[_name] = _field


class LastStatusFilter(admin.SimpleListFilter):
    title = "last status"
    parameter_name = "last_status"

    def lookups(self, request, model_admin):
        return [(s.value, s.label) for s in ExecutionStatus] + [("never", "never triggered")]

    def queryset(self, request, queryset):
        if self.value() == "never":
            return queryset.filter(last_status__isnull=True)
        if self.value():
            return queryset.filter(last_status=self.value())
        return queryset


@admin.register(Automation)
class AutomationAdmin(TeamScopedAdmin):
    form = AutomationForm
    change_form_template = "admin/automations/automation/change_form.html"
    list_display = ["name", "team", "scope_type", "event_type", "action_type", "enabled", "last_status"]
    list_filter = ["event_type", "scope_type", "enabled", "action_type", LastStatusFilter, "team"]
    search_fields = ["name", "description"]
    readonly_fields = ["payload_preview"]
    actions = ["test_action", "enable", "disable"]
    fieldsets = [
        (None, {"fields": ["team", "name", "description", "enabled"]}),
        ("Scope", {"fields": ["scope_type", "project", "registry", "collection"]}),
        ("Event", {"fields": ["event_type", *FILTER_FORM_FIELDS]}),
        ("Action", {"fields": ["action_type", *ACTION_FORM_FIELDS, "payload_preview"]}),
    ]

    def get_queryset(self, request):
        last = Execution.objects.filter(automation=OuterRef("pk")).order_by("-triggered_at", "-id").values("status")[:1]
        return super().get_queryset(request).select_related("team", "integration").annotate(last_status=Subquery(last))

    @admin.display(ordering="last_status")
    def last_status(self, obj):
        return obj.last_status or "—"

    @admin.display(description="Preview (sample event, secrets masked)")
    def payload_preview(self, obj):
        """The saved automation's preview; the form's Preview button shows the one of the form as edited."""
        shown = preview_of(obj) if obj.pk else {"kind": "none", "preview": "Press Preview to see what the action sends for a sample event."}
        text = shown["preview"] if shown["kind"] == "none" else json.dumps(shown["preview"], indent=2, ensure_ascii=False)
        return format_html('<pre id="action-preview">{}</pre>', text)

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        context["field_map"] = field_map()
        context["preview_url"] = reverse("admin:automations_automation_preview")
        context["may_send_test"] = obj is not None and self.has_change_permission(request, obj)
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)

    def get_urls(self):
        return [
            path("preview/", self.admin_site.admin_view(self.preview_view), name="automations_automation_preview"),
            path("<int:pk>/send-test/", self.admin_site.admin_view(self.send_test_view), name="automations_automation_send_test"),
            *super().get_urls(),
        ]

    def preview_view(self, request):
        """POST the automation form as edited: its field errors, or what its action would send
        for a sample event of its type (secrets masked). Nothing is saved."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        pk = request.POST.get("_pk") or ""
        obj = get_object_or_404(self.get_queryset(request), pk=pk) if pk.isdigit() else None
        if not (self.has_change_permission(request, obj) if obj else self.has_add_permission(request)):
            raise PermissionDenied
        form = self.get_form(request, obj)(request.POST, instance=obj)
        if not form.is_valid():
            return JsonResponse({"errors": {field: [str(e) for e in errors] for field, errors in form.errors.items()}}, status=400)
        return JsonResponse(preview_of(form.save(commit=False)), json_dumps_params={"ensure_ascii": False})

    def send_test_view(self, request, pk):
        """Run the saved automation's action once with a sample event (members and admins)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        automation = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_change_permission(request, automation):
            raise PermissionDenied
        execution = test_automation(automation, request.user)
        level = messages.SUCCESS if execution.status == ExecutionStatus.SUCCEEDED else messages.ERROR
        self.message_user(request, format_html('Test of {}: {}{}. <a href="{}">Open the execution</a>', automation.name, execution.status,
                                               f" ({execution.error})" if execution.error else "", execution.get_absolute_url()), level)
        return redirect(reverse("admin:automations_automation_change", args=[automation.pk]))

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        return type(form.__name__, (form,), {"team_ids": team_ids(request, self.edit_role)})

    @admin.action(description="Test: run the action once with a sample event", permissions=["change"])
    def test_action(self, request, queryset):
        for automation in self.editable(request, queryset).select_related("integration", "team"):
            execution = test_automation(automation, request.user)
            level = messages.SUCCESS if execution.status == ExecutionStatus.SUCCEEDED else messages.ERROR
            self.message_user(request, f"{automation.name}: {execution.status} {execution.error}", level)

    @admin.action(description="Enable", permissions=["change"])
    def enable(self, request, queryset):
        self.editable(request, queryset).update(enabled=True)

    @admin.action(description="Disable", permissions=["change"])
    def disable(self, request, queryset):
        self.editable(request, queryset).update(enabled=False)


class AttemptInline(TeamScopedInline, admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    fields = ["number", "started_at", "duration_ms", "status_code", "response_body", "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    team_path = "automation__team"
    list_display = ["id", "automation", "status", "is_test", "triggered_at", "finished_at", "attempt_count", "error"]
    list_filter = ["status", "is_test", "automation__event_type", "automation__action_type", "automation__team"]
    search_fields = ["delivery_id", "automation__name", "error"]
    list_select_related = ["automation"]
    inlines = [AttemptInline]
    actions = ["redeliver_action"]
    readonly_fields = ["automation", "event", "status", "is_test", "delivery_id", "context", "request", "attempt_count", "error",
                       "triggered_at", "started_at", "finished_at", "next_attempt_at", "lease_until"]
    exclude = ["lease_token", "request"]

    def get_readonly_fields(self, request, obj=None):
        # The request as the user's role may see it (webhook URLs whole for team admins only).
        role = obj.automation.team.role_of(request.user) if obj else None

        def request_sent(execution):
            return json.dumps(shown_request(execution.request, role), indent=2, ensure_ascii=False)

        request_sent.short_description = "request"
        return [request_sent if name == "request" else name for name in super().get_readonly_fields(request, obj)]

    def has_redeliver_permission(self, request):
        return TeamScopedAdmin.has_change_permission(self, request)  # members may redeliver

    @admin.action(description="Redeliver", permissions=["redeliver"])
    def redeliver_action(self, request, queryset):
        done = sum(redeliver(e) for e in self.editable(request, queryset).exclude(automation__action_type__in=action_kinds.silent()))
        self.message_user(request, f"{done} execution(s) queued for redelivery.")


@admin.register(RunCondition)
class RunConditionAdmin(ReadOnlyAdmin):
    """Whether each run metric automation's condition held at its last evaluation, per run."""

    team_path = "automation__team"
    list_display = ["automation", "run", "met", "last_fired_at"]
    list_filter = ["met", "automation__event_type"]
    search_fields = ["automation__name", "run__run_id"]
    list_select_related = ["automation", "run__project__team"]
