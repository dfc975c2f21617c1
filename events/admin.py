from django.contrib import admin

from teams.admin import ReadOnlyAdmin

from .models import Event


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """The durable record of what happened: read-only."""

    list_display = ["id", "type", "team", "object_label", "actor", "created_at", "evaluated_at", "sample"]
    list_filter = ["type", "sample", "team", ("evaluated_at", admin.EmptyFieldListFilter)]
    search_fields = ["cause", "actor__username"]
    list_select_related = ["team", "actor", "version__collection__team", "version__collection__project",
                           "version__collection__registry", "run__project__team"]
    show_full_result_count = False
