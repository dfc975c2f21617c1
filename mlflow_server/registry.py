"""The model registry: a registered model is a collection of type `model` in the team registry
named by MLFLOW_REGISTRY (made on first use); model version N is the collection's `v(N-1)`, a
native link of the project version it came from (LINK_ARTIFACT fires); aliases are native
aliases (ADD_ARTIFACT_ALIAS fires) and model version tags native tags `key:value`."""

import posixpath
import re

from django.conf import settings
from django.db.models import F, Prefetch, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from tracking.models import LATEST, ArtifactAlias, ArtifactCollection, ArtifactTag, ArtifactVersion, Registry, add_alias, add_tag, create_version, link_version

from .errors import exists, invalid, missing
from .experiments import limit, ms, required, unique_slug, validate_key
from .logged_models import MODEL_TYPE, artifact_root, ensure_version, models_of
from .models import ModelVersion, RegisteredModel, RegisteredModelTag
from .protocol import BOOL, INT64, KV, STRING
from .routing import endpoint
from .runs import artifact_uri, get_run
from .search import page, parse_filter, parse_order_by, string_condition, time_condition, number_condition

ALIAS_RE = re.compile(r"^[A-Za-z0-9][\w-]{0,127}$")
STAGES = {"none": "None", "staging": "Staging", "production": "Production", "archived": "Archived"}


def registry_of(team, create=False):
    name = settings.MLFLOW_REGISTRY
    if create:
        return Registry.objects.get_or_create(team=team, name=name, defaults={"description": "Registered models of the MLflow client"})[0]
    return Registry.objects.filter(team=team, name=name).first()


def registered_models(team):
    registry = registry_of(team)
    return (
        ArtifactCollection.objects.filter(registry=registry, registry__isnull=False, type=MODEL_TYPE)
        .select_related("mlflow_model", "registry", "team")
        .annotate(rm_name=Coalesce("mlflow_model__name", "name"), rm_updated=Coalesce("mlflow_model__updated_at", "created_at"))
    )


def get_registered(call, name):
    name = required({"name": name}, "name")
    collection = registered_models(call.team).filter(rm_name=name).first()
    if collection is None:
        raise missing(f"Registered Model with name={name[:256]} not found")
    return collection


def check_model_name(name, what="name"):
    if name is None or not name.strip():
        raise invalid(f"Missing value for required parameter '{what}'.")
    limit(name, 256, what)
    if "/" in name or ":" in name or posixpath.normpath(name) != name or name.startswith(".."):
        raise invalid(f"Invalid model name '{name[:256]}'. Names cannot contain '/' or ':' nor resolve to another path.")
    return name


def version_rows():
    return ArtifactVersion.objects.select_related(
        "mlflow_version", "run", "created_by", "source__mlflow_model", "collection__mlflow_model"
    ).prefetch_related("aliases", "tags")


def versions(collection):
    return version_rows().filter(collection=collection)


def with_registered_data(queryset):
    """What `registered_data` reads, fetched for a whole page at once."""
    return queryset.prefetch_related(
        "mlflow_tags",
        Prefetch("aliases", queryset=ArtifactAlias.objects.select_related("version").order_by("alias")),
        Prefetch("versions", queryset=version_rows()),
    )


def get_version(call, name, number):
    collection = get_registered(call, name)
    text = required({"version": number}, "version")
    if not re.fullmatch(r"[0-9]{1,9}", text) or int(text) < 1:
        raise invalid(f"Parameter 'version' must be an integer, got '{text[:50]}'.")
    version = versions(collection).filter(index=int(text) - 1).first()
    if version is None:
        raise missing(f"Model Version (name={name[:256]}, version={text}) not found")
    return collection, version


def model_version_record(version):
    try:
        return version.mlflow_version
    except ModelVersion.DoesNotExist:
        return None


def tag_pairs(version):
    """Native tags `key:value` (or `key` alone) as MLflow's key/value tags."""
    return [{"key": t.tag.split(":", 1)[0], "value": t.tag.split(":", 1)[1] if ":" in t.tag else ""} for t in version.tags.all()]


