"""Experiments are projects: the id is the project's id (the team's default experiment is "0"),
the name is kept exactly in `Experiment` and the project gets a slug derived from it. A project
made through the native API is an active experiment of the same name."""

import posixpath
import re
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import BooleanField, DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from teams.models import Team
from tracking.models import Project

from .errors import MlflowError, exists, invalid, missing
from .models import Experiment, ExperimentTag, RunRecord
from .protocol import INT64, KV, STRING, VIEW_TYPE
from .routing import endpoint
from .search import EPOCH, page, parse_filter, parse_order_by, read_page_token, string_condition, time_condition

DEFAULT_NAME = "Default"
KEY_RE = re.compile(r"^[/\w.\- :]*$")
MAX_RESULTS = 50000


def ms(moment):
    """Milliseconds since the epoch, exactly (a float timestamp loses the last one past 2500)."""
    return (moment - EPOCH) // timedelta(milliseconds=1) if moment else None


def validate_key(key, what="key"):
    """MLflow's rule for param, metric and tag names (mlflow.utils.validation)."""
    if key is None or key == "":
        raise invalid(f"Missing value for parameter '{what}'.")
    if len(key) > 250:
        raise invalid(f"'{what}' exceeds the maximum length of 250 characters.")
    norm = posixpath.normpath(key)
    if not KEY_RE.match(key) or norm != key or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise invalid(
            f"Invalid value '{key[:250]}' for parameter '{what}': names may only contain alphanumerics, underscores (_), "
            "dashes (-), periods (.), spaces ( ), colons (:) and slashes (/), and must not resolve to another path."
        )
    return key


def limit(value, length, what):
    if value is not None and len(value) > length:
        raise invalid(f"'{what}' exceeds the maximum length of {length} characters.")
    return value


def required(data, field):
    value = data.get(field)
    if value is None or value == "" or value == []:
        raise invalid(f"Missing value for required parameter '{field}'.")
    return value


def unique_slug(queryset, name, max_length=64, fallback="experiment"):
    """A name for a native object (letters, digits, '-', '_', '.'; starting with a letter or
    digit) derived from MLflow's free-text `name`, unused in `queryset`."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-_.")
    slug = re.sub(r"^[^A-Za-z0-9]+", "", slug)[: max_length - 8] or fallback
    candidate, n = slug, 1
    while queryset.filter(name=candidate).exists():
        n += 1
        candidate = f"{slug}-{n}"
    return candidate


def experiments(team):
    """The team's projects, annotated with what MLflow sees of them."""
    return (
        Project.objects.filter(team=team)
        .select_related("mlflow")
        .annotate(
            exp_name=Coalesce("mlflow__name", "name"),
            exp_deleted=ExpressionWrapper(Q(mlflow__deleted_at__isnull=False), output_field=BooleanField()),
            exp_updated=Coalesce("mlflow__updated_at", "created_at", output_field=DateTimeField()),
        )
    )


def default_experiment(team):
    """The team's experiment "0", made on first use; a project already called Default is it."""
    found = Experiment.objects.filter(team=team, is_default=True).select_related("project").first()
    if found:
        return found.project
    try:
        with transaction.atomic():
            Team.objects.select_for_update().filter(pk=team.pk).first()
            project = experiments(team).filter(exp_name=DEFAULT_NAME).first()
            if project is None:
                project = Project.objects.create(team=team, name=unique_slug(team.projects, "default"), description="MLflow's default experiment")
            Experiment.objects.update_or_create(project=project, defaults={"team": team, "name": DEFAULT_NAME, "is_default": True})
    except IntegrityError:  # made by a concurrent request
        pass
    return Experiment.objects.select_related("project").get(team=team, is_default=True).project


def has_record(project):
    try:
        project.mlflow
    except Experiment.DoesNotExist:
        return False
    return True


def experiment_id(project):
    return "0" if has_record(project) and project.mlflow.is_default else str(project.pk)


def get_experiment(call, raw_id, active=False):
    """The project of experiment `raw_id` in the caller's team; with `active`, refuse a deleted
    one (MLflow's INVALID_STATE)."""
    if raw_id is None or raw_id == "":
        raise invalid("Missing value for required parameter 'experiment_id'.")
    if raw_id == "0":
        project = experiments(call.team).get(pk=default_experiment(call.team).pk)
    else:
        if not re.fullmatch(r"[0-9]{1,18}", raw_id):
            raise invalid(f"Invalid experiment ID '{raw_id[:100]}': experiment IDs are integers.")
        project = experiments(call.team).filter(pk=int(raw_id)).first()
    if project is None:
        raise missing(f"Could not find experiment with ID {raw_id}.")
    if active and project.exp_deleted:
        raise MlflowError("INVALID_STATE", f"The experiment {raw_id} must be in the 'active' state; it is deleted.")
    return project


