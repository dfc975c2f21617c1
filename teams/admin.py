import json
import math

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import models
from django.forms.models import BaseInlineFormSet

from .models import KEEP_AN_ADMIN, ROLE_RANK, Membership, Role, Secret, Team
from .serializers import RESERVED_TEAM_NAMES

ROLES_AT_LEAST = {role: [r for r in ROLE_RANK if ROLE_RANK[r] >= ROLE_RANK[role]] for role in ROLE_RANK}

# Each model's lookup path to its team, e.g. Run: "project__team". Declared once, as the
# `team_path` of the model's admin (TeamScopedAdmin registers it here), and used for every
# scoping: lists, permissions, foreign-key choices, raw-id lookups and the team checks of forms.
TEAM_PATHS = {Team: "pk"}


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


def scoped(queryset, ids):
    """`queryset` cut down to the objects of the teams `ids` (None: all). A model with no known
    path to a team offers nothing: a new foreign key is closed until its model says whose it is."""
    if ids is None:
        return queryset
    path = TEAM_PATHS.get(queryset.model)
    return queryset.none() if path is None else queryset.filter(**{f"{path}__in": ids})


def unstorable(value):
    """Why a JSON value cannot be stored and shown (PostgreSQL refuses NUL and non-finite
    numbers, no page can encode a lone surrogate), or None. Walked without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return "Numbers must be finite (no NaN or Infinity)."
        elif isinstance(item, str):
            if "\x00" in item:
                return "Text cannot contain NUL (\\u0000)."
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "Text cannot contain lone surrogates (such as \\ud800)."
    return None


class StoredJSONField(forms.JSONField):
    """Django's JSON form field, refusing with a form error what it would otherwise let through
    to a 500: nesting too deep to parse, integers too long to read, unstorable values, and an
    empty input or `null` for a column that cannot be null (left empty, it takes the column's
    default: {} or [])."""

    def __init__(self, *, default=None, **kwargs):
        super().__init__(**kwargs)
        self.default = default  # a callable such as dict, or None when the column takes NULL

    def to_python(self, value):
        if self.disabled:
            return value
        if value in self.empty_values and self.default is not None:
            return self.default()
        try:
            value = super().to_python(value)  # invalid JSON is a form error already
        except (RecursionError, ValueError):
            raise ValidationError("Enter valid JSON: nested too deeply or a number too long.", code="invalid") from None
        if value is None and self.default is not None:
            raise ValidationError(f"Enter a JSON value other than null, such as {json.dumps(self.default())}.", code="invalid")
        problem = unstorable(value)
        if problem:
            raise ValidationError(problem, code="invalid")
        return value

    def bound_data(self, data, initial):
        try:
            value = super().bound_data(data, initial)
        except (RecursionError, ValueError):
            return forms.fields.InvalidJSONInput(data)
        # Redisplay refused input as typed: a lone surrogate could not even be rendered.
        return forms.fields.InvalidJSONInput(data) if isinstance(data, str) and unstorable(value) else value


class UserByName(forms.ModelChoiceField):
    """A user typed by username, as the API's members endpoint takes it, rather than picked
    from a list of every account of the install."""

    widget = forms.TextInput

    def __init__(self, **kwargs):
        super().__init__(get_user_model().objects.filter(is_active=True), to_field_name="username", **kwargs)

    def prepare_value(self, value):
        if isinstance(value, int):  # the stored user id, as a model form's initial data holds it
            return self.queryset.model._default_manager.filter(pk=value).values_list("username", flat=True).first() or value
        return value.username if isinstance(value, self.queryset.model) else value

    def to_python(self, value):
        if isinstance(value, int):  # a disabled field cleans its initial value: the stored id
            value = self.prepare_value(value)
        return super().to_python(value)

    def label_from_instance(self, obj):
        return obj.username


class ScopedRawIdWidget(ForeignKeyRawIdWidget):
    """A raw-id input that names only objects the user may choose: Django's looks any id up,
    so typing another team's id would show that object's name beside the field."""

    def __init__(self, rel, admin_site, queryset, **kwargs):
        super().__init__(rel, admin_site, **kwargs)
        self.queryset = queryset

    def label_and_url_for_value(self, value):
        key = self.rel.get_related_field().name
        try:
            visible = self.queryset.filter(**{key: value}).exists()
        except (ValueError, TypeError, ValidationError, OverflowError):
            visible = False
        return super().label_and_url_for_value(value) if visible else ("", "")


class TeamScopedForm:
    """Mixed into every admin form of a team's objects (TeamScopedFields.scope_form):

    - every object chosen in a foreign key belongs to the object's own team, so no form links
      two teams (a member of both could otherwise file team A's collection under team B's
      project, and A's automations would fire for B);
    - `fixed_fields` (the object's team, or what leads to it) keep their value once the object
      exists: moving it would carry its history (runs, versions, executions) to another team.
    """

    team_path = "team"
    fixed_fields = ()
    user_fields = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            for name in self.fixed_fields:
                if name in self.fields:
                    self.fields[name].disabled = True

    def _post_clean(self):
        super()._post_clean()  # the instance now holds the form's values
        try:
            team = team_of(self.instance, self.team_path)
        except ObjectDoesNotExist:
            team = None
        if team is None:
            return  # its team is not chosen (a field error says so) or not made yet (a new team)
        for name, field in self.fields.items():
            value = self.cleaned_data.get(name)
            if not isinstance(field, forms.ModelChoiceField) or value is None or name in self.user_fields:
                continue
            model = type(value)
            path = TEAM_PATHS.get(model)
            if path is None or not model._default_manager.filter(**{path: team}).filter(pk=value.pk).exists():
                self.add_error(name, f"Choose an object of this object's own team ({Team.objects.get(pk=team).name}).")


class TeamScopedFields:
    """Foreign keys offer, and accept, only objects of the teams where the user holds
    `edit_role`; JSON fields refuse what cannot be stored."""

    edit_role = Role.MEMBER
    user_fields = ()  # user foreign keys taken by username, any user: members are added by name
    fixed_fields = ()

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.JSONField):
            kwargs.setdefault("form_class", StoredJSONField)
            if not db_field.null and db_field.has_default() and callable(db_field.default):
                kwargs.setdefault("default", db_field.default)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.user_fields:
            return UserByName(required=not db_field.blank, help_text="The username.")
        if "queryset" not in kwargs:
            queryset = self.get_field_queryset(kwargs.get("using"), db_field, request)
            kwargs["queryset"] = db_field.remote_field.model._default_manager.using(kwargs.get("using")) if queryset is None else queryset
        kwargs["queryset"] = scoped(kwargs["queryset"], team_ids(request, self.edit_role))
        if db_field.name in self.raw_id_fields and "widget" not in kwargs:
            kwargs["widget"] = ScopedRawIdWidget(db_field.remote_field, self.admin_site, kwargs["queryset"], using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def scope_form(self, form, team_path):
        attrs = {"team_path": team_path, "fixed_fields": self.fixed_fields, "user_fields": self.user_fields}
        return type(form.__name__, (TeamScopedForm, form), attrs)


class TeamScopedAdmin(TeamScopedFields, admin.ModelAdmin):
    """An admin whose objects belong to a team (reached by `team_path`): listed for members
    with `view_role` or more, edited by those with `edit_role` or more, deleted by those with
    `delete_role` or more; superusers see all. The first step of `team_path` (the object's
    team, project, collection…) is fixed once the object exists, with any `fixed_on_change`."""

    team_path = "team"
    view_role = Role.VIEWER
    edit_role = Role.MEMBER
    delete_role = None  # None: edit_role
    fixed_on_change = ()

    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        TEAM_PATHS[model] = self.team_path
        self.fixed_fields = (*{self.team_path.split("__")[0]} - {"pk"}, *self.fixed_on_change)

    def get_queryset(self, request):
        return scoped(super().get_queryset(request), team_ids(request, self.view_role))

    def editable(self, request, queryset):
        """`queryset` cut down to the objects the user may change (for admin actions)."""
        return scoped(queryset, team_ids(request, self.edit_role))

    def has_module_permission(self, request):
        return allowed(request, self.view_role, self.team_path)

    def has_view_permission(self, request, obj=None):
        return allowed(request, self.view_role, self.team_path, obj)

    def has_add_permission(self, request):
        return allowed(request, self.edit_role, self.team_path)

    def has_change_permission(self, request, obj=None):
        return allowed(request, self.edit_role, self.team_path, obj)

    def has_delete_permission(self, request, obj=None):
        return allowed(request, self.delete_role or self.edit_role, self.team_path, obj)

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # What the system recorded about an object (its events, history, executions) goes
        # with it; those records are never deleted on their own (ReadOnlyAdmin).
        perms_needed -= {model._meta.verbose_name for model, model_admin in self.admin_site._registry.items()
                         if isinstance(model_admin, ReadOnlyAdmin)}
        return deleted, counts, perms_needed, protected

    def get_form(self, request, obj=None, **kwargs):
        return self.scope_form(super().get_form(request, obj, **kwargs), self.team_path)

    def get_list_filter(self, request):
        # A relation filter would list every related object (every team, every project);
        # offer only those that appear among the rows this user may see.
        def scoped_filter(spec):
            if isinstance(spec, str) and get_fields_from_path(self.model, spec)[-1].is_relation:
                return (spec, admin.RelatedOnlyFieldListFilter)
            return spec

        return [scoped_filter(spec) for spec in super().get_list_filter(request)]


class TeamScopedInline(TeamScopedFields):
    """An inline that follows its parent object's team."""

    view_role = Role.VIEWER

    def parent_team_path(self):
        return TEAM_PATHS[self.parent_model]

    def has_view_permission(self, request, obj=None):
        return allowed(request, self.view_role, self.parent_team_path(), obj)

    def has_add_permission(self, request, obj=None):
        return allowed(request, self.edit_role, self.parent_team_path(), obj)

    def has_change_permission(self, request, obj=None):
        return allowed(request, self.edit_role, self.parent_team_path(), obj)

    def has_delete_permission(self, request, obj=None):
        return allowed(request, self.edit_role, self.parent_team_path(), obj)

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        team_path = TEAM_PATHS.get(self.model)
        if team_path:
            formset.form = self.scope_form(formset.form, team_path)
        return formset


class ReadOnlyAdmin(TeamScopedAdmin):
    """For records the system writes (events, history, executions, condition states): viewable,
    never added, edited or deleted here. They go when what they belong to is deleted, or when
    RETENTION_DAYS expires them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MembershipForm(forms.ModelForm):
    """A membership's team and user are fixed once it exists: what changes is the role."""

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
    edit_role = Role.ADMIN
    user_fields = ["user"]


class TeamForm(forms.ModelForm):
    def clean_name(self):
        name = self.cleaned_data["name"]
        if name.lower() in RESERVED_TEAM_NAMES:
            raise ValidationError(f"{name!r} is reserved: the site's own pages use /{name}/.")
        return name


@admin.register(Team)
class TeamAdmin(TeamScopedAdmin):
    form = TeamForm
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
    user_fields = ["user"]
    fixed_on_change = ["user"]

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
