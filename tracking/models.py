import json
import math
import re
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import Q
from django.db.models.signals import post_save
from django.urls import reverse
from django.utils import timezone

from ops.compiled import insert
from teams.models import Team
from teams.validators import validate_slug_name

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/ -]{0,127}$")
VERSION_RE = re.compile(r"^v(\d+)$")
LATEST = "latest"


def validate_alias(alias):
    if not isinstance(alias, str) or not ALIAS_RE.match(alias):
        raise ValidationError("Use up to 128 letters, digits, '-', '_' or '.', starting with a letter or digit.")
    if VERSION_RE.match(alias):
        raise ValidationError("An alias cannot look like a version (vN).")


def validate_tag(tag):
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        raise ValidationError("Use up to 128 letters, digits, spaces or '-_.:/', starting with a letter or digit.")


# a metric's name: up to 128 characters through the REST API, up to 250 (MLflow's limit) through MLflow's
METRIC_KEY_LENGTH = 250

class Project(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=64, validators=[validate_slug_name])
    description = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_project_name")]
        ordering = ["team", "name"]

    def __str__(self):
        return f"{self.team.name}/{self.name}"

    def get_absolute_url(self):
        return reverse("project", args=[self.team.name, self.name])


class RunState(models.TextChoices):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CRASHED = "crashed"
    KILLED = "killed"


def new_run_id():
    return secrets.token_hex(4)


class Run(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    run_id = models.CharField("id", max_length=64)
    name = models.CharField(max_length=128)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    state = models.CharField(max_length=8, choices=RunState.choices, default=RunState.RUNNING)
    config = models.JSONField(default=dict, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "run_id"], name="unique_run_id")]
        indexes = [models.Index(fields=["project", "-created_at"])]
        ordering = ["-created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The state as stored, so that a save can tell a state change from any other edit; a new
        # run has none. (`_state.adding` is still True here for a loaded run: from_db sets it.)
        self._loaded_state = None

    @classmethod
    def from_db(cls, db, field_names, values):
        run = super().from_db(db, field_names, values)
        run._loaded_state = run.__dict__.get("state")  # None if deferred: save() reads it then
        return run

    def refresh_from_db(self, *args, **kwargs):
        super().refresh_from_db(*args, **kwargs)
        if "state" in self.__dict__:
            self._loaded_state = self.state

    def save(self, *args, **kwargs):
        if self._loaded_state is None and not self._state.adding:
            self._loaded_state = Run.objects.filter(pk=self.pk).values_list("state", flat=True).first()
        super().save(*args, **kwargs)

    def __str__(self):
        return f"{self.project}/{self.run_id}"

    def get_absolute_url(self):
        return reverse("run", args=[self.project.team.name, self.project.name, self.run_id])


class MetricPoint(models.Model):
    """One logged value: a run can hold millions, written in bulk, read by (run, key, step desc).

    `value` holds finite numbers only; anything else (NaN, ±inf, strings, booleans) is kept as
    logged, JSON-encoded, in `raw` and never satisfies a metric condition.
    """

    id = models.BigAutoField(primary_key=True)
    # No index of its own: `metric_window` begins with run_id and serves every lookup by run (a
    # run's deletion too). The second index cost every batch's insert 11-12 % (PostgreSQL and
    # SQLite, 5,000 values) and its size on disk.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="points", db_index=False)
    key = models.CharField(max_length=METRIC_KEY_LENGTH)
    step = models.BigIntegerField()
    value = models.FloatField(null=True)
    # Unbounded: a value is stored whole or refused at the API, never cut into invalid JSON.
    raw = models.TextField(null=True)
    timestamp = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["run", "key", "-step"], name="metric_window")]

    @property
    def logged(self):
        return logged_value(self.value, self.raw)


class MetricSummary(models.Model):
    """A metric's finite values aggregated over one bucket of steps at one level of resolution:
    bucket `b` of level `k` holds the steps `b * w … (b + 1) * w - 1`, `w = 64 * 8**k` (floor
    division, so negative steps have negative buckets). Kept by `log_history` in the same
    transaction as the points (tracking/summary.py), so that a chart of a million points reads
    a few thousand of these rows instead of aggregating the points. A bucket holding no finite
    value has no row."""

    # The primary key is the bucket's identity: its one index serves the upsert's conflicts,
    # the charts' range reads and a run's deletion (an `id` would be a second index to write).
    pk = models.CompositePrimaryKey("run", "key", "level", "bucket")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="summaries", db_index=False)
    key = models.CharField(max_length=METRIC_KEY_LENGTH)
    level = models.SmallIntegerField()
    bucket = models.BigIntegerField()
    lo = models.FloatField()  # the minimum value
    hi = models.FloatField()  # the maximum value
    s_lo = models.BigIntegerField()  # the first step holding a finite value
    s_hi = models.BigIntegerField()  # the last step holding a finite value
    n = models.BigIntegerField()  # how many finite values
    t0 = models.DateTimeField()  # the earliest timestamp of those values