def experiment_record(project):
    """The project's `Experiment` row, made (named like the project) when MLflow first writes it."""
    record, _ = Experiment.objects.get_or_create(project=project, defaults={"team_id": project.team_id, "name": project.name})
    return record


def experiment_data(project):
    """An annotated project (see `experiments`) as MLflow's Experiment message."""
    exp_id = experiment_id(project)
    return {
        "experiment_id": exp_id,
        "name": project.exp_name,
        "artifact_location": f"mlflow-artifacts:/{exp_id}",
        "lifecycle_stage": "deleted" if project.exp_deleted else "active",
        "last_update_time": ms(project.exp_updated),
        "creation_time": ms(project.created_at),
        "tags": [{"key": t.key, "value": t.value} for t in project.mlflow.tags.all()] if has_record(project) else [],
    }


def check_name(name, what="name"):
    limit(name, 500, what)
    if not name.strip():
        raise invalid(f"Invalid experiment name: '{name}'.")
    return name


def refuse_taken(team, name, project=None):
    taken = experiments(team).filter(exp_name=name)
    if project is not None:
        taken = taken.exclude(pk=project.pk)
    if taken.exists():
        raise exists(f"Experiment '{name}' already exists.")


@endpoint("GET", "api/2.0/mlflow/experiments/get-by-name", {"experiment_name": STRING})
def get_by_name(call):
    name = required(call.data, "experiment_name")
    if name == DEFAULT_NAME:
        default_experiment(call.team)
    project = experiments(call.team).filter(exp_name=name).first()
    if project is None:
        raise missing(f"Could not find experiment with name '{name[:500]}'.")
    return {"experiment": experiment_data(project)}


@endpoint("POST", "api/2.0/mlflow/experiments/create", {"name": STRING, "artifact_location": STRING, "tags": [KV]})
def create(call):
    name = check_name(required(call.data, "name"))
    if call.data.get("artifact_location"):
        raise invalid("Tripline stores artifacts itself (mlflow-artifacts:/…); leave artifact_location empty.")
    tags = clean_tags(call.data.get("tags", []))
    Team.objects.select_for_update().filter(pk=call.team.pk).first()  # one creation at a time per team
    refuse_taken(call.team, name)
    project = Project.objects.create(team=call.team, name=unique_slug(call.team.projects, name))
    record = Experiment.objects.create(project=project, team=call.team, name=name)
    ExperimentTag.objects.bulk_create([ExperimentTag(experiment=record, key=k, value=v) for k, v in tags.items()])
    return {"experiment_id": str(project.pk)}


def clean_tags(tags):
    out = {}
    for tag in tags:
        key = validate_key(tag.get("key"), "key")
        out[key] = limit(tag.get("value", ""), 20000, "value")
    return out


EXPERIMENT_ATTRIBUTES = {"name": "exp_name", "creation_time": "created_at", "last_update_time": "exp_updated"}


SEARCH = {"max_results": INT64, "page_token": STRING, "filter": STRING, "order_by": [STRING], "view_type": VIEW_TYPE}


@endpoint("GET", "api/2.0/mlflow/experiments/search", SEARCH)
@endpoint("POST", "api/2.0/mlflow/experiments/search", SEARCH, write=False)
def search(call):
    max_results = call.data.get("max_results", 1000)
    if not 0 < max_results <= MAX_RESULTS:
        raise invalid(f"Invalid value {max_results} for parameter 'max_results': it must be between 1 and {MAX_RESULTS}.")
    comparisons, order_by = parse_filter(call.data.get("filter")), parse_order_by(call.data.get("order_by", []))
    read_page_token(call.data.get("page_token"))
    default_experiment(call.team)  # listed like any other, once the request is known to be good
    queryset = experiments(call.team).prefetch_related("mlflow__tags")
    view = call.data.get("view_type", "ACTIVE_ONLY")
    if view != "ALL":
        queryset = queryset.filter(exp_deleted=view == "DELETED_ONLY")
    for c in comparisons:
        if c.entity == "tag":
            queryset = queryset.filter(
                ~Q(mlflow__tags__key=c.key) if c.op == "IS NULL" else Q(pk__in=ExperimentTag.objects.filter(
                    Q(key=c.key) & (Q() if c.op == "IS NOT NULL" else string_condition("value", c.op, c.value, f"tags.{c.key}"))
                ).values("experiment_id"))
            )
        elif c.entity == "attribute" and c.key in ("creation_time", "last_update_time"):
            queryset = queryset.filter(time_condition(EXPERIMENT_ATTRIBUTES[c.key], c.op, c.value, c.key))
        elif c.entity == "attribute" and c.key == "name":
            queryset = queryset.filter(string_condition("exp_name", c.op, c.value, "name"))
        elif c.entity == "attribute" and c.key == "experiment_id":
            default_pk = default_experiment(call.team).pk
            pks = [default_pk if v == "0" else int(v) for v in (c.value if isinstance(c.value, tuple) else (c.value,)) if is_id(v)]
            if c.op not in ("=", "!=", "IN", "NOT IN"):
                raise invalid("Invalid comparator for experiment_id: use =, !=, IN or NOT IN.")
            queryset = queryset.filter(pk__in=pks) if c.op in ("=", "IN") else queryset.exclude(pk__in=pks)
        else:
            raise invalid(f"Invalid filter on '{c.entity}.{c.key}' for experiments: use name, creation_time, last_update_time, experiment_id or tags.")
    order = []
    for entity, key, ascending in order_by:
        field = {"name": "exp_name", "experiment_id": "pk", **EXPERIMENT_ATTRIBUTES}.get(key) if entity == "attribute" else None
        if field is None:
            raise invalid(f"Invalid order_by key '{key}' for experiments: use name, experiment_id, creation_time or last_update_time.")
        order.append(field if ascending else f"-{field}")
    items, token = page(queryset.order_by(*order, "-created_at", "pk"), call.data.get("page_token"), max_results)
    response = {"experiments": [experiment_data(p) for p in items]}
    if token:
        response["next_page_token"] = token
    return response


