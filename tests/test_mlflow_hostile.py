"""A hostile sweep of every MLflow endpoint Tripline serves: for each field of each endpoint's
request, generated bad values (wrong types, nulls, huge strings and numbers, lone surrogates,
NUL, deep nesting, path traversal), plus broken bodies. No answer is a 5xx, every refusal is
MLflow's JSON error, and after each refusal the database and the artifact storage are unchanged."""

import base64
import hashlib
import json
import logging
from urllib.parse import quote

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token

from mlflow_server.protocol import BOOL, DOUBLE, INT32, INT64, STRING, Enum
from mlflow_server.routing import ROUTES

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000
SURROGATE = '"\\ud800x"'  # a lone surrogate, as JSON escapes it
TRAVERSALS = ["../../../etc/passwd", "/etc/passwd", "a/../../b", "..", "a//b", "a\\..\\b", "~/x", "C:/x"]


def hostile_values(kind):
    """Raw JSON texts of bad values for a field of this kind."""
    if kind == STRING:
        return ["123", "[]", "null", SURROGATE, '"a\\u0000b"', json.dumps("x" * 100_000), json.dumps(TRAVERSALS[0])]
    if kind in (INT64, INT32):
        return ['"abc"', "1.5", "1" + "0" * 30, "null", "[]"]
    if kind == DOUBLE:
        return ['"abc"', "1" + "0" * 400, "1e999", "{}"]
    if kind == BOOL:
        return ['"yes"', "2"]
    if isinstance(kind, Enum):
        return ['"NOPE"', "99", "1.5"]
    if isinstance(kind, list):
        return ['"text"', "[null]", "[123]", "[{\"key\": " + SURROGATE + "}]", '[{"key": "../x", "value": 1}]', DEEP]
    raise AssertionError(kind)


def hostile_query(kind):
    if kind in (INT64, INT32):
        return ["abc", "9" * 40]
    if kind == BOOL:
        return ["yes"]
    return ["\udcff", "x" * 20_000, TRAVERSALS[0], "\x00"]


@pytest.fixture
def world(team, project, tmp_path, settings):
    """A small world with one of everything, so that valid fields reach the handlers' checks."""
    settings.MEDIA_ROOT = tmp_path / "media"
    token = Token.objects.create(user=get_user_model().objects.get(username="bob")).key
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", raise_request_exception=False)

    def post(path, body):
        response = client.post(f"/mlflow/acme/api/2.0/mlflow/{path}", json.dumps(body), content_type="application/json")
        assert response.status_code == 200, response.content
        return response.json()

    run_id = post("runs/create", {"experiment_id": str(project.pk)})["run"]["info"]["run_id"]
    post("runs/log-batch", {"run_id": run_id, "metrics": [{"key": "loss", "value": 1, "timestamp": 1, "step": 0}], "params": [{"key": "lr", "value": "1"}]})
    model_id = post("logged-models", {"experiment_id": str(project.pk), "name": "m", "source_run_id": run_id})["model"]["info"]["model_id"]
    client.patch(f"/mlflow/acme/api/2.0/mlflow/logged-models/{model_id}", json.dumps({"status": "LOGGED_MODEL_READY"}), content_type="application/json")
    post("registered-models/create", {"name": "reg"})
    post("model-versions/create", {"name": "reg", "source": f"models:/{model_id}"})
    post("registered-models/alias", {"name": "reg", "alias": "prod", "version": "1"})
    client.put(f"/mlflow/acme/api/2.0/mlflow-artifacts/artifacts/{project.pk}/{run_id}/artifacts/a.txt", b"data", content_type="text/plain")
    valid = {
        "run_id": run_id, "run_uuid": run_id, "experiment_id": str(project.pk), "experiment_ids": [str(project.pk)], "run_ids": [run_id],
        "name": "reg", "version": "1", "alias": "prod", "key": "k", "value": "v", "metric_key": "loss", "model_id": model_id,
        "source": f"models:/{model_id}", "experiment_name": "vision", "new_name": "renamed", "status": "FINISHED", "path": "",
    }
    return client, valid, {"model_id": model_id, "path": f"{project.pk}/{run_id}/artifacts/a.txt", "tag_key": "k"}


TABLES = [model._meta.db_table for label in ("tracking", "events", "mlflow_server") for model in apps.get_app_config(label).get_models()]


