"""MLflow 3 logged models: each is a version of a project artifact collection of type `model`
(named after the model), made when the model is finalized with its files uploaded, so a
CREATE_ARTIFACT automation fires once per logged model."""

import uuid

from django.db.models import Exists, F, OuterRef, Prefetch, Subquery
from django.utils import timezone

from tracking.models import ArtifactCollection, create_version

from . import artifacts
from .errors import invalid, missing
from .experiments import experiment_id, get_experiment, limit, ms, required, unique_slug, validate_key
from .models import LoggedModel, LoggedModelMetric, LoggedModelParam, LoggedModelStatus, LoggedModelTag
from .protocol import BOOL, INT32, KV, LOGGED_MODEL_STATUS, STRING, number_out
from .routing import endpoint
from .runs import get_run
from .search import number_condition, page, parse_filter, read_page_token, string_condition, time_condition

MODEL_TYPE = "model"


def models_of(team):
    return LoggedModel.objects.filter(project__team=team).select_related("project__mlflow", "source_run", "version").prefetch_related(
        "tags", "params", Prefetch("metrics", queryset=LoggedModelMetric.objects.select_related("run"))
    )


def get_model(call, model_id, alive=True):
    model = models_of(call.team).filter(model_id=model_id[:64]).first() if model_id else None
    if model is None or (alive and model.deleted_at):
        raise missing(f"Logged model with ID '{(model_id or '')[:100]}' not found.")
    return model


def artifact_root(model):
    return f"{experiment_id(model.project)}/models/{model.model_id}/artifacts"


def model_data(model):
    info = {
        "model_id": model.model_id,
        "experiment_id": experiment_id(model.project),
        "name": model.name,
        "creation_timestamp_ms": ms(model.created_at),
        "last_updated_timestamp_ms": ms(model.updated_at),
        "artifact_uri": f"mlflow-artifacts:/{artifact_root(model)}",
        "status": model.status,
        "model_type": model.model_type,
        "source_run_id": model.source_run.run_id if model.source_run_id else "",
        "status_message": model.status_message,
        "tags": [{"key": t.key, "value": t.value} for t in model.tags.all()],
        "registrations": [],
    }
    metrics = [
        {"key": m.key, "value": m.special or number_out(m.value), "timestamp": m.timestamp, "step": m.step,
         "dataset_name": m.dataset_name, "dataset_digest": m.dataset_digest, "model_id": model.model_id,
         "run_id": m.run.run_id if m.run_id else ""}
        for m in model.metrics.all()
    ]
    return {"info": info, "data": {"params": [{"key": p.key, "value": p.value} for p in model.params.all()], "metrics": metrics}}


def ensure_version(model, user):
    """The model's native artifact version, made on first need (finalizing, or registering a
    model that was never finalized)."""
    if model.version_id:
        return model.version
    slug = unique_slug(model.project.collections.exclude(type=MODEL_TYPE), model.name, max_length=128, fallback="model")
    collection, _ = ArtifactCollection.objects.get_or_create(
        project=model.project, name=slug, defaults={"team_id": model.project.team_id, "type": MODEL_TYPE}
    )
    version = create_version(
        collection,
        created_by=user,
        run=model.source_run,
        metadata={"mlflow_model_id": model.model_id, "model_type": model.model_type, "artifact_uri": f"mlflow-artifacts:/{artifact_root(model)}"},
    )
    model.version = version
    model.save(update_fields=["version"])
    return version


def clean_pairs(pairs, what, most=8000):
    out = {}
    for i, pair in enumerate(pairs):
        key = validate_key(pair.get("key"), f"{what}[{i}].key")
        out[key] = limit(pair.get("value", ""), most, f"{what}[{i}].value")
    return out


def save_pairs(model, kind, pairs):
    for key, value in pairs.items():
        kind.objects.update_or_create(model=model, key=key, defaults={"value": value})


@endpoint("POST", "api/2.0/mlflow/logged-models", {
    "experiment_id": STRING, "name": STRING, "model_type": STRING, "source_run_id": STRING, "params": [KV], "tags": [KV]})
def create(call):
    project = get_experiment(call, required(call.data, "experiment_id"), active=True)
    name = limit(call.data.get("name") or "model", 500, "name")
    if any(c in name for c in "/:.%\"'"):
        raise invalid(f"Invalid model name '{name[:200]}': names cannot contain '/', ':', '.', '%', '\"' or \"'\".")
    run = get_run(call, call.data["source_run_id"]) if call.data.get("source_run_id") else None
    params, tags = clean_pairs(call.data.get("params", []), "params", 6000), clean_pairs(call.data.get("tags", []), "tags")
    now = timezone.now()
    model = LoggedModel.objects.create(
        model_id=f"m-{uuid.uuid4().hex}", project=project, name=name, model_type=limit(call.data.get("model_type", ""), 500, "model_type"),
        source_run=run, creator=call.user, created_at=now, updated_at=now,
    )
    save_pairs(model, LoggedModelParam, params)
    save_pairs(model, LoggedModelTag, tags)
    return {"model": model_data(model)}


@endpoint("GET", "api/2.0/mlflow/logged-models/{model_id}")
def get(call, model_id):
    return {"model": model_data(get_model(call, model_id))}


@endpoint("PATCH", "api/2.0/mlflow/logged-models/{model_id}", {"model_id": STRING, "status": LOGGED_MODEL_STATUS})
def finalize(call, model_id):
    model = get_model(call, model_id)
    status = call.data.get("status")
    if status not in (LoggedModelStatus.READY, LoggedModelStatus.UPLOAD_FAILED):
        raise invalid("Invalid value for status: LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED.")
    model.status = status
    model.updated_at = timezone.now()
    model.save(update_fields=["status", "updated_at"])
    if status == LoggedModelStatus.READY:
        ensure_version(model, call.user)
    return {"model": model_data(model)}


