import uuid

from django.conf import settings
from django.db import models, transaction
from django.db.models import Case, F, Q, Value, When
from django.urls import reverse
from django.utils import timezone

from actions.models import Integration
from events.models import Event, EventType  # noqa: F401 (the one enum of event types)
from ops.compiled import Compiled
from teams.models import Team
from tracking.models import ArtifactCollection, Project, Registry, Run


class ScopeType(models.TextChoices):
    PROJECT = "project"
    ARTIFACT_COLLECTION = "artifact_collection"
    REGISTRY = "registry"
    REGISTRY_COLLECTION = "registry_collection"
    TEAM = "team"


def event_type_choices():
    """The event types an automation can watch: one per definition in automations/event_types."""
    from .event_types import REGISTRY

    return [(name, name) for name in REGISTRY]


def action_type_choices():
    """The action kinds: one per definition in automations/action_kinds."""
    from .action_kinds import KINDS

    return [(name, name) for name in KINDS]


class ActionType(models.TextChoices):
    WEBHOOK = "WEBHOOK"
    SLACK = "SLACK"
    NO_OP = "NO_OP"


# Editing any of these changes what the automation watches: its per-run condition state restarts.
CONDITION_FIELDS = ("event_type", "event_filter")


def new_token():
    return uuid.uuid4().hex


class AutomationQuerySet(models.QuerySet):
    def update(self, **fields):
        """A bulk update keeps what `Automation.save` keeps (the admin's enable action goes
        through here): enabling stamps `enabled_since` on the automations that were off, and a
        new condition forgets the old per-run state."""
        if fields.get("enabled") is True and "enabled_since" not in fields:
            turned_on = Q(enabled=False) | Q(enabled_since__isnull=True)
            fields["enabled_since"] = Case(When(turned_on, then=Value(timezone.now())), default=F("enabled_since"))
        with transaction.atomic():
            # the teams it leaves and the one it joins: a worker's cached candidates of each are stale
            moved_to = fields.get("team_id", fields.get("team"))
            AutomationsChanged.bump({*self.values_list("team_id", flat=True).distinct(),
                                     *([getattr(moved_to, "pk", moved_to)] if moved_to is not None else [])})
            if any(name in fields for name in CONDITION_FIELDS):
                RunCondition.objects.filter(automation__in=list(self.values_list("pk", flat=True))).delete()
            return super().update(**fields)

    def bulk_create(self, objs, *args, **kwargs):
        with transaction.atomic():
            AutomationsChanged.bump({obj.team_id for obj in objs})
            return super().bulk_create(objs, *args, **kwargs)

    def delete(self):
        with transaction.atomic():
            AutomationsChanged.bump(self.values_list("team_id", flat=True).distinct())
            return super().delete()