def source_of(version):
    record = model_version_record(version)
    if record:
        return record.source, record.run_id, record.model_id, record.run_link, record.stage, record.updated_at
    logged = getattr(version.source, "mlflow_model", None) if version.source_id else None
    model_id = logged.model_id if logged else ""
    source = f"models:/{model_id}" if model_id else (version.source.version_string if version.source_id else "")
    return source, version.run.run_id if version.run_id else "", model_id, "", "None", version.created_at


def version_data(version, name):
    source, run_id, model_id, run_link, stage, updated = source_of(version)
    return {
        "name": name,
        "version": str(version.index + 1),
        "creation_timestamp": ms(version.created_at),
        "last_updated_timestamp": ms(max(updated, version.created_at)),
        "user_id": version.created_by.username if version.created_by_id else "",
        "current_stage": stage,
        "description": version.description,
        "source": source,
        "run_id": run_id,
        "status": "READY",
        "tags": tag_pairs(version),
        "run_link": run_link,
        "aliases": sorted(a.alias for a in version.aliases.all() if a.alias != LATEST),
        "model_id": model_id,
    }


def registered_data(collection):
    data = {
        "name": collection.rm_name,
        "creation_timestamp": ms(collection.created_at),
        "last_updated_timestamp": ms(collection.rm_updated),
        "description": collection.description,
        "tags": [{"key": t.key, "value": t.value} for t in collection.mlflow_tags.all()],
        "aliases": [
            {"alias": a.alias, "version": str(a.version.index + 1)}
            for a in sorted(collection.aliases.all(), key=lambda a: a.alias) if a.alias != LATEST
        ],
    }
    data["latest_versions"] = [version_data(v, collection.rm_name) for v in latest_versions(collection)]
    return data


def registered_response(call, collection):
    return registered_data(with_registered_data(registered_models(call.team)).get(pk=collection.pk))


def latest_versions(collection, stages=None):
    """The newest version in each stage (MLflow's get-latest-versions)."""
    newest = {}
    for version in sorted(collection.versions.all(), key=lambda v: -v.index):
        stage = source_of(version)[4]
        if stage not in newest and (not stages or stage.lower() in stages):
            newest[stage] = version
    return sorted(newest.values(), key=lambda v: v.index)


def touch(collection):
    RegisteredModel.objects.update_or_create(
        collection=collection, defaults={"registry_id": collection.registry_id, "name": collection.rm_name, "updated_at": timezone.now()}
    )


# --- Registered models


@endpoint("POST", "api/2.0/mlflow/registered-models/create", {"name": STRING, "tags": [KV], "description": STRING, "deployment_job_id": STRING})
def create(call):
    name = check_model_name(call.data.get("name"))
    description = limit(call.data.get("description", ""), 2000, "description")
    tags = {validate_key(t.get("key")): limit(t.get("value", ""), 100_000, "value") for t in call.data.get("tags", [])}
    registry = registry_of(call.team, create=True)
    if registered_models(call.team).filter(rm_name=name).exists():
        raise exists(f"Registered Model (name={name}) already exists.")
    collection = ArtifactCollection.objects.create(
        team=call.team, registry=registry, type=MODEL_TYPE, description=description,
        name=unique_slug(registry.collections.all(), name, max_length=128, fallback="model"),
    )
    RegisteredModel.objects.create(collection=collection, registry=registry, name=name)
    RegisteredModelTag.objects.bulk_create([RegisteredModelTag(collection=collection, key=k, value=v) for k, v in tags.items()])
    return {"registered_model": registered_response(call, collection)}


@endpoint("POST", "api/2.0/mlflow/registered-models/rename", {"name": STRING, "new_name": STRING})
def rename(call):
    collection = get_registered(call, call.data.get("name"))
    new_name = check_model_name(call.data.get("new_name"), "new_name")
    if registered_models(call.team).filter(rm_name=new_name).exclude(pk=collection.pk).exists():
        raise exists(f"Registered Model (name={new_name}) already exists.")
    collection.name = unique_slug(collection.registry.collections.exclude(pk=collection.pk), new_name, max_length=128, fallback="model")
    collection.save(update_fields=["name"])
    RegisteredModel.objects.update_or_create(collection=collection, defaults={"registry_id": collection.registry_id, "name": new_name})
    return {"registered_model": registered_response(call, collection)}


