"""Runs are runs: the MLflow run id is the Tripline run id, params are its config, metrics its
history (one MLflow call, one batch), and state changes go through `Run.save`, so RUN_STATE and
the metric automations fire as they do for the native API."""

import json
import math
import uuid
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db.models import Case, CharField, Exists, F, OuterRef, Prefetch, Q, Subquery, TextField, Value, When
from django.db.models.functions import Cast
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from tracking.history import log_history
from tracking.models import MetricPoint, Run, RunMetric, RunState

from .errors import MlflowError, invalid, missing
from .experiments import experiment_id, get_experiment, limit, ms, required, validate_key
from .models import LoggedModel, LoggedModelMetric, RunModelOutput, RunRecord, RunTag
from .protocol import DOUBLE, INT32, INT64, KV, METRIC, RUN_STATUS, STRING, VIEW_TYPE, number_out
from .routing import endpoint
from .search import EPOCH, number_condition, page, parse_filter, parse_order_by, read_page_token, string_condition, time_condition

STATE_OF = {"RUNNING": RunState.RUNNING, "SCHEDULED": RunState.RUNNING, "FINISHED": RunState.FINISHED, "FAILED": RunState.FAILED, "KILLED": RunState.KILLED}
STATUS_OF = {RunState.RUNNING: "RUNNING", RunState.FINISHED: "FINISHED", RunState.FAILED: "FAILED", RunState.CRASHED: "FAILED", RunState.KILLED: "KILLED"}
RUN_NAME_TAG = "mlflow.runName"
MAX_PARAM = 6000
MAX_TAG = 8000
MAX_RESULTS = 50000


def param(key):
    """A run's param as text (a plain text cast: JSON lookups would compare it as JSON)."""
    return Cast(KeyTextTransform(key, "config"), output_field=TextField())


def runs(team):
    return Run.objects.filter(project__team=team).select_related("project__mlflow", "project__team", "user", "mlflow")


def get_run(call, run_id, active=False):
    """The run `run_id` of the caller's team; with `active`, refuse a deleted one."""
    if not run_id:
        raise invalid("Missing value for required parameter 'run_id'.")
    found = list(runs(call.team).filter(run_id=run_id[:64])[:2]) if len(run_id) <= 64 else []
    if not found:
        raise missing(f"Run '{run_id[:100]}' not found.")
    if len(found) > 1:
        raise invalid(f"Run id '{run_id}' names runs in several experiments of this team; MLflow needs it unique.")
    run = found[0]
    if active and is_deleted(run):
        raise MlflowError("INVALID_STATE", f"The run {run_id} must be in the 'active' state; it is deleted.")
    return run


def record_of(run):
    try:
        return run.mlflow
    except RunRecord.DoesNotExist:
        return None


def is_deleted(run):
    record = record_of(run)
    return bool(record and record.deleted_at)


def run_of(call, data, active=False):
    return get_run(call, data.get("run_id") or data.get("run_uuid"), active=active)


def artifact_uri(run):
    return f"mlflow-artifacts:/{experiment_id(run.project)}/{run.run_id}/artifacts"


def run_info(run):
    record = record_of(run)
    info = {
        "run_id": run.run_id,
        "run_uuid": run.run_id,
        "run_name": run.name,
        "experiment_id": experiment_id(run.project),
        "user_id": run.user.username if run.user_id else "",
        "status": STATUS_OF.get(run.state, "RUNNING"),
        "start_time": ms(run.created_at),
        "artifact_uri": artifact_uri(run),
        "lifecycle_stage": "deleted" if record and record.deleted_at else "active",
    }
    if record and record.end_time:
        info["end_time"] = ms(record.end_time)
    return info


def param_text(value):
    return value if isinstance(value, str) else json.dumps(value)


def logged_number(value, raw):
    """A stored value as a double: non-numbers logged through the native API read as NaN."""
    if raw is None:
        return value
    logged = json.loads(raw)
    return float(logged) if isinstance(logged, (int, float)) and not isinstance(logged, bool) else math.nan


def with_latest_timestamps(queryset):
    """RunMetric rows with the timestamp of the point they hold (one correlated lookup each)."""
    point = MetricPoint.objects.filter(run=OuterRef("run"), key=OuterRef("key"), step=OuterRef("last_step")).order_by("-id")
    return queryset.annotate(last_timestamp=Subquery(point.values("timestamp")[:1]))


