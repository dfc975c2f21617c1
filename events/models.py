from django.conf import settings
from django.db import models, transaction
from django.db.models import Q

from ops.compiled import insert
from teams.models import Team
from tracking.models import ArtifactCollection, ArtifactVersion, Project, Registry, Run

from .signals import event_committed


class EventType(models.TextChoices):
    """The one list of event types: what an Event records, and what an automation watches.
    What each type means to automations (its filter, scopes, matching, payload variables) is
    its definition in automations/event_types/."""

    CREATE_ARTIFACT = "CREATE_ARTIFACT"
    LINK_ARTIFACT = "LINK_ARTIFACT"
    ADD_ARTIFACT_ALIAS = "ADD_ARTIFACT_ALIAS"
    ADD_ARTIFACT_TAG = "ADD_ARTIFACT_TAG"
    RUN_STATE = "RUN_STATE"
    # Recorded once per history batch per run; the RUN_METRIC_* automations evaluate it.
    RUN_HISTORY = "RUN_HISTORY"
    RUN_METRIC_THRESHOLD = "RUN_METRIC_THRESHOLD"
    RUN_METRIC_CHANGE = "RUN_METRIC_CHANGE"
    RUN_METRIC_ZSCORE = "RUN_METRIC_ZSCORE"
    RUN_STALLED = "RUN_STALLED"


class EventQuerySet(models.QuerySet):
    def unevaluated(self):
        """Events the automations have not looked at yet (a sample event never is)."""
        return self.filter(evaluated_at__isnull=True, sample=False)


class Event(models.Model):
    """The durable record of something that happened, written in the transaction that did it."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=24, choices=EventType.choices)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    registry = models.ForeignKey(Registry, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    collection = models.ForeignKey(ArtifactCollection, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    version = models.ForeignKey(ArtifactVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    facts = models.JSONField(default=dict, blank=True)
    # The delivery id of the execution whose receiver caused this change (Tripline-Cause header).
    cause = models.CharField(max_length=64, blank=True)
    # A sample event made to test an automation; never evaluated.
    sample = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["created_at"], name="event_unevaluated", condition=Q(evaluated_at__isnull=True)),
            models.Index(fields=["run", "type", "-id"], name="event_by_run"),
        ]

    def __str__(self):
        return f"{self.type} {self.object_label}"

    @property
    def author(self):
        return self.actor.username if self.actor_id else ""

    @property
    def object_label(self):
        if self.version_id:
            return self.version.version_string
        if self.run_id:
            return f"{self.run.project.team.name}/{self.run.project.name}/{self.run.run_id}"
        return ""

    @property
    def object_url(self):
        obj = self.version if self.version_id else self.run
        if obj is None:
            return settings.SITE_URL + "/"
        return settings.SITE_URL + obj.get_absolute_url()


def record_event(**fields):
    """Write an event in the current transaction, and announce it once it commits (Event has no
    save signal receivers: it is written by ops.compiled.insert)."""
    event = insert(Event(**fields))
    transaction.on_commit(lambda: event_committed.send(sender=Event, event_id=event.pk))
    return event