@endpoint("PATCH", "api/2.0/mlflow/registered-models/update", {"name": STRING, "description": STRING, "deployment_job_id": STRING})
def update(call):
    collection = get_registered(call, call.data.get("name"))
    if "description" in call.data:
        collection.description = limit(call.data["description"], 2000, "description")
        collection.save(update_fields=["description"])
    touch(collection)
    return {"registered_model": registered_response(call, collection)}


@endpoint("DELETE", "api/2.0/mlflow/registered-models/delete", {"name": STRING})
def delete(call):
    get_registered(call, call.data.get("name")).delete()
    return {}


@endpoint("GET", "api/2.0/mlflow/registered-models/get", {"name": STRING})
def get(call):
    return {"registered_model": registered_response(call, get_registered(call, call.data.get("name")))}


SEARCH_MODELS = {"filter": STRING, "max_results": INT64, "order_by": [STRING], "page_token": STRING}


def tag_condition(kind_field, c, what):
    """Registered models keep tags in their own table; versions as native `key:value` tags.
    `!=` matches what lacks the tag too: the client filters prompts out with
    tags.`mlflow.prompt.is_prompt` != 'true' and expects every plain model back."""
    negate = c.op == "!="
    op = "=" if negate else c.op
    if kind_field == "mlflow_tags":
        found = Q(pk__in=RegisteredModelTag.objects.filter(Q(key=c.key) & string_condition("value", op, c.value, what)).values("collection_id"))
    elif op == "=" and isinstance(c.value, str):
        found = Q(pk__in=ArtifactTag.objects.filter(tag=f"{c.key}:{c.value}" if c.value else c.key).values("version_id"))
    elif op in ("LIKE", "ILIKE") and isinstance(c.value, str):
        found = Q(pk__in=ArtifactTag.objects.filter(string_condition("tag", op, f"{c.key}:{c.value}", what)).values("version_id"))
    else:
        raise invalid(f"Invalid comparator '{c.op}' for {what}: model version tags take =, !=, LIKE or ILIKE.")
    return ~found if negate else found


@endpoint("GET", "api/2.0/mlflow/registered-models/search", SEARCH_MODELS)
def search(call):
    max_results = call.data.get("max_results", 100)
    if not 0 < max_results <= 1000:
        raise invalid(f"Invalid value {max_results} for parameter 'max_results': it must be between 1 and 1000.")
    queryset = with_registered_data(registered_models(call.team))
    for c in parse_filter(call.data.get("filter")):
        what = f"tags.{c.key}" if c.entity == "tag" else c.key
        if c.entity == "attribute" and c.key == "name":
            queryset = queryset.filter(string_condition("rm_name", c.op, c.value, what))
        elif c.entity == "tag":
            queryset = queryset.filter(tag_condition("mlflow_tags", c, what))
        else:
            raise invalid(f"Invalid filter key '{what}' for registered models: use name or tags.")
    order = []
    for entity, key, ascending in parse_order_by(call.data.get("order_by", [])):
        field = {"name": "rm_name", "timestamp": "created_at", "creation_timestamp": "created_at", "last_updated_timestamp": "rm_updated"}.get(key)
        if entity != "attribute" or field is None:
            raise invalid(f"Invalid order_by key '{key[:100]}' for registered models: name, creation_timestamp or last_updated_timestamp.")
        order.append(field if ascending else f"-{field}")
    items, token = page(queryset.order_by(*order, "rm_name"), call.data.get("page_token"), max_results)
    response = {"registered_models": [registered_data(c) for c in items]}
    if token:
        response["next_page_token"] = token
    return response


LATEST_SPEC = {"name": STRING, "stages": [STRING]}


@endpoint("GET", "api/2.0/mlflow/registered-models/get-latest-versions", LATEST_SPEC)
@endpoint("POST", "api/2.0/mlflow/registered-models/get-latest-versions", LATEST_SPEC, write=False)
def get_latest_versions(call):
    collection = with_registered_data(registered_models(call.team)).get(pk=get_registered(call, call.data.get("name")).pk)
    stages = {s.lower() for s in call.data.get("stages", [])}
    unknown = stages - set(STAGES)
    if unknown:
        raise invalid(f"Invalid Model Version stage: {sorted(unknown)[0][:50]}. Use one of None, Staging, Production, Archived.")
    return {"model_versions": [version_data(v, collection.rm_name) for v in latest_versions(collection, stages)]}