class AutomationsChanged(models.Model):
    """A counter per team, bumped in the transaction of every change to one of its automations
    (create, edit, switch, delete — whichever path), so that a worker's cache of the automations
    a scope watches (automations.matching.candidates) knows, with one primary-key read, whether
    it still holds. An atomic increment: concurrent changes each count."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, primary_key=True, related_name="+")
    generation = models.BigIntegerField(default=0)
    # new with each row: a counter that started again (a team's row re-created, a test database
    # rolled back) never passes for one a cache saw before
    token = models.CharField(max_length=32, default=new_token)

    @classmethod
    def bump(cls, team_ids):
        team_ids = set(team_ids)
        if not team_ids:
            return
        cls.objects.bulk_create([cls(team_id=pk) for pk in team_ids], ignore_conflicts=True)
        cls.objects.filter(team_id__in=team_ids).update(generation=F("generation") + 1)

    @classmethod
    def of(cls, team_id):
        """What a cache of the team's automations compares: (token, generation), or None. Read
        by every evaluation: a compiled query (building it cost ten times the read)."""
        row = next(iter(_changed_of(team_id)), None)
        return None if row is None else (row.token, row.generation)


_changed_of = Compiled(lambda team_id: AutomationsChanged.objects.filter(team_id=team_id).only("token", "generation")[:1])


class Automation(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="automations")
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True, max_length=2000)
    enabled = models.BooleanField(default=True)
    # When it was last switched on (or created enabled): it fires only for events that occurred
    # since, never for one that happened before it existed or while it was off.
    enabled_since = models.DateTimeField(null=True, blank=True, default=timezone.now, editable=False)
    scope_type = models.CharField(max_length=24, choices=ScopeType.choices)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="automations")
    registry = models.ForeignKey(Registry, null=True, blank=True, on_delete=models.CASCADE, related_name="automations")
    collection = models.ForeignKey(ArtifactCollection, null=True, blank=True, on_delete=models.CASCADE, related_name="automations")
    event_type = models.CharField(max_length=24, choices=event_type_choices)
    event_filter = models.JSONField(default=dict, blank=True)
    action_type = models.CharField(max_length=8, choices=action_type_choices, default=ActionType.NO_OP)
    integration = models.ForeignKey(Integration, null=True, blank=True, on_delete=models.PROTECT, related_name="automations")
    action_config = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AutomationQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_automation_name")]
        # Matching looks automations up by what they watch, never by scanning them all.
        indexes = [
            models.Index(fields=["project", "event_type"], name="automation_by_project", condition=Q(enabled=True)),
            models.Index(fields=["registry", "event_type"], name="automation_by_registry", condition=Q(enabled=True)),
            models.Index(fields=["collection", "event_type"], name="automation_by_collection", condition=Q(enabled=True)),
            models.Index(fields=["team", "event_type"], name="automation_by_team", condition=Q(enabled=True, scope_type="team")),
        ]
        ordering = ["team", "name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("automation", args=[self.team.name, self.pk])

    def save(self, *args, update_fields=None, **kwargs):
        """Whatever edits it (API, admin form, code): switching it on stamps `enabled_since`,
        and a changed condition forgets the per-run state of the old one."""
        written = set(update_fields) if update_fields is not None else None
        stored = None
        if not self._state.adding and self.pk is not None:
            stored = type(self).objects.filter(pk=self.pk).values("enabled", "team_id", *CONDITION_FIELDS).first()
        if self.enabled and (stored is None or not stored["enabled"]) and (written is None or "enabled" in written):
            self.enabled_since = timezone.now()
            if written is not None:
                written.add("enabled_since")
        changed = stored is not None and any(
            stored[name] != getattr(self, name) and (written is None or name in written) for name in CONDITION_FIELDS
        )
        with transaction.atomic():
            if changed:
                RunCondition.objects.filter(automation=self).delete()
            super().save(*args, update_fields=written, **kwargs)
            # moved to another team (the admin form's team field): the team it left's cached candidates hold it too
            AutomationsChanged.bump({self.team_id, *([stored["team_id"]] if stored else [])})

    def delete(self, *args, **kwargs):
        with transaction.atomic():
            AutomationsChanged.bump([self.team_id])
            return super().delete(*args, **kwargs)

    @property
    def scope_label(self):
        if self.scope_type == ScopeType.TEAM:
            return f"team {self.team.name}"
        target = self.collection or self.project or self.registry
        return f"{self.get_scope_type_display()} {target}"


class RunCondition(models.Model):
    """Whether a run metric automation's condition held for a run at its last evaluation, so it
    fires on the transition into the condition and at most once per cooldown."""

    automation = models.ForeignKey(Automation, on_delete=models.CASCADE, related_name="run_conditions")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    met = models.BooleanField(default=False)
    last_event_id = models.BigIntegerField(default=0)
    last_fired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["automation", "run"], name="unique_run_condition")]


class ExecutionStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


def new_delivery_id():
    return "msg_" + uuid.uuid4().hex


class Execution(models.Model):
    """One triggering of an automation by an event, with its delivery state and attempts."""

    automation = models.ForeignKey(Automation, on_delete=models.CASCADE, related_name="executions")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="executions")
    status = models.CharField(max_length=10, choices=ExecutionStatus.choices, default=ExecutionStatus.PENDING)
    is_test = models.BooleanField(default=False)
    # The webhook-id: the same on every attempt of this execution, for receivers to deduplicate.
    delivery_id = models.CharField(max_length=40, default=new_delivery_id, unique=True)
    context = models.JSONField(default=dict, blank=True)
    request = models.JSONField(default=dict, blank=True)
    attempt_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    triggered_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    # The worker process holding the lease, so that a worker stopping hands back what it holds.
    claimed_by = models.CharField(max_length=100, blank=True)
    # Attempts made before the latest redelivery: each redelivery starts a new round, with the
    # whole retry schedule and attempt cap ahead of it.
    round_start = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["automation", "event"], name="unique_execution")]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="execution_due", condition=Q(status="pending")),
            models.Index(fields=["lease_until"], name="execution_leased", condition=Q(status="running")),
            models.Index(fields=["automation", "-triggered_at"], name="execution_history"),
        ]
        ordering = ["-triggered_at", "-id"]

    def __str__(self):
        return f"{self.automation} #{self.pk} ({self.status})"

    def get_absolute_url(self):
        return reverse("execution", args=[self.automation.team.name, self.pk])


class DeliveryAttempt(models.Model):
    """Written before a request is sent and completed after, so a worker that dies mid-delivery
    leaves a visible, unfinished attempt behind."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    request = models.JSONField(default=dict, blank=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["execution", "number"], name="unique_attempt_number")]
        ordering = ["execution", "number"]


class Nudge(models.Model):
    """A task enqueued to work through what is due (`deliver`), or late (`evaluate`), that has
    not started yet. While one is waiting no other is enqueued, so a queue however deep holds at
    most one of each kind (see automations.dispatch)."""

    kind = models.CharField(max_length=16, primary_key=True)
    token = models.CharField(max_length=32, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