class RunMetric(models.Model):
    """The latest value, step and count of one metric of one run, kept up to date on write."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metrics")
    key = models.CharField(max_length=METRIC_KEY_LENGTH)
    last_value = models.FloatField(null=True)
    last_raw = models.TextField(null=True)
    last_step = models.BigIntegerField()
    count = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="unique_run_metric")]
        indexes = [models.Index(fields=["key", "-updated_at"], name="metric_latest_by_key")]


def finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


NON_FINITE_TEXT = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def logged_value(value, raw):
    """A stored point as logged: a finite number from `value`, anything else decoded from `raw`,
    with NaN and ±Infinity as the strings "NaN", "Infinity" and "-Infinity" (API.md: JSON has no
    literal for them, and the pages and API render strict JSON)."""
    if raw is None:
        return value
    try:
        logged = json.loads(raw)
    except ValueError:
        return raw  # a text value cut short by a version that limited the column
    if isinstance(logged, float) and not math.isfinite(logged):
        return NON_FINITE_TEXT[str(logged)]
    return logged


class Registry(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="registries")
    name = models.CharField(max_length=64, validators=[validate_slug_name])
    description = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_registry_name")]
        ordering = ["team", "name"]
        verbose_name_plural = "registries"

    def __str__(self):
        return f"{self.team.name}/{self.name}"

    def get_absolute_url(self):
        return reverse("registry", args=[self.team.name, self.name])


class ArtifactCollection(models.Model):
    """A named sequence of versions, in a project (artifacts) or in a registry (links).

    Both kinds share versions, aliases and tags; a registry version points at the project
    version it links (`ArtifactVersion.source`) and has the registry collection's own index.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="collections")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="collections")
    registry = models.ForeignKey(Registry, null=True, blank=True, on_delete=models.CASCADE, related_name="collections")
    name = models.CharField(max_length=128, validators=[validate_slug_name])
    type = models.CharField(max_length=64, validators=[validate_slug_name])
    description = models.TextField(blank=True, max_length=2000)
    next_index = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_collection_in_project"),
            models.UniqueConstraint(fields=["registry", "name"], name="unique_collection_in_registry"),
            models.CheckConstraint(
                condition=Q(project__isnull=False, registry__isnull=True) | Q(project__isnull=True, registry__isnull=False),
                name="collection_in_project_xor_registry",
            ),
        ]
        ordering = ["name"]

    def __str__(self):
        return f"{self.owner}/{self.name}"

    @property
    def owner(self):
        return self.project if self.project_id else self.registry

    @property
    def is_registry(self):
        return self.registry_id is not None

    def get_absolute_url(self):
        if self.is_registry:
            return reverse("registry_collection", args=[self.team.name, self.registry.name, self.name])
        return reverse("artifact", args=[self.team.name, self.project.name, self.name])

    def allocate_index(self):
        """Take the next version index. Call inside a transaction: the row lock serialises
        concurrent creations (SQLite's IMMEDIATE transactions already hold the write lock)."""
        # one statement, not a locking read then a write: the UPDATE takes the same row lock
        table = connection.ops.quote_name(ArtifactCollection._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET next_index = next_index + 1 WHERE id = %s RETURNING next_index", [self.pk])
            self.next_index = cursor.fetchone()[0]
        return self.next_index - 1

    def resolve(self, ref):
        """The version named by `vN` or an alias; raises ArtifactVersion.DoesNotExist."""
        match = VERSION_RE.match(ref or "")
        if match:
            return self.versions.get(index=int(match.group(1)))
        return self.versions.get(aliases__alias=ref)


class ArtifactVersion(models.Model):
    collection = models.ForeignKey(ArtifactCollection, on_delete=models.CASCADE, related_name="versions")
    index = models.PositiveIntegerField()
    source = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="links")
    digest = models.CharField(max_length=128, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True, max_length=4000)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="artifact_versions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["collection", "index"], name="unique_version_index"),
            models.UniqueConstraint(fields=["collection", "source"], name="unique_link", condition=Q(source__isnull=False)),
        ]
        ordering = ["collection", "-index"]

    def __str__(self):
        return self.version_string

    @property
    def version(self):
        return f"v{self.index}"

    @property
    def version_string(self):
        """`team/project/name:vN` or `team/registry/collection:vN`."""
        c = self.collection
        return f"{c.team.name}/{c.owner.name}/{c.name}:{self.version}"

    @property
    def source_ref(self):
        """How a link names its source: `project/name:vN`."""
        s = self.source
        return f"{s.collection.project.name}/{s.collection.name}:{s.version}" if s else ""

    def get_absolute_url(self):
        return f"{self.collection.get_absolute_url()}{self.version}/"


class ArtifactAlias(models.Model):
    """One alias points at one version of a collection; adding it elsewhere moves it."""

    collection = models.ForeignKey(ArtifactCollection, on_delete=models.CASCADE, related_name="aliases")
    version = models.ForeignKey(ArtifactVersion, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=128, validators=[validate_alias])
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["collection", "alias"], name="unique_alias")]
        ordering = ["alias"]
        verbose_name_plural = "artifact aliases"

    def __str__(self):
        return f"{self.alias} → {self.version}"

    def clean(self):
        if self.version_id and self.collection_id and self.version.collection_id != self.collection_id:
            raise ValidationError({"version": "The version must belong to the alias's collection."})


