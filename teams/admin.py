from django import forms
from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from .models import KEEP_AN_ADMIN, ROLE_RANK, Membership, Role, Secret, Team

ROLES_AT_LEAST = {role: [r for r in ROLE_RANK if ROLE_RANK[r] >= ROLE_RANK[role]] for role in ROLE_RANK}


def team_ids(request, role):
    """Ids of the teams where the user holds at least `role`; None for a superuser (all)."""
    if request.user.is_superuser:
        return None
    if not request.user.is_authenticated:
        return set()  # the login page also asks which apps to list
    cache = request.__dict__.setdefault("_tripline_team_ids", {})
    if role not in cache:
        cache[role] = set(Membership.objects.filter(user=request.user, role__in=ROLES_AT_LEAST[role]).values_list("team_id", flat=True))
    return cache[role]


def team_of(obj, path):
    """The team id reached from `obj` along a lookup path such as `run__project__team`."""
    *hops, last = path.split("__")
    for hop in hops:
        obj = getattr(obj, hop)
    return getattr(obj, f"{last}_id") if last == "team" else getattr(obj, last)


def allowed(request, role, path, obj=None):
    ids = team_ids(request, role)
    if ids is None:
        return True
    return bool(ids) if obj is None else team_of(obj, path) in ids


def scoped_choices(model, ids, queryset=None):
    """Limit a foreign key's choices to the given teams' objects."""
    queryset = queryset if queryset is not None else model._default_manager.all()
    if model is Team:
        return queryset.filter(pk__in=ids)
    if any(f.name == "team" for f in model._meta.fields):
        return queryset.filter(team__in=ids)
    return queryset


class TeamScopedAdmin(admin.ModelAdmin):
    """An admin whose objects belong to a team (reached by `team_path`): listed for members
    with `view_role` or more, edited by those with `edit_role` or more, superusers see all."""

    team_path = "team"
    view_role = Role.VIEWER
    edit_role = Role.MEMBER

    def get_queryset(self, request):
        ids = team_ids(request, self.view_role)
        queryset = super().get_queryset(request)
        return queryset if ids is None else queryset.filter(**{f"{self.team_path}__in": ids})

    def editable(self, request, queryset):
        """`queryset` cut down to the objects the user may change (for admin actions)."""
        ids = team_ids(request, self.edit_role)
        return queryset if ids is None else queryset.filter(**{f"{self.team_path}__in": ids})

    def has_module_permission(self, request):
        return allowed(request, self.view_role, self.team_path)

    def has_view_permission(self, request, obj=None):
        return allowed(request, self.view_role, self.team_path, obj)

    def has_add_permission(self, request):
        return allowed(request, self.edit_role, self.team_path)

    def has_change_permission(self, request, obj=None):
        return allowed(request, self.edit_role, self.team_path, obj)

    def has_delete_permission(self, request, obj=None):
        return allowed(request, self.edit_role, self.team_path, obj)

    def get_list_filter(self, request):
        # A relation filter would list every related object (every team, every project);
        # offer only those that appear among the rows this user may see.
        def scoped(spec):
            if isinstance(spec, str) and get_fields_from_path(self.model, spec)[-1].is_relation:
                return (spec, admin.RelatedOnlyFieldListFilter)
            return spec

        return [scoped(spec) for spec in super().get_list_filter(request)]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        ids = team_ids(request, self.edit_role)
        if ids is not None:
            kwargs["queryset"] = scoped_choices(db_field.related_model, ids, kwargs.get("queryset"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class TeamScopedInline:
    """An inline that follows its parent object's team (`parent_team_path` from the parent)."""

    parent_team_path = "team"
    view_role = Role.VIEWER
    edit_role = Role.MEMBER

    def has_view_permission(self, request, obj=None):
        return allowed(request, self.view_role, self.parent_team_path, obj)

    def has_add_permission(self, request, obj=None):
        return allowed(request, self.edit_role, self.parent_team_path, obj)

    def has_change_permission(self, request, obj=None):
        return allowed(request, self.edit_role, self.parent_team_path, obj)

    def has_delete_permission(self, request, obj=None):
        return allowed(request, self.edit_role, self.parent_team_path, obj)


class ReadOnlyAdmin(TeamScopedAdmin):
    """For records the system writes (events, history, executions): viewable, never edited."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class MembershipForm(forms.ModelForm):
    def clean(self):
        cleaned = super().clean()
        # self.instance still holds the stored values here: the form's are applied after clean()
        if self.instance.is_last_admin() and (cleaned.get("role") != Role.ADMIN or cleaned.get("team") != self.instance.team):
            raise ValidationError(KEEP_AN_ADMIN)
        return cleaned


class MembershipFormSet(BaseInlineFormSet):
    """The memberships of one team, edited together: whatever is changed or deleted at once,
    a team that has an admin keeps one."""

    def clean(self):
        super().clean()
        if any(self.errors) or self.instance.pk is None or not self.instance.memberships.filter(role=Role.ADMIN).exists():
            return
        kept = [form for form in self.forms if form.cleaned_data and not self._should_delete_form(form)]
        if not any(form.cleaned_data.get("role") == Role.ADMIN for form in kept):
            raise ValidationError(KEEP_AN_ADMIN)


class MembershipInline(TeamScopedInline, admin.TabularInline):
    model = Membership
    formset = MembershipFormSet  # judged as a whole: one admin may hand over to another
    extra = 0
    parent_team_path = "pk"
    edit_role = Role.ADMIN


@admin.register(Team)
class TeamAdmin(TeamScopedAdmin):
    list_display = ["name", "display_name", "created_at"]
    search_fields = ["name", "display_name"]
    inlines = [MembershipInline]
    team_path = "pk"
    edit_role = Role.ADMIN

    def has_add_permission(self, request):
        return request.user.is_superuser  # anyone may create a team through the API

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(Membership._meta.verbose_name)  # a deleted team takes its last admin with it
        return deleted, counts, perms_needed, protected


@admin.register(Membership)
class MembershipAdmin(TeamScopedAdmin):
    form = MembershipForm
    list_display = ["user", "team", "role", "created_at"]
    list_filter = ["role", "team"]
    search_fields = ["user__username", "team__name"]
    edit_role = Role.ADMIN

    def has_delete_permission(self, request, obj=None):
        # the last admin is removed only with the team itself
        return super().has_delete_permission(request, obj) and not (obj and obj.is_last_admin())


class SecretForm(forms.ModelForm):
    """The value is write-only: a password input that never renders what is stored."""

    value = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        required=False,
        strip=False,
        max_length=8192,
        help_text="Stored encrypted and never shown again. Leave empty to keep the current value.",
    )

    class Meta:
        model = Secret
        fields = ["team", "name", "value"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial.pop("value", None)
        if not self.instance.pk:
            self.fields["value"].required = True
            self.fields["value"].help_text = "Stored encrypted and never shown again."

    def clean_value(self):
        value = self.cleaned_data.get("value")
        if not value and self.instance.pk:
            return None  # keep the stored value
        return value

    def save(self, commit=True):
        value = self.cleaned_data.get("value")
        if value is None and self.instance.pk:
            self.instance.value = Secret.objects.get(pk=self.instance.pk).value
        return super().save(commit=commit)


@admin.register(Secret)
class SecretAdmin(TeamScopedAdmin):
    form = SecretForm
    list_display = ["name", "team", "created_at", "updated_at"]
    list_filter = ["team"]
    search_fields = ["name", "team__name"]
    view_role = edit_role = Role.ADMIN

    def get_queryset(self, request):
        return super().get_queryset(request).defer("value")