@endpoint("POST", "api/2.0/mlflow/registered-models/set-tag", {"name": STRING, "key": STRING, "value": STRING})
def set_registered_tag(call):
    collection = get_registered(call, call.data.get("name"))
    key = validate_key(call.data.get("key"))
    RegisteredModelTag.objects.update_or_create(collection=collection, key=key, defaults={"value": limit(call.data.get("value", ""), 100_000, "value")})
    touch(collection)
    return {}


@endpoint("DELETE", "api/2.0/mlflow/registered-models/delete-tag", {"name": STRING, "key": STRING})
def delete_registered_tag(call):
    collection = get_registered(call, call.data.get("name"))
    key = required(call.data, "key")
    if not RegisteredModelTag.objects.filter(collection=collection, key=key).delete()[0]:
        raise missing(f"No tag with name '{key[:250]}' on registered model {collection.rm_name}.")
    touch(collection)
    return {}


def check_alias(alias):
    if not alias:
        raise invalid("Registered model alias name cannot be empty.")
    if not ALIAS_RE.match(alias):
        raise invalid(f"Invalid alias name: '{alias[:255]}'. Aliases take letters, digits, '_' and '-', starting with a letter or digit, up to 128.")
    if alias.lower() == LATEST or re.fullmatch(r"[vV]\d+", alias):
        raise invalid(f"Alias name '{alias}' is reserved.")
    return alias


@endpoint("POST", "api/2.0/mlflow/registered-models/alias", {"name": STRING, "alias": STRING, "version": STRING})
def set_alias(call):
    collection, version = get_version(call, call.data.get("name"), call.data.get("version"))
    add_alias(version, check_alias(call.data.get("alias")), call.user)
    touch(collection)
    return {}


@endpoint("DELETE", "api/2.0/mlflow/registered-models/alias", {"name": STRING, "alias": STRING})
def delete_alias(call):
    collection = get_registered(call, call.data.get("name"))
    alias = check_alias(call.data.get("alias"))
    ArtifactAlias.objects.filter(collection=collection, alias=alias).delete()
    touch(collection)
    return {}


@endpoint("GET", "api/2.0/mlflow/registered-models/alias", {"name": STRING, "alias": STRING})
def get_by_alias(call):
    collection = get_registered(call, call.data.get("name"))
    alias = required(call.data, "alias")
    version = versions(collection).filter(aliases__alias=alias).first() if alias != LATEST else None
    if version is None:
        raise missing(f"Registered model alias {alias[:255]} not found.")
    return {"model_version": version_data(version, collection.rm_name)}


# --- Model versions


RUNS_URI = re.compile(r"^runs:/([^/]+)/?(.*)$")
MODELS_URI = re.compile(r"^models:/(m-[0-9a-f]{32})/?$")


def source_version(call, source, run_id, model_id):
    """The project artifact version a new model version links, from a `models:/<model_id>`
    source (a logged model) or a run's artifacts (`runs:/…`, or any location with `run_id`)."""
    match = MODELS_URI.match(source)
    model_id = model_id or (match.group(1) if match else "")
    if model_id:
        model = models_of(call.team).filter(model_id=model_id, deleted_at__isnull=True).first()
        if model is None:
            raise missing(f"Logged model with ID '{model_id[:100]}' not found.")
        return ensure_version(model, call.user), model, model.source_run
    match = RUNS_URI.match(source)
    run_id = run_id or (match.group(1) if match else "")
    if not run_id:
        raise invalid("Tripline registers a logged model (models:/<model_id>) or a run's artifacts (runs:/<run_id>/<path>, or a source with run_id).")
    run = get_run(call, run_id)
    path = match.group(2) if match else posixpath.basename(source.rstrip("/"))
    collection, _ = ArtifactCollection.objects.get_or_create(
        project=run.project, name=unique_slug(run.project.collections.exclude(type=MODEL_TYPE), posixpath.basename(path.rstrip("/")) or "model", max_length=128, fallback="model"),
        defaults={"team_id": run.project.team_id, "type": MODEL_TYPE},
    )
    return create_version(collection, created_by=call.user, run=run, metadata={"source": source}), None, run


