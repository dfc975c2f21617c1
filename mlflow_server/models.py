"""What MLflow keeps that Tripline's own objects do not: each row hangs off the native object it
describes (a project, a run, an artifact version, a registry collection), so runs, history,
versions, aliases, tags and links stay the native ones, shown on Tripline's pages and watched by
its automations.

A native object without its MLflow row reads with defaults: a project is an active experiment
named like the project, a run is active, a registry collection is a registered model named like
the collection.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from teams.models import Team
from tracking.models import ArtifactCollection, ArtifactVersion, Project, Registry, Run

TEXT_LIMIT = 8000


class Experiment(models.Model):
    project = models.OneToOneField(Project, primary_key=True, on_delete=models.CASCADE, related_name="mlflow")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    # MLflow's names are free text; the project's name is a slug derived from it.
    name = models.CharField(max_length=500)
    # The experiment "0" ("Default") that the client falls back to; one per team.
    is_default = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="unique_mlflow_experiment_name"),
            models.UniqueConstraint(fields=["team"], condition=Q(is_default=True), name="one_default_experiment"),
        ]

    def __str__(self):
        return self.name


class ExperimentTag(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="tags")
    key = models.CharField(max_length=250)
    value = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "key"], name="unique_experiment_tag")]
        ordering = ["key"]


class RunRecord(models.Model):
    """A run's end time and lifecycle as MLflow sets them (its start time is `Run.created_at`)."""

    run = models.OneToOneField(Run, primary_key=True, on_delete=models.CASCADE, related_name="mlflow")
    end_time = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)


class RunTag(models.Model):
    """A run tag exactly as MLflow sent it, `mlflow.*` system tags included. User tags are also
    shown in the run's native tags as `key:value`."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="mlflow_tags")
    key = models.CharField(max_length=250)
    value = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="unique_mlflow_run_tag")]
        indexes = [models.Index(fields=["key", "run"], name="mlflow_run_tag_by_key")]
        ordering = ["key"]


class LoggedModelStatus(models.TextChoices):
    PENDING = "LOGGED_MODEL_PENDING"
    READY = "LOGGED_MODEL_READY"
    UPLOAD_FAILED = "LOGGED_MODEL_UPLOAD_FAILED"


class LoggedModel(models.Model):
    """An MLflow 3 logged model: a version of a project artifact collection of type `model`,
    created when the model is finalized (or registered), so CREATE_ARTIFACT fires once its
    files are there."""

    model_id = models.CharField(max_length=64, unique=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="mlflow_models")
    name = models.CharField(max_length=500)
    model_type = models.CharField(max_length=500, blank=True)
    source_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="mlflow_models")
    status = models.CharField(max_length=32, choices=LoggedModelStatus.choices, default=LoggedModelStatus.PENDING)
    status_message = models.TextField(blank=True)
    version = models.OneToOneField(ArtifactVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="mlflow_model")
    creator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-created_at"], name="mlflow_model_by_project")]

    def __str__(self):
        return self.model_id


class LoggedModelParam(models.Model):
    model = models.ForeignKey(LoggedModel, on_delete=models.CASCADE, related_name="params")
    key = models.CharField(max_length=250)
    value = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "key"], name="unique_logged_model_param")]
        ordering = ["key"]


class LoggedModelTag(models.Model):
    model = models.ForeignKey(LoggedModel, on_delete=models.CASCADE, related_name="tags")
    key = models.CharField(max_length=250)
    value = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "key"], name="unique_logged_model_tag")]
        ordering = ["key"]


class LoggedModelMetric(models.Model):
    """A metric logged with a `model_id`: linked to the model, besides the run's history."""

    model = models.ForeignKey(LoggedModel, on_delete=models.CASCADE, related_name="metrics")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=250)
    value = models.FloatField(null=True)
    # "NaN", "Infinity" or "-Infinity" for what `value` cannot hold in every database.
    special = models.CharField(max_length=16, blank=True)
    step = models.BigIntegerField()
    timestamp = models.BigIntegerField()
    dataset_name = models.CharField(max_length=500, blank=True)
    dataset_digest = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model", "run", "key", "step", "timestamp", "dataset_name", "dataset_digest"], name="unique_logged_model_metric"
            )
        ]
        ordering = ["key", "step", "timestamp"]


class RunModelOutput(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="mlflow_outputs")
    model = models.ForeignKey(LoggedModel, on_delete=models.CASCADE, related_name="+")
    step = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "model"], name="unique_run_model_output")]


class RegisteredModel(models.Model):
    collection = models.OneToOneField(ArtifactCollection, primary_key=True, on_delete=models.CASCADE, related_name="mlflow_model")
    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+")
    # MLflow's name, free text; the collection's name is a slug derived from it.
    name = models.CharField(max_length=256)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["registry", "name"], name="unique_registered_model_name")]


class RegisteredModelTag(models.Model):
    collection = models.ForeignKey(ArtifactCollection, on_delete=models.CASCADE, related_name="mlflow_tags")
    key = models.CharField(max_length=250)
    value = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["collection", "key"], name="unique_registered_model_tag")]
        ordering = ["key"]


class ModelVersion(models.Model):
    """What MLflow says of a registry version beyond the native link: where it came from."""

    version = models.OneToOneField(ArtifactVersion, primary_key=True, on_delete=models.CASCADE, related_name="mlflow_version")
    source = models.TextField()
    run_id = models.CharField(max_length=64, blank=True)
    run_link = models.TextField(blank=True)
    model_id = models.CharField(max_length=64, blank=True)
    stage = models.CharField(max_length=32, default="None")
    updated_at = models.DateTimeField(auto_now=True)