def prefetch_run_data(queryset):
    return queryset.prefetch_related(
        Prefetch("metrics", queryset=with_latest_timestamps(RunMetric.objects.order_by("key"))),
        "mlflow_tags",
        Prefetch("mlflow_outputs", queryset=RunModelOutput.objects.select_related("model")),
    )


def run_data(run):
    """A run (from `prefetch_run_data`) as MLflow's Run message."""
    metrics = [
        {"key": m.key, "value": number_out(logged_number(m.last_value, m.last_raw)), "timestamp": ms(m.last_timestamp) or 0, "step": m.last_step}
        for m in run.metrics.all()
    ]
    return {
        "info": run_info(run),
        "data": {
            "metrics": metrics,
            "params": [{"key": k, "value": param_text(v)} for k, v in sorted(run.config.items())] if isinstance(run.config, dict) else [],
            "tags": [{"key": t.key, "value": t.value} for t in run.mlflow_tags.all()],
        },
        "inputs": {},
        "outputs": {"model_outputs": [{"model_id": o.model.model_id, "step": o.step} for o in run.mlflow_outputs.all()]},
    }


def full_run(run):
    return run_data(prefetch_run_data(Run.objects.filter(pk=run.pk).select_related("project__mlflow", "user", "mlflow")).get())


def datetime_of_ms(value, what):
    try:
        moment = EPOCH + timedelta(milliseconds=value)  # exactly: value / 1000 in floats is off by one past the year 2500
    except OverflowError:
        moment = None
    if moment is None or not 1 <= moment.year <= 9999 or value < 0:
        raise invalid(f"Invalid value {value} for parameter '{what}': a time in milliseconds since the epoch.")
    return moment


# --- Writing params, tags and metrics: every logging endpoint goes through `log`.


def clean_params(params):
    out = {}
    for i, p in enumerate(params):
        key = validate_key(p.get("key"), f"params[{i}].key")
        value = limit(p.get("value", ""), MAX_PARAM, f"params[{i}].value")
        if key in out and out[key] != value:
            raise invalid(f"Duplicate parameter keys have been submitted: '{key}' with different values.")
        out[key] = value
    return out


def clean_tags(tags):
    out = {}
    for i, t in enumerate(tags):
        key = validate_key(t.get("key"), f"tags[{i}].key")
        out[key] = limit(t.get("value", ""), MAX_TAG, f"tags[{i}].value")
    return out


def clean_metrics(metrics):
    out, keys = [], set()  # a batch repeats a few keys many times: check each once
    for i, m in enumerate(metrics):
        key = m.get("key")
        if key not in keys:
            keys.add(validate_key(key, f"metrics[{i}].key"))
        if "value" not in m:
            raise invalid(f"Missing value for required parameter 'metrics[{i}].value'.")
        if "timestamp" not in m:
            raise invalid(f"Missing value for required parameter 'metrics[{i}].timestamp'.")
        moment = datetime_of_ms(m["timestamp"], f"metrics[{i}].timestamp")
        out.append({**m, "key": key, "step": m.get("step", 0), "moment": moment})
    return out


def native_tag(key, value):
    return f"{key}:{value}" if value else key


def log(call, run, metrics=(), params=None, tags=None):
    """Params, tags and metrics of one MLflow call, checked whole before anything is written."""
    changes = {}
    if params or tags:  # read-modify-write of the run's config and tags: lock the run first
        locked = Run.objects.select_for_update().only("config", "tags").get(pk=run.pk)
        run.config, run.tags = locked.config, locked.tags
    if params:
        config = dict(run.config) if isinstance(run.config, dict) else {}
        for key, value in params.items():
            if key in config and param_text(config[key]) != value:
                raise invalid(
                    f"Changing param values is not allowed. Param with key='{key}' was already logged with value="
                    f"'{param_text(config[key])[:200]}' for run ID='{run.run_id}'. Attempted logging new value '{value[:200]}'."
                )
            config[key] = value
        changes["config"] = config
    models = linked_models(call, metrics)
    if tags:
        native = [t for t in (run.tags if isinstance(run.tags, list) else []) if isinstance(t, str)]
        for key, value in tags.items():
            RunTag.objects.update_or_create(run=run, key=key, defaults={"value": value})
            if key == RUN_NAME_TAG and value and len(value) <= 128:
                changes["name"] = value
            if not key.startswith("mlflow."):
                native = [t for t in native if t != key and not t.startswith(key + ":")]
                text = native_tag(key, value)
                if len(text) <= 128 and len(native) < 64:
                    native.append(text)
        changes["tags"] = native
    if changes:
        Run.objects.filter(pk=run.pk).update(**changes, updated_at=timezone.now())
    if metrics:
        rows = []
        by_moment = {}  # (step, timestamp) -> the rows at that moment, each a distinct set of keys
        for m in metrics:
            group = by_moment.setdefault((m["step"], m["moment"]), [])
            row = next((r for r in group if m["key"] not in r["metrics"]), None)
            if row is None:
                row = {"step": m["step"], "timestamp": m["moment"], "metrics": {}}
                group.append(row)
                rows.append(row)
            row["metrics"][m["key"]] = m["value"]
        log_history(run, rows, user=call.user, skip_stored=True)
        link_metrics(run, metrics, models)