def download_uri(version):
    source, run_id, model_id, *_ = source_of(version)
    if model_id:
        model = version.source.mlflow_model if version.source_id and hasattr(version.source, "mlflow_model") else None
        if model:
            return f"mlflow-artifacts:/{artifact_root(model)}"
    match = RUNS_URI.match(source)
    if match and version.run_id:
        return f"{artifact_uri(version.run)}/{match.group(2)}".rstrip("/")
    return source


def set_version_tag(version, key, value, user):
    key = validate_key(key)
    if ":" in key:
        raise invalid(f"Invalid tag key '{key[:250]}': model version tags are Tripline tags 'key:value', so a key cannot hold ':'.")
    version.tags.filter(Q(tag=key) | Q(tag__startswith=f"{key}:")).delete()
    add_tag(version, f"{key}:{value}" if value else key, user)


@endpoint("POST", "api/2.0/mlflow/model-versions/create", {
    "name": STRING, "source": STRING, "run_id": STRING, "tags": [KV], "run_link": STRING, "description": STRING, "model_id": STRING})
def create_model_version(call):
    collection = get_registered(call, call.data.get("name"))
    source = limit(required(call.data, "source"), 4000, "source")
    description = limit(call.data.get("description", ""), 4000, "description")
    tags = [(t.get("key"), t.get("value", "")) for t in call.data.get("tags", [])]
    origin, model, run = source_version(call, source, call.data.get("run_id", ""), call.data.get("model_id", ""))
    version, _ = link_version(collection, origin, linked_by=call.user)
    ModelVersion.objects.update_or_create(version=version, defaults={
        "source": source, "run_id": run.run_id if run else "", "model_id": model.model_id if model else "",
        "run_link": limit(call.data.get("run_link", ""), 4000, "run_link"),
    })
    if description:
        ArtifactVersion.objects.filter(pk=version.pk).update(description=description)
    for key, value in tags:
        set_version_tag(version, key, value, call.user)
    touch(collection)
    return {"model_version": version_data(versions(collection).get(pk=version.pk), collection.rm_name)}


@endpoint("PATCH", "api/2.0/mlflow/model-versions/update", {"name": STRING, "version": STRING, "description": STRING})
def update_version(call):
    collection, version = get_version(call, call.data.get("name"), call.data.get("version"))
    if "description" in call.data:
        ArtifactVersion.objects.filter(pk=version.pk).update(description=limit(call.data["description"], 4000, "description"))
    record_touch(version)
    return {"model_version": version_data(versions(collection).get(pk=version.pk), collection.rm_name)}


def record_touch(version, **fields):
    source, run_id, model_id, run_link, stage, _ = source_of(version)
    defaults = {"source": source, "run_id": run_id, "model_id": model_id, "run_link": run_link, "stage": stage, **fields}
    ModelVersion.objects.update_or_create(version=version, defaults=defaults)


@endpoint("POST", "api/2.0/mlflow/model-versions/transition-stage", {"name": STRING, "version": STRING, "stage": STRING, "archive_existing_versions": BOOL})
def transition_stage(call):
    collection, version = get_version(call, call.data.get("name"), call.data.get("version"))
    stage = STAGES.get((call.data.get("stage") or "").lower())
    if stage is None:
        raise invalid("Invalid Model Version stage: use one of None, Staging, Production, Archived.")
    if call.data.get("archive_existing_versions") and stage in ("Staging", "Production"):
        for other in versions(collection).exclude(pk=version.pk):
            if source_of(other)[4] == stage:
                record_touch(other, stage="Archived")
    record_touch(version, stage=stage)
    return {"model_version": version_data(versions(collection).get(pk=version.pk), collection.rm_name)}


@endpoint("DELETE", "api/2.0/mlflow/model-versions/delete", {"name": STRING, "version": STRING})
def delete_version(call):
    collection, version = get_version(call, call.data.get("name"), call.data.get("version"))
    version.delete()
    touch(collection)
    return {}