@endpoint("DELETE", "api/2.0/mlflow/logged-models/{model_id}")
def delete(call, model_id):
    model = get_model(call, model_id)
    model.deleted_at = model.updated_at = timezone.now()
    model.save(update_fields=["deleted_at", "updated_at"])
    return {}


@endpoint("PATCH", "api/2.0/mlflow/logged-models/{model_id}/tags", {"tags": [KV]})
def set_tags(call, model_id):
    model = get_model(call, model_id)
    save_pairs(model, LoggedModelTag, clean_pairs(call.data.get("tags", []), "tags"))
    LoggedModel.objects.filter(pk=model.pk).update(updated_at=timezone.now())
    return {"model": model_data(get_model(call, model_id))}


@endpoint("DELETE", "api/2.0/mlflow/logged-models/{model_id}/tags/{tag_key:path}")
def delete_tag(call, model_id, tag_key):
    model = get_model(call, model_id)
    deleted, _ = LoggedModelTag.objects.filter(model=model, key=tag_key).delete()
    if not deleted:
        raise missing(f"No tag with key '{tag_key[:250]}' on logged model {model_id}.")
    return {}


@endpoint("POST", "api/2.0/mlflow/logged-models/{model_id}/params", {"params": [KV]})
def log_params(call, model_id):
    model = get_model(call, model_id)
    save_pairs(model, LoggedModelParam, clean_pairs(call.data.get("params", []), "params", 6000))
    return {}


@endpoint("GET", "api/2.0/mlflow/logged-models/{model_id}/artifacts/directories", {"artifact_directory_path": STRING, "page_token": STRING})
def list_artifacts(call, model_id):
    model = get_model(call, model_id)
    path = artifacts.safe_path(call.data.get("artifact_directory_path"), "artifact_directory_path", allow_empty=True)
    return {"root_uri": f"mlflow-artifacts:/{artifact_root(model)}", "files": artifacts.file_infos(call.team, artifact_root(model), path)}


MODEL_ATTRIBUTES = {"name": "name", "model_id": "model_id", "status": "status", "model_type": "model_type", "source_run_id": "source_run__run_id"}
MODEL_TIMES = {"creation_time": "created_at", "creation_timestamp": "created_at", "last_updated_time": "updated_at", "last_updated_timestamp": "updated_at"}


@endpoint("POST", "api/2.0/mlflow/logged-models/search", {
    "experiment_ids": [STRING], "filter": STRING, "datasets": [{"dataset_name": STRING, "dataset_digest": STRING}], "max_results": INT32,
    "order_by": [{"field_name": STRING, "ascending": BOOL, "dataset_name": STRING, "dataset_digest": STRING}], "page_token": STRING}, write=False)
def search(call):
    max_results = call.data.get("max_results", 50)
    if not 0 < max_results <= 1000:
        raise invalid(f"Invalid value {max_results} for parameter 'max_results': it must be between 1 and 1000.")
    comparisons = parse_filter(call.data.get("filter"))
    read_page_token(call.data.get("page_token"))
    projects = [get_experiment(call, raw).pk for raw in required(call.data, "experiment_ids")]
    queryset = models_of(call.team).filter(project_id__in=projects, deleted_at__isnull=True)
    datasets = [d for d in call.data.get("datasets", []) if d.get("dataset_name")]
    for c in comparisons:
        what = f"{c.entity}s.{c.key}" if c.entity != "attribute" else c.key
        if c.entity == "attribute" and c.key in MODEL_ATTRIBUTES:
            queryset = queryset.filter(string_condition(MODEL_ATTRIBUTES[c.key], c.op, c.value, what))
        elif c.entity == "attribute" and c.key in MODEL_TIMES:
            queryset = queryset.filter(time_condition(MODEL_TIMES[c.key], c.op, c.value, what))
        elif c.entity in ("tag", "param"):
            kind = LoggedModelTag if c.entity == "tag" else LoggedModelParam
            queryset = queryset.filter(Exists(kind.objects.filter(model=OuterRef("pk"), key=c.key).filter(string_condition("value", c.op, c.value, what))))
        elif c.entity == "metric":
            metrics = LoggedModelMetric.objects.filter(model=OuterRef("pk"), key=c.key).filter(number_condition("value", c.op, c.value, what))
            if datasets:
                metrics = metrics.filter(dataset_name__in=[d["dataset_name"] for d in datasets])
            queryset = queryset.filter(Exists(metrics))
        else:
            raise invalid(f"Invalid filter key '{what}' for logged models.")
    order = []
    for n, entry in enumerate(call.data.get("order_by", [])[:10]):
        field, ascending = entry.get("field_name", ""), entry.get("ascending", True)
        if field.startswith("metrics."):
            metric = LoggedModelMetric.objects.filter(model=OuterRef("pk"), key=field[8:])
            if entry.get("dataset_name"):
                metric = metric.filter(dataset_name=entry["dataset_name"])
            queryset = queryset.annotate(**{f"order_{n}": Subquery(metric.order_by("-step", "-timestamp").values("value")[:1])})
            expression = F(f"order_{n}")
        elif field in MODEL_ATTRIBUTES or field in MODEL_TIMES:
            expression = F(MODEL_ATTRIBUTES.get(field) or MODEL_TIMES[field])
        else:
            raise invalid(f"Invalid order_by field '{field[:100]}' for logged models.")
        order.append(expression.asc(nulls_last=True) if ascending else expression.desc(nulls_last=True))
    items, token = page(queryset.order_by(*order, "-created_at", "model_id"), call.data.get("page_token"), max_results)
    response = {"models": [model_data(m) for m in items]}
    if token:
        response["next_page_token"] = token
    return response