def snapshot(media):
    """A digest of every row the MLflow endpoints could touch (raw SQL: cheap enough to take
    after every request), and of the artifact files."""
    digest = hashlib.sha256()
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)} ORDER BY 1")
            digest.update(repr(cursor.fetchall()).encode())
    if media.exists():
        for path in sorted(media.rglob("*")):
            digest.update(f"{path}:{path.stat().st_size if path.is_file() else 'dir'}".encode())
    return digest.hexdigest()


def test_no_endpoint_answers_5xx_and_refusals_change_nothing(world, settings, caplog):
    caplog.set_level(logging.CRITICAL, logger="django.request")  # thousands of expected 4xx
    client, valid, path_args = world
    media = settings.MEDIA_ROOT
    problems = []
    before = snapshot(media)
    sent = 0

    def send(route, url, body=None, query=None, what=""):
        nonlocal before, sent
        sent += 1
        if route.method == "GET":
            # Encoded by hand: a lone surrogate goes out as the invalid UTF-8 it would be on the wire.
            encoded = "&".join(f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, values in (query or {}).items()
                               for v in (values if isinstance(values, list) else [values]))
            response = client.get(f"{url}?{encoded}")
        else:
            response = client.generic(route.method, url, body if body is not None else "", content_type="application/json")
        status = response.status_code
        if status >= 500:
            problems.append(f"{route.method} {url} {what}: {status} {response.content[:300]!r}")
            return
        if status >= 400:
            if response.get("Content-Type") != "application/json" or "error_code" not in response.json():
                problems.append(f"{route.method} {url} {what}: {status} is not MLflow's JSON error")
            after = snapshot(media)
            if after != before:
                problems.append(f"{route.method} {url} {what}: refused ({status}) but changed the database or the files")
                before = after
        else:
            before = snapshot(media)

    def picks(variants):
        """A few of a kind's variants, rotating, so every variant of every kind is sent somewhere."""
        nonlocal turn
        turn += 1
        return [variants[(turn + i) % len(variants)] for i in range(min(3, len(variants)))]

    turn = 0
    for route in ROUTES:
        pattern = route.pattern.pattern
        real = pattern.replace("(?P<model_id>[^/]+)", path_args["model_id"]).replace("(?P<path>.+)", path_args["path"]).replace("(?P<tag_key>.+)", "k")
        url = f"/mlflow/acme/{real}"
        base = {name: valid[name] for name in route.spec if name in valid}
        if "(?P<" in pattern:  # hostile path segments, with an otherwise valid request
            bad_segments = ["%ED%A0%80", "..%2F..%2Fetc", "%00", "x" * 300] + (TRAVERSALS[:4] if "(?P<path>" in pattern else [])
            for bad in bad_segments:
                hostile = pattern.replace("(?P<model_id>[^/]+)", bad).replace("(?P<path>.+)", bad).replace("(?P<tag_key>.+)", bad)
                send(route, f"/mlflow/acme/{hostile}", body=json.dumps(base), query=base, what="(hostile path)")
        if route.method == "GET":
            send(route, url, query=base, what="(valid)")
            for name, kind in route.spec.items():
                for bad in picks(hostile_query(kind)):
                    send(route, url, query={**base, name: bad}, what=f"{name}={bad[:20]!r}")
            continue
        for raw in picks(["{", "[]", '{"a": ' + DEEP + "}", "\xff\xfe".encode("latin-1"), "x" * 3_000_000]):
            send(route, url, body=raw, what=f"body {str(raw)[:20]!r}")
        for name, kind in route.spec.items():
            for bad in picks(hostile_values(kind)):
                text = json.dumps(base)[:-1] + (", " if base else "") + f"{json.dumps(name)}: {bad}}}"
                send(route, url, body=text, what=f"{name}={bad[:30]}")
    print(f"{sent} requests")
    assert sent > 500
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])


@pytest.mark.parametrize("header", [
    "Basic " + base64.b64encode(b"bob:a\x00b").decode(),  # a password decoding to NUL: PostgreSQL's text refuses it
    "Basic " + base64.b64encode(b"bob:\xed\xa0\x80").decode(),  # not UTF-8 (a lone surrogate's bytes)
    "Basic !!!", "Bearer a\x00b", "Token a\x00b", "Bearer " + "a" * 129, "Bearer",
])
def test_hostile_credentials_are_unauthenticated_never_5xx(team, project, header):
    response = Client(HTTP_AUTHORIZATION=header, raise_request_exception=False).post(
        "/mlflow/acme/api/2.0/mlflow/experiments/search", json.dumps({"max_results": 1}), content_type="application/json")
    assert (response.status_code, response.json()["error_code"]) == (401, "UNAUTHENTICATED")