class ArtifactTag(models.Model):
    version = models.ForeignKey(ArtifactVersion, on_delete=models.CASCADE, related_name="tags")
    tag = models.CharField(max_length=128, validators=[validate_tag])
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "tag"], name="unique_tag")]
        ordering = ["tag"]

    def __str__(self):
        return self.tag


# --- Writes. Each runs in one transaction, so the events its signals record commit with it.


def create_version(collection, *, created_by=None, source=None, aliases=(), tags=(), **fields):
    """Create the next version of `collection`, move `latest` to it, add aliases and tags.

    Inside a caller's transaction (every API call that creates a version) this opens no
    savepoint: a failure fails the caller's whole transaction, which its callers roll back
    anyway, and each savepoint cost two round trips while the collection's row was locked."""
    initial_aliases, initial_tags = list(aliases), list(tags)
    aliases, tags = list(dict.fromkeys([LATEST, *aliases])), list(dict.fromkeys(tags))
    for alias in aliases:
        validate_alias(alias)
    for tag in tags:
        validate_tag(tag)
    with transaction.atomic(savepoint=False):
        version = ArtifactVersion(collection=collection, index=collection.allocate_index(), source=source, created_by=created_by, **fields)
        # What the version was created with, for the event its creation records.
        version.initial_aliases, version.initial_tags = initial_aliases, initial_tags
        insert(version)  # its statement compiled once; the post_save that records its event sent here
        post_save.send(sender=ArtifactVersion, instance=version, created=True, update_fields=None, raw=False, using=version._state.db)
        for alias in aliases:
            _point_alias(version, alias, created_by)
        for tag in tags:
            # a new version holds no tag yet: nothing to look for first
            ArtifactTag(version=version, tag=tag, created_by=created_by).save(force_insert=True)
    return version


_ALIAS_UPDATED = frozenset(["version", "created_by", "updated_at"])


def _point_alias(version, alias, user):
    """`add_alias` for a version that holds no alias yet, in the caller's transaction: one
    statement when another version holds `alias` (`latest`, every time but the first), two when
    none does. Sends post_save as `add_alias`'s save would, so the same event is recorded."""
    table = connection.ops.quote_name(ArtifactAlias._meta.db_table)
    updated_at = timezone.now()
    now = ArtifactAlias._meta.get_field("updated_at").get_db_prep_save(updated_at, connection)
    user_id = user.pk if user else None
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"UPDATE {table} SET version_id = %s, created_by_id = %s, updated_at = %s WHERE collection_id = %s AND alias = %s RETURNING id",
                [version.pk, user_id, now, version.collection_id, alias],
            )
            row, created = cursor.fetchone(), False
            if row is None:
                # DO NOTHING, not an error: an alias another call added since would abort the
                # transaction on PostgreSQL; then it is moved by the UPDATE, once more
                cursor.execute(
                    f"INSERT INTO {table} (collection_id, version_id, alias, created_by_id, updated_at) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (collection_id, alias) DO NOTHING RETURNING id",
                    [version.collection_id, version.pk, alias, user_id, now],
                )
                row, created = cursor.fetchone(), True
            if row is not None:
                break
    held = ArtifactAlias(id=row[0], collection_id=version.collection_id, version=version, alias=alias, created_by=user, updated_at=updated_at)
    held._state.adding, held._state.db = False, connection.alias
    post_save.send(sender=ArtifactAlias, instance=held, created=created, update_fields=None if created else _ALIAS_UPDATED, raw=False, using=connection.alias)


@transaction.atomic
def add_alias(version, alias, user=None):
    """Point `alias` at `version`, moving it from another version that held it. Returns True
    when something changed."""
    validate_alias(alias)
    held = ArtifactAlias.objects.select_for_update().filter(collection_id=version.collection_id, alias=alias).first()
    if held is None:
        ArtifactAlias.objects.create(collection_id=version.collection_id, version=version, alias=alias, created_by=user)
        return True
    if held.version_id == version.id:
        return False
    held.version = version
    held.created_by = user
    held.save(update_fields=["version", "created_by", "updated_at"])
    return True


@transaction.atomic
def add_tag(version, tag, user=None):
    validate_tag(tag)
    if ArtifactTag.objects.filter(version=version, tag=tag).exists():
        return False
    ArtifactTag.objects.create(version=version, tag=tag, created_by=user)
    return True


@transaction.atomic
def link_version(registry_collection, source, *, linked_by=None, aliases=()):
    """Link a project version into a registry collection; linking it again only adds aliases.
    Returns (version, created)."""
    existing = registry_collection.versions.filter(source=source).first()
    if existing:
        for alias in aliases:
            add_alias(existing, alias, linked_by)
        return existing, False
    version = create_version(
        registry_collection,
        created_by=linked_by,
        source=source,
        aliases=aliases,
        digest=source.digest,
        metadata=source.metadata,
        description=source.description,
        run=source.run,
    )
    return version, True