def linked_models(call, metrics):
    ids = {m["model_id"] for m in metrics if m.get("model_id")}
    if not ids:
        return {}
    found = {m.model_id: m for m in LoggedModel.objects.filter(project__team=call.team, model_id__in=ids)}
    unknown = ids - set(found)
    if unknown:
        raise missing(f"Logged model '{sorted(unknown)[0][:100]}' not found.")
    return found


def link_metrics(run, metrics, models):
    """Metrics logged with a model_id are the model's metrics too."""
    links = [
        LoggedModelMetric(
            model=models[m["model_id"]], run=run, key=m["key"],
            value=m["value"] if math.isfinite(m["value"]) else None, special="" if math.isfinite(m["value"]) else number_out(m["value"]),
            step=m["step"], timestamp=m["timestamp"],
            dataset_name=limit(m.get("dataset_name", ""), 500, "dataset_name"), dataset_digest=limit(m.get("dataset_digest", ""), 64, "dataset_digest"),
        )
        for m in metrics if m.get("model_id")
    ]
    LoggedModelMetric.objects.bulk_create(links, ignore_conflicts=True)


# --- Endpoints


@endpoint("POST", "api/2.0/mlflow/runs/create", {"experiment_id": STRING, "user_id": STRING, "run_name": STRING, "start_time": INT64, "tags": [KV]})
def create(call):
    project = get_experiment(call, call.data.get("experiment_id") or "0", active=True)
    tags = clean_tags(call.data.get("tags", []))
    name = call.data.get("run_name") or tags.get(RUN_NAME_TAG) or ""
    start = datetime_of_ms(call.data["start_time"], "start_time") if call.data.get("start_time") else None
    run_id = uuid.uuid4().hex
    name = limit(name, 128, "run_name") or f"run-{run_id[:8]}"
    tags.setdefault(RUN_NAME_TAG, name)
    run = Run.objects.create(project=project, run_id=run_id, name=name, user=call.user)
    if start:
        Run.objects.filter(pk=run.pk).update(created_at=start)  # MLflow's start time is the run's creation
    RunRecord.objects.create(run=run)
    log(call, run, tags=tags)
    return {"run": full_run(run)}


@endpoint("POST", "api/2.0/mlflow/runs/update", {"run_id": STRING, "run_uuid": STRING, "status": RUN_STATUS, "end_time": INT64, "run_name": STRING})
def update(call):
    run = run_of(call, call.data, active=True)
    record, _ = RunRecord.objects.get_or_create(run=run)
    if "end_time" in call.data:
        record.end_time = datetime_of_ms(call.data["end_time"], "end_time")
        record.save()
    name = call.data.get("run_name")
    if name:
        log(call, run, tags={RUN_NAME_TAG: limit(name, 128, "run_name")})
        run.name = name
    if "status" in call.data and STATE_OF[call.data["status"]] != run.state:
        run.state = STATE_OF[call.data["status"]]
        run.save(update_fields=["state", "name", "updated_at"])  # the native receiver records RUN_STATE
    run.refresh_from_db()
    return {"run_info": run_info(run)}


@endpoint("POST", "api/2.0/mlflow/runs/delete", {"run_id": STRING})
def delete(call):
    run = run_of(call, call.data)
    RunRecord.objects.update_or_create(run=run, defaults={"deleted_at": timezone.now()})
    return {}