def is_id(value):
    text = str(int(value)) if isinstance(value, float) and value.is_integer() and value >= 0 else value
    return isinstance(text, str) and re.fullmatch(r"[0-9]{1,18}", text) is not None


@endpoint("GET", "api/2.0/mlflow/experiments/get", {"experiment_id": STRING})
def get(call):
    return {"experiment": experiment_data(get_experiment(call, required(call.data, "experiment_id")))}


@endpoint("POST", "api/2.0/mlflow/experiments/delete", {"experiment_id": STRING})
def delete(call):
    project = get_experiment(call, required(call.data, "experiment_id"))
    record = experiment_record(project)
    if record.is_default:
        raise invalid("Cannot delete the default experiment '0'.")
    if record.deleted_at is None:
        now = timezone.now()
        record.deleted_at = now
        record.save()
        # Its runs go with it, stamped with the same moment so that a restore brings back
        # exactly these (not runs deleted on their own before).
        runs = project.runs.exclude(mlflow__deleted_at__isnull=False)
        RunRecord.objects.bulk_create([RunRecord(run_id=pk) for pk in runs.filter(mlflow__isnull=True).values_list("pk", flat=True)])
        RunRecord.objects.filter(run__project=project, deleted_at__isnull=True).update(deleted_at=now)
    return {}


@endpoint("POST", "api/2.0/mlflow/experiments/restore", {"experiment_id": STRING})
def restore(call):
    project = get_experiment(call, required(call.data, "experiment_id"))
    record = experiment_record(project)
    if record.deleted_at is not None:
        RunRecord.objects.filter(run__project=project, deleted_at=record.deleted_at).update(deleted_at=None)
        record.deleted_at = None
        record.save()
    return {}


@endpoint("POST", "api/2.0/mlflow/experiments/update", {"experiment_id": STRING, "new_name": STRING})
def update(call):
    project = get_experiment(call, required(call.data, "experiment_id"), active=True)
    name = check_name(required(call.data, "new_name"), "new_name")
    Team.objects.select_for_update().filter(pk=call.team.pk).first()
    refuse_taken(call.team, name, project)
    record = experiment_record(project)
    record.name = name
    record.save()
    if not record.is_default:
        project.name = unique_slug(call.team.projects.exclude(pk=project.pk), name)
        project.save(update_fields=["name"])
    return {}


@endpoint("POST", "api/2.0/mlflow/experiments/set-experiment-tag", {"experiment_id": STRING, "key": STRING, "value": STRING})
def set_tag(call):
    project = get_experiment(call, required(call.data, "experiment_id"), active=True)
    key = validate_key(call.data.get("key"))
    value = limit(call.data.get("value", ""), 20000, "value")
    record = experiment_record(project)
    ExperimentTag.objects.update_or_create(experiment=record, key=key, defaults={"value": value})
    record.save()  # touches last_update_time
    return {}


@endpoint("POST", "api/2.0/mlflow/experiments/delete-experiment-tag", {"experiment_id": STRING, "key": STRING})
def delete_tag(call):
    project = get_experiment(call, required(call.data, "experiment_id"), active=True)
    key = required(call.data, "key")
    deleted, _ = ExperimentTag.objects.filter(experiment__project=project, key=key).delete()
    if not deleted:
        raise missing(f"No tag with name '{key[:250]}' in experiment {experiment_id(project)}.")
    return {}
