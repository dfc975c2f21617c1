from django.contrib import admin
from django.core.validators import RegexValidator
from django.db import transaction

from teams.admin import ReadOnlyAdmin, TeamScopedAdmin, TeamScopedInline
from teams.models import Role

from .models import (RUN_ID_RE, ArtifactAlias, ArtifactCollection, ArtifactTag, ArtifactVersion, MetricPoint, Project, Registry, Run,
                     RunMetric, add_tag)

# Deleting in the admin (SPEC.md section 5): projects, runs, registries, collections and versions
# hold a team's history, so only its admins delete them (with everything recorded about them);
# members delete what they may remove through the API too: aliases, tags, automations.


@admin.register(Project)
class ProjectAdmin(TeamScopedAdmin):
    delete_role = Role.ADMIN
    list_display = ["name", "team", "created_at"]
    list_filter = ["team"]
    search_fields = ["name", "team__name"]


@admin.register(Run)
class RunAdmin(TeamScopedAdmin):
    team_path = "project__team"
    delete_role = Role.ADMIN
    fixed_on_change = ["run_id"]  # its pages, links and history are addressed by it
    list_display = ["run_id", "name", "project", "user", "state", "created_at"]
    list_filter = ["state", "project__team", "project"]
    search_fields = ["run_id", "name", "user__username"]
    list_select_related = ["project__team", "user"]
    raw_id_fields = ["project"]
    readonly_fields = ["user"]  # who logged the run

    def save_model(self, request, obj, form, change):
        if not change:
            obj.user = request.user
        super().save_model(request, obj, form, change)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "run_id":
            field.validators.append(RegexValidator(RUN_ID_RE, "Use up to 64 letters, digits, '-' or '_', starting with a letter or digit."))
        return field


@admin.register(RunMetric)
class RunMetricAdmin(ReadOnlyAdmin):
    team_path = "run__project__team"
    list_display = ["run", "key", "last_step", "last_value", "count", "updated_at"]
    search_fields = ["key", "run__run_id"]
    list_select_related = ["run__project__team"]


@admin.register(MetricPoint)
class MetricPointAdmin(ReadOnlyAdmin):
    """Raw history, read-only; a run may hold millions of rows, so no full counts."""

    team_path = "run__project__team"
    list_display = ["run", "key", "step", "value", "raw", "timestamp"]
    search_fields = ["=run__run_id", "=key"]
    list_select_related = ["run__project__team"]
    show_full_result_count = False


@admin.register(Registry)
class RegistryAdmin(TeamScopedAdmin):
    delete_role = Role.ADMIN
    list_display = ["name", "team", "created_at"]
    list_filter = ["team"]
    search_fields = ["name", "team__name"]


@admin.register(ArtifactCollection)
class ArtifactCollectionAdmin(TeamScopedAdmin):
    delete_role = Role.ADMIN
    fixed_on_change = ["project", "registry"]  # its versions and links belong where they were made
    list_display = ["name", "type", "team", "project", "registry", "next_index", "created_at"]
    list_filter = ["type", "team", "registry"]
    search_fields = ["name", "type"]
    list_select_related = ["team", "project__team", "registry__team"]


class AliasInline(TeamScopedInline, admin.TabularInline):
    model = ArtifactAlias
    extra = 0
    fields = ["alias", "created_by", "updated_at"]
    readonly_fields = ["alias", "created_by", "updated_at"]
    can_delete = True

    def has_add_permission(self, request, obj):
        return False


class TagInline(TeamScopedInline, admin.TabularInline):
    model = ArtifactTag
    extra = 0
    fields = ["tag", "created_by", "created_at"]
    readonly_fields = ["created_by", "created_at"]


@admin.register(ArtifactVersion)
class ArtifactVersionAdmin(TeamScopedAdmin):
    team_path = "collection__team"
    delete_role = Role.ADMIN
    list_display = ["__str__", "collection", "index", "created_by", "created_at"]
    list_filter = ["collection__type", "collection__team"]
    search_fields = ["collection__name", "digest", "aliases__alias", "tags__tag"]
    list_select_related = ["collection__team", "collection__project", "collection__registry", "created_by"]
    readonly_fields = ["collection", "index", "source", "created_by", "created_at"]
    raw_id_fields = ["run"]
    inlines = [AliasInline, TagInline]

    def has_add_permission(self, request):
        return False  # versions are created by the API, which allocates the index

    def save_formset(self, request, form, formset, change):
        if formset.model is not ArtifactTag:
            return super().save_formset(request, form, formset, change)
        # Tags are added through add_tag, which records their author (and the API does the
        # same); an edited tag is the old one removed and the new one added.
        with transaction.atomic():
            formset.save(commit=False)  # sorts the rows into new, changed and deleted; writes nothing
            edited = [tag for tag, _ in formset.changed_objects]
            ArtifactTag.objects.filter(pk__in=[tag.pk for tag in [*formset.deleted_objects, *edited]]).delete()
            for tag in [*edited, *formset.new_objects]:
                add_tag(form.instance, tag.tag, request.user)


@admin.register(ArtifactAlias)
class ArtifactAliasAdmin(TeamScopedAdmin):
    team_path = "collection__team"
    list_display = ["alias", "version", "collection", "created_by", "updated_at"]
    list_filter = ["collection__team"]
    search_fields = ["alias", "collection__name"]
    raw_id_fields = ["collection", "version"]
    readonly_fields = ["created_by"]


@admin.register(ArtifactTag)
class ArtifactTagAdmin(TeamScopedAdmin):
    team_path = "version__collection__team"
    list_display = ["tag", "version", "created_by", "created_at"]
    search_fields = ["tag"]
    raw_id_fields = ["version"]
    readonly_fields = ["created_by"]