@endpoint("POST", "api/2.0/mlflow/runs/restore", {"run_id": STRING})
def restore(call):
    run = run_of(call, call.data)
    RunRecord.objects.update_or_create(run=run, defaults={"deleted_at": None})
    return {}


@endpoint("POST", "api/2.0/mlflow/runs/log-metric", {
    "run_id": STRING, "run_uuid": STRING, "key": STRING, "value": DOUBLE, "timestamp": INT64, "step": INT64,
    "model_id": STRING, "dataset_name": STRING, "dataset_digest": STRING})
def log_metric(call):
    run = run_of(call, call.data, active=True)
    metric = {k: v for k, v in call.data.items() if k not in ("run_id", "run_uuid")}
    log(call, run, metrics=clean_metrics([metric]))
    return {}


@endpoint("POST", "api/2.0/mlflow/runs/log-parameter", {"run_id": STRING, "run_uuid": STRING, "key": STRING, "value": STRING})
def log_param(call):
    run = run_of(call, call.data, active=True)
    log(call, run, params=clean_params([{"key": call.data.get("key"), "value": call.data.get("value", "")}]))
    return {}


@endpoint("POST", "api/2.0/mlflow/runs/set-tag", {"run_id": STRING, "run_uuid": STRING, "key": STRING, "value": STRING})
def set_tag(call):
    run = run_of(call, call.data, active=True)
    log(call, run, tags=clean_tags([{"key": call.data.get("key"), "value": call.data.get("value", "")}]))
    return {}


@endpoint("POST", "api/2.0/mlflow/runs/delete-tag", {"run_id": STRING, "key": STRING})
def delete_tag(call):
    run = run_of(call, call.data, active=True)
    key = required(call.data, "key")
    deleted, _ = RunTag.objects.filter(run=run, key=key).delete()
    if not deleted:
        raise missing(f"No tag with name: {key[:250]} in run with id {run.run_id}.")
    native = [t for t in run.tags if isinstance(t, str) and t != key and not t.startswith(key + ":")]
    Run.objects.filter(pk=run.pk).update(tags=native, updated_at=timezone.now())
    return {}


@endpoint("POST", "api/2.0/mlflow/runs/log-batch", {"run_id": STRING, "metrics": [METRIC], "params": [KV], "tags": [KV]})
def log_batch(call):
    metrics, params, tags = call.data.get("metrics", []), call.data.get("params", []), call.data.get("tags", [])
    for what, items, most in (("metrics", metrics, 1000), ("params", params, 100), ("tags", tags, 100)):
        if len(items) > most:
            raise invalid(f"A batch logging request can contain at most {most} {what}. Got {len(items)} {what}.")
    if len(metrics) + len(params) + len(tags) > 1000:
        raise invalid("A batch logging request can contain at most 1000 metrics, params, and tags.")
    run = run_of(call, call.data, active=True)
    log(call, run, metrics=clean_metrics(metrics), params=clean_params(params), tags=clean_tags(tags))
    return {}


@endpoint("POST", "api/2.0/mlflow/runs/log-model", {"run_id": STRING, "model_json": STRING})
def log_model(call):
    """MLflow 2's record of a model logged in the run's artifacts: the run's
    `mlflow.log-model.history` tag, as MLflow's own server keeps it."""
    run = run_of(call, call.data, active=True)
    try:
        model = json.loads(required(call.data, "model_json"))
    except (ValueError, RecursionError):
        model = None
    if not isinstance(model, dict):
        raise invalid("Invalid value for model_json: a JSON object describing the model.")
    existing = RunTag.objects.filter(run=run, key="mlflow.log-model.history").values_list("value", flat=True).first()
    try:
        history = json.loads(existing) if existing else []
    except ValueError:
        history = []
    history = (history if isinstance(history, list) else []) + [model]
    log(call, run, tags={"mlflow.log-model.history": limit(json.dumps(history), MAX_TAG, "model_json")})
    return {}


@endpoint("POST", "api/2.0/mlflow/runs/outputs", {"run_id": STRING, "models": [{"model_id": STRING, "step": INT64}]})
def log_outputs(call):
    run = run_of(call, call.data, active=True)
    wanted = {m.get("model_id"): m.get("step", 0) for m in call.data.get("models", [])}
    models = {m.model_id: m for m in LoggedModel.objects.filter(project__team=call.team, model_id__in=[k for k in wanted if k])}
    for model_id, step in wanted.items():
        if model_id not in models:
            raise missing(f"Logged model '{(model_id or '')[:100]}' not found.")
        RunModelOutput.objects.update_or_create(run=run, model=models[model_id], defaults={"step": step})
    return {}