@endpoint("GET", "api/2.0/mlflow/model-versions/get", {"name": STRING, "version": STRING})
def get_model_version(call):
    collection, version = get_version(call, call.data.get("name"), call.data.get("version"))
    return {"model_version": version_data(version, collection.rm_name)}


@endpoint("GET", "api/2.0/mlflow/model-versions/get-download-uri", {"name": STRING, "version": STRING})
def get_download_uri(call):
    _, version = get_version(call, call.data.get("name"), call.data.get("version"))
    return {"artifact_uri": download_uri(version)}


VERSION_TEXT = {"name": "rm_name", "run_id": "mv_run_id", "source_path": "mlflow_version__source"}
VERSION_NUMBER = {"version_number": "number"}


@endpoint("GET", "api/2.0/mlflow/model-versions/search", SEARCH_MODELS)
def search_versions(call):
    max_results = call.data.get("max_results", 10000)
    if not 0 < max_results <= 200_000:
        raise invalid(f"Invalid value {max_results} for parameter 'max_results': it must be between 1 and 200000.")
    registry = registry_of(call.team)
    queryset = (
        ArtifactVersion.objects.filter(collection__registry=registry, collection__registry__isnull=False, collection__type=MODEL_TYPE)
        .select_related("mlflow_version", "run", "created_by", "source__mlflow_model", "collection__mlflow_model")
        .prefetch_related("aliases", "tags")
        .annotate(
            rm_name=Coalesce("collection__mlflow_model__name", "collection__name"),
            mv_run_id=Coalesce("mlflow_version__run_id", "run__run_id"),
            number=F("index") + 1,
            mv_updated=Coalesce("mlflow_version__updated_at", "created_at"),
        )
    )
    for c in parse_filter(call.data.get("filter")):
        what = f"tags.{c.key}" if c.entity == "tag" else c.key
        if c.entity == "attribute" and c.key in VERSION_TEXT:
            queryset = queryset.filter(string_condition(VERSION_TEXT[c.key], c.op, c.value, what))
        elif c.entity == "attribute" and c.key == "version_number":
            queryset = queryset.filter(number_condition("number", c.op, c.value, what, convert=lambda v: int(v) if v.is_integer() else v))
        elif c.entity == "attribute" and c.key in ("creation_timestamp", "last_updated_timestamp"):
            queryset = queryset.filter(time_condition("created_at" if c.key == "creation_timestamp" else "mv_updated", c.op, c.value, what))
        elif c.entity == "tag":
            queryset = queryset.filter(tag_condition("tags", c, what))
        else:
            raise invalid(f"Invalid filter key '{what}' for model versions: use name, run_id, source_path, version_number or tags.")
    order = []
    for entity, key, ascending in parse_order_by(call.data.get("order_by", [])):
        field = {"name": "rm_name", "version_number": "number", "creation_timestamp": "created_at", "timestamp": "created_at",
                 "last_updated_timestamp": "mv_updated"}.get(key)
        if entity != "attribute" or field is None:
            raise invalid(f"Invalid order_by key '{key[:100]}' for model versions.")
        order.append(field if ascending else f"-{field}")
    items, token = page(queryset.order_by(*order, "rm_name", "-index"), call.data.get("page_token"), max_results)
    response = {"model_versions": [version_data(v, v.rm_name) for v in items]}
    if token:
        response["next_page_token"] = token
    return response


@endpoint("POST", "api/2.0/mlflow/model-versions/set-tag", {"name": STRING, "version": STRING, "key": STRING, "value": STRING})
def set_model_version_tag(call):
    collection, version = get_version(call, call.data.get("name"), call.data.get("version"))
    set_version_tag(version, call.data.get("key"), call.data.get("value", ""), call.user)
    record_touch(version)
    return {}


@endpoint("DELETE", "api/2.0/mlflow/model-versions/delete-tag", {"name": STRING, "version": STRING, "key": STRING})
def delete_version_tag(call):
    collection, version = get_version(call, call.data.get("name"), call.data.get("version"))
    key = validate_key(call.data.get("key"))
    if not version.tags.filter(Q(tag=key) | Q(tag__startswith=f"{key}:")).delete()[0]:
        raise missing(f"No tag with key '{key[:250]}' on model version {version.index + 1} of {collection.rm_name}.")
    record_touch(version)
    return {}
