from django.contrib import admin
from django.db import transaction

from teams.admin import ReadOnlyAdmin, TeamScopedAdmin, TeamScopedInline

from .models import ArtifactAlias, ArtifactCollection, ArtifactTag, ArtifactVersion, MetricPoint, Project, Registry, Run, RunMetric


@admin.register(Project)
class ProjectAdmin(TeamScopedAdmin):
    list_display = ["name", "team", "created_at"]
    list_filter = ["team"]
    search_fields = ["name", "team__name"]


@admin.register(Run)
class RunAdmin(TeamScopedAdmin):
    team_path = "project__team"
    list_display = ["run_id", "name", "project", "user", "state", "created_at"]
    list_filter = ["state", "project__team", "project"]
    search_fields = ["run_id", "name", "user__username"]
    list_select_related = ["project__team", "user"]
    raw_id_fields = ["project", "user"]


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
    list_display = ["name", "team", "created_at"]
    list_filter = ["team"]
    search_fields = ["name", "team__name"]


@admin.register(ArtifactCollection)
class ArtifactCollectionAdmin(TeamScopedAdmin):
    list_display = ["name", "type", "team", "project", "registry", "next_index", "created_at"]
    list_filter = ["type", "team", "registry"]
    search_fields = ["name", "type"]
    list_select_related = ["team", "project__team", "registry__team"]


class AliasInline(TeamScopedInline, admin.TabularInline):
    parent_team_path = "collection__team"
    model = ArtifactAlias
    extra = 0
    fields = ["alias", "created_by", "updated_at"]
    readonly_fields = ["alias", "created_by", "updated_at"]
    can_delete = True

    def has_add_permission(self, request, obj):
        return False


class TagInline(TeamScopedInline, admin.TabularInline):
    parent_team_path = "collection__team"
    model = ArtifactTag
    extra = 0
    fields = ["tag", "created_by", "created_at"]
    readonly_fields = ["created_by", "created_at"]


@admin.register(ArtifactVersion)
class ArtifactVersionAdmin(TeamScopedAdmin):
    team_path = "collection__team"
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
        # New tags go through add_tag so that they record their author.
        if formset.model is ArtifactTag:
            from .models import add_tag

            with transaction.atomic():
                for obj in formset.deleted_objects:
                    obj.delete()
                for tag_form in formset.forms:
                    if tag_form.has_changed() and not tag_form.instance.pk and tag_form.cleaned_data.get("tag"):
                        add_tag(form.instance, tag_form.cleaned_data["tag"], request.user)
            return
        super().save_formset(request, form, formset, change)


@admin.register(ArtifactAlias)
class ArtifactAliasAdmin(TeamScopedAdmin):
    team_path = "collection__team"
    list_display = ["alias", "version", "collection", "created_by", "updated_at"]
    list_filter = ["collection__team"]
    search_fields = ["alias", "collection__name"]
    raw_id_fields = ["collection", "version"]


@admin.register(ArtifactTag)
class ArtifactTagAdmin(TeamScopedAdmin):
    team_path = "version__collection__team"
    list_display = ["tag", "version", "created_by", "created_at"]
    search_fields = ["tag"]
    raw_id_fields = ["version"]