@endpoint("GET", "api/2.0/mlflow/runs/get", {"run_id": STRING, "run_uuid": STRING})
def get(call):
    return {"run": full_run(run_of(call, call.data))}


# --- Metric history


def history_metric(key, value, raw, step, moment):
    return {"key": key, "value": number_out(logged_number(value, raw)), "timestamp": ms(moment), "step": step}


@endpoint("GET", "api/2.0/mlflow/metrics/get-history", {"run_id": STRING, "run_uuid": STRING, "metric_key": STRING, "page_token": STRING, "max_results": INT32})
def get_history(call):
    run = run_of(call, call.data)
    key = required(call.data, "metric_key")
    points = MetricPoint.objects.filter(run=run, key=key).order_by("step", "timestamp", "id").values_list("value", "raw", "step", "timestamp")
    if "max_results" in call.data:
        if call.data["max_results"] <= 0:
            raise invalid(f"Invalid value {call.data['max_results']} for parameter 'max_results': it must be a positive integer.")
        items, token = page(points, call.data.get("page_token"), call.data["max_results"])
    else:
        items, token = page(points, call.data.get("page_token"), 2**62) if call.data.get("page_token") else (list(points), None)
    response = {"metrics": [history_metric(key, *point) for point in items]}
    if token:
        response["next_page_token"] = token
    return response


@endpoint("GET", "api/2.0/mlflow/metrics/get-history-bulk-interval", {
    "run_ids": [STRING], "metric_key": STRING, "start_step": INT32, "end_step": INT32, "max_results": INT32})
def get_history_bulk_interval(call):
    run_ids = required(call.data, "run_ids")
    if len(run_ids) > 100:
        raise invalid(f"GetMetricHistoryBulkInterval request must specify at most 100 run_ids. Received {len(run_ids)} run_ids.")
    key = required(call.data, "metric_key")
    max_results = call.data.get("max_results", 2500)
    if not 1 <= max_results <= 2500:
        raise invalid("max_results must be between 1 and 2500.")
    start, end = call.data.get("start_step"), call.data.get("end_step")
    if (start is None) != (end is None):
        raise invalid("If either start step or end step are specified, both must be specified.")
    if start is not None and start > end:
        raise invalid(f"end_step must be greater than start_step. Found start_step={start} and end_step={end}.")
    out = []
    for run_id in sorted(set(run_ids)):
        run = get_run(call, run_id)
        points = MetricPoint.objects.filter(run=run, key=key)
        if start is not None:
            points = points.filter(step__gte=start, step__lte=end)
        steps = sorted(set(points.values_list("step", flat=True)))
        if len(steps) > max_results:  # evenly spread, keeping the first and the last step
            steps = sorted({steps[round(i * (len(steps) - 1) / (max_results - 1))] for i in range(max_results)}) if max_results > 1 else steps[:1]
        chosen = points.filter(step__in=steps) if len(steps) < 900 else points.filter(step__gte=steps[0], step__lte=steps[-1])
        wanted = set(steps)
        for value, raw, step, moment in chosen.order_by("step", "timestamp", "id").values_list("value", "raw", "step", "timestamp"):
            if step in wanted:
                out.append({**history_metric(key, value, raw, step, moment), "run_id": run.run_id})
    return {"metrics": out}


# --- Search


STATUS_NAME = Case(*[When(state=state, then=Value(name)) for state, name in STATUS_OF.items()], default=Value("RUNNING"), output_field=CharField())


def run_conditions(queryset, comparisons):
    for n, c in enumerate(comparisons):
        what = f"{c.entity}s.{c.key}" if c.entity != "attribute" else c.key
        if c.entity == "metric":
            if c.op in ("IS NULL", "IS NOT NULL"):
                raise invalid(f"Invalid comparator '{c.op}' for metrics.{c.key}.")
            values = RunMetric.objects.filter(run=OuterRef("pk"), key=c.key).filter(number_condition("last_value", c.op, c.value, what))
            queryset = queryset.filter(Exists(values))
        elif c.entity == "param":
            name = f"param_{n}"
            queryset = queryset.annotate(**{name: param(c.key)}).filter(string_condition(name, c.op, c.value, what))
        elif c.entity == "tag":
            if c.op in ("IS NULL", "IS NOT NULL"):
                present = Exists(RunTag.objects.filter(run=OuterRef("pk"), key=c.key))
                queryset = queryset.filter(~present if c.op == "IS NULL" else present)
            else:
                queryset = queryset.filter(Exists(RunTag.objects.filter(run=OuterRef("pk"), key=c.key).filter(string_condition("value", c.op, c.value, what))))
        elif c.entity == "attribute" and c.key in ("start_time", "created", "Created"):
            queryset = queryset.filter(time_condition("created_at", c.op, c.value, what))
        elif c.entity == "attribute" and c.key == "end_time":
            queryset = queryset.filter(time_condition("mlflow__end_time", c.op, c.value, what))
        elif c.entity == "attribute" and c.key in RUN_TEXT_ATTRIBUTES:
            field = RUN_TEXT_ATTRIBUTES[c.key]
            if field == "mlflow_status":
                queryset = queryset.annotate(mlflow_status=STATUS_NAME)
            queryset = queryset.filter(string_condition(field, c.op, c.value, what))
        else:
            raise invalid(f"Invalid filter key '{what}' for runs: use metrics., params., tags. or one of the attributes "
                          "run_id, run_name, status, user_id, start_time, end_time.")
    return queryset


RUN_TEXT_ATTRIBUTES = {"run_id": "run_id", "run_name": "name", "run name": "name", "Run name": "name", "Run Name": "name",
                       "status": "mlflow_status", "user_id": "user__username"}


def run_ordering(queryset, entries):
    order = []
    for n, (entity, key, ascending) in enumerate(parse_order_by(entries)):
        name = f"order_{n}"
        if entity == "metric":
            expression = Subquery(RunMetric.objects.filter(run=OuterRef("pk"), key=key).values("last_value")[:1])
        elif entity == "param":
            expression = param(key)
        elif entity == "tag":
            expression = Subquery(RunTag.objects.filter(run=OuterRef("pk"), key=key).values("value")[:1])
        elif entity == "attribute" and key in ("start_time", "created", "Created"):
            expression = F("created_at")
        elif entity == "attribute" and key == "end_time":
            expression = F("mlflow__end_time")
        elif entity == "attribute" and key in RUN_TEXT_ATTRIBUTES:
            expression = STATUS_NAME if key == "status" else F(RUN_TEXT_ATTRIBUTES[key])
        else:
            raise invalid(f"Invalid order_by key '{entity}.{key}' for runs.")
        queryset = queryset.annotate(**{name: expression})
        order.append(F(name).asc(nulls_last=True) if ascending else F(name).desc(nulls_last=True))
    return queryset.order_by(*order, "-created_at", "run_id")


@endpoint("POST", "api/2.0/mlflow/runs/search", {
    "experiment_ids": [STRING], "filter": STRING, "run_view_type": VIEW_TYPE, "max_results": INT32, "order_by": [STRING], "page_token": STRING},
    write=False)
def search(call):
    max_results = call.data.get("max_results", 1000)
    if not 0 < max_results <= MAX_RESULTS:
        raise invalid(f"Invalid value {max_results} for parameter 'max_results': it must be at most {MAX_RESULTS}.")
    comparisons, order_by = parse_filter(call.data.get("filter")), call.data.get("order_by", [])
    parse_order_by(order_by)
    read_page_token(call.data.get("page_token"))
    projects = []  # checked first: resolving experiment "0" makes it
    for raw in call.data.get("experiment_ids", []):
        try:
            projects.append(get_experiment(call, raw).pk)
        except MlflowError as error:
            if error.code != "RESOURCE_DOES_NOT_EXIST":
                raise
    queryset = runs(call.team).filter(project_id__in=projects)
    view = call.data.get("run_view_type", "ACTIVE_ONLY")
    if view == "ACTIVE_ONLY":
        queryset = queryset.filter(Q(mlflow__isnull=True) | Q(mlflow__deleted_at__isnull=True))
    elif view == "DELETED_ONLY":
        queryset = queryset.filter(mlflow__deleted_at__isnull=False)
    queryset = run_ordering(run_conditions(queryset, comparisons), order_by)
    items, token = page(prefetch_run_data(queryset), call.data.get("page_token"), max_results)
    response = {"runs": [run_data(run) for run in items]}
    if token:
        response["next_page_token"] = token
    return response
