"""Every route of the REST API, sent hostile input through a real `Authorization: Token` header:
never a 5xx, and a refused request leaves every table exactly as it was.

Routes come from Django's resolver and their fields from each operation's OpenAPI request schema,
so a new endpoint is swept without editing this file (or fails `test_every_write_route_has_a_valid_body`
until it is given one). Each hostile value replaces, in turn, every field of a valid body, down to
nested ones (`scope.type`, `rows[0].metrics.loss`), so it reaches the code behind validation.
Path parameters are filled with real objects of the caller's team, and with another team's.

A request that is accepted is rolled back, so every request meets the same world; at the end the
accepted ones are replayed for good, and every GET route and page must still answer.
"""

import json
import logging
import re

import pytest
from django.db import connection, transaction
from django.urls import URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from actions.models import Integration
from automations.models import Automation, Execution
from events.models import Event
from teams.models import Membership, Role, Secret, Team
from tracking.history import log_history
from tracking.models import ArtifactCollection, Run, create_version, link_version

from .receivers import Receiver
from .token_client import token_client

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("post", "put", "patch")


class Raw:
    """A JSON fragment as sent on the wire, including what Python's json would never write:
    `1e999`, a lone surrogate escape, 3,000 nested brackets."""

    def __init__(self, text, label=None):
        self.text, self.label = text, label or (text if len(text) < 40 else text[:37] + "…")

    def __repr__(self):
        return self.label


def dumps(value):
    """`value` as JSON text, Raw fragments written as they are."""
    raws = []

    def mark(node):
        if isinstance(node, Raw):
            raws.append(node.text)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(node, dict):
            return {k: mark(v) for k, v in node.items()}
        if isinstance(node, list):
            return [mark(v) for v in node]
        return node

    text = json.dumps(mark(value))
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@raw{i}@@"', raw, 1)
    return text


# Classes of input the API must refuse with a 400 wherever a body is read. (NaN and ±Infinity
# are the exception under a history row's metrics, where SPEC.md keeps them as logged.)
MUST_REFUSE = [
    Raw('"\\ud800"', "lone surrogate"),
    Raw('"a\\u0000b"', "NUL"),
    Raw('{"k\\ud800": 1}', "lone surrogate in a key"),
    Raw("-" + "9" * 400, "400-digit integer"),
    Raw("1e999"),
    Raw("[" * 3000 + "]" * 3000, "nested 3,000 deep"),
    Raw('{"a":' * 40 + "1" + "}" * 40, "object nested 40 deep"),
]
NON_FINITE = [Raw("NaN"), Raw("-Infinity")]


WRONG_TYPES = [Raw("null"), Raw("true"), Raw("0"), Raw("1.5"), Raw(str(2**63)), Raw('""'), Raw("[]"), Raw("{}"), Raw('["x"]'), Raw('{"type": []}')]


ONE_MB = Raw(json.dumps("x" * 1_000_000), "1 MB string")


def oversized(max_length):
    """Strings at a field's limit (stored whole, or refused for another reason: on PostgreSQL a
    column shorter than the API's limit would answer 500) and one character past it. é is 2
    bytes, 6 once JSON-escaped; a quote 2."""
    limit = max_length or 256
    return [Raw(json.dumps("é" * limit), f"{limit} × é"), Raw(json.dumps("é" * (limit + 1)), f"{limit + 1} × é"),
            Raw(json.dumps('"' * (limit + 1)), f"{limit + 1} × quote")]


def rival_values(rival):
    """Another team's names and ids, for fields that name or number an object."""
    return [*(Raw(json.dumps(v), f"rival {v}") for v in rival.names()), *(Raw(str(v), f"rival id {v}") for v in rival.ids())]


WHOLE_BODIES = [*MUST_REFUSE, Raw("[]"), Raw('"x"'), Raw("1"), Raw("null"), Raw("{}"), Raw("NaN"), Raw('{"zzz_unknown": 1}'), ONE_MB]


class World:
    """One team's objects: a project with a run and its history, an artifact with versions, a
    registry collection with a link, a secret, webhook and Slack integrations, an automation and
    an execution."""

    def __init__(self, name, admin, member, prefix, url):
        self.team = Team.objects.create(name=name)
        Membership.objects.create(team=self.team, user=admin, role=Role.ADMIN)
        Membership.objects.create(team=self.team, user=member, role=Role.MEMBER)
        self.member = member
        self.project = self.team.projects.create(name=f"{prefix}vision")
        self.run = Run.objects.create(project=self.project, run_id=f"{prefix}r1", name=f"{prefix}r1", user=admin)
        log_history(self.run, [{"step": s, "metrics": {"loss": 1 / (s + 1), "note": "warm"}} for s in range(5)])
        self.artifact = ArtifactCollection.objects.create(team=self.team, project=self.project, name=f"{prefix}mnist", type="model")
        version = create_version(self.artifact, tags=["t"], aliases=["best"])
        create_version(self.artifact)
        self.registry = self.team.registries.create(name=f"{prefix}models")
        self.collection = ArtifactCollection.objects.create(team=self.team, registry=self.registry, name=f"{prefix}clf", type="model")
        link_version(self.collection, version, aliases=["prod"])
        self.secret = Secret.objects.create(team=self.team, name=f"{prefix.upper().replace('-', '_')}TOKEN", value="s3cret-value")
        self.hook = Integration.objects.create(team=self.team, kind="webhook", name=f"{prefix}ci", url=url, access_token_secret=self.secret)
        self.slack = Integration.objects.create(team=self.team, kind="slack", name=f"{prefix}chat", channel="#ml", token_secret=self.secret)
        self.automation = Automation.objects.create(
            team=self.team, name=f"{prefix}on finish", scope_type="project", project=self.project, event_type="RUN_STATE",
            event_filter={"states": ["FINISHED"]}, action_type="WEBHOOK", integration=self.hook, action_config={"payload": {"run": "${run_id}"}},
        )
        event = Event.objects.create(team=self.team, type="RUN_STATE", project=self.project, run=self.run, facts={"new_state": "finished"})
        self.execution = Execution.objects.create(automation=self.automation, event=event)

    def by_segment(self):
        """The value of a path parameter, by the URL segment before it."""
        return {
            "teams": self.team.name, "projects": self.project.name, "runs": self.run.run_id, "artifacts": self.artifact.name,
            "versions": "v0", "aliases": "latest", "tags": "t", "registries": self.registry.name, "collections": self.collection.name,
            "members": self.member.username, "secrets": self.secret.name, "integrations": self.hook.pk,
            "automations": self.automation.pk, "executions": self.execution.pk,
        }

    def by_name(self):
        """For pages, whose parameters follow other parameters."""
        return {"team": self.team.name, "project": self.project.name, "run": self.run.run_id, "name": self.artifact.name,
                "version": "v0", "registry": self.registry.name, "collection": self.collection.name, "status": 200}

    def names(self):
        return [self.project.name, self.run.run_id, self.secret.name, self.hook.name, self.slack.name, self.registry.name,
                self.collection.name, self.artifact.name, f"{self.project.name}/{self.artifact.name}:v1"]

    def ids(self):
        return [self.hook.pk, self.slack.pk]


def valid_bodies(w):
    """A valid body for every write route, keyed by route name and method (None: the route takes
    no body). Hostile values replace each of their fields in turn."""
    return {
        ("api-teams", "post"): {"name": "newteam", "display_name": "New team"},
        ("api-members", "post"): {"username": "charlie", "role": "viewer"},
        ("api-member", "patch"): {"role": "viewer"},
        ("api-secrets", "post"): {"name": "NEW_SECRET", "value": "v"},
        ("api-secret", "put"): {"value": "rotated"},
        ("api-projects", "post"): {"name": "newproj", "description": "d"},
        ("api-runs", "post"): {"id": "newrun", "name": "n", "config": {"lr": 0.1, "layers": [1, 2]}, "tags": ["a"]},
        ("api-run", "patch"): {"state": "finished", "summary": {"acc": 0.9}, "name": "renamed", "tags": ["b"]},
        ("api-history", "post"): {"rows": [{"step": 10, "metrics": {"loss": 0.5, "note": "ok"}, "timestamp": "2026-01-01T00:00:00Z"}]},
        ("api-artifacts", "post"): {"name": w.artifact.name, "type": "model", "metadata": {"k": [1]}, "digest": "abc", "description": "d",
                                    "aliases": ["best"], "tags": ["eu"], "run": w.run.run_id},
        ("api-artifact-aliases", "post"): {"alias": "champion"},
        ("api-artifact-tags", "post"): {"tag": "eu-west"},
        ("api-registries", "post"): {"name": "newreg", "description": "d"},
        ("api-registry-collections", "post"): {"name": "newcol", "type": "model", "description": "d"},
        ("api-links", "post"): {"artifact": f"{w.project.name}/{w.artifact.name}:v1", "aliases": ["staging"]},
        ("api-registry-aliases", "post"): {"alias": "champion"},
        ("api-registry-tags", "post"): {"tag": "eu"},
        ("api-integrations", "post"): {"kind": "webhook", "name": "hook2", "url": w.hook.url, "access_token_secret": w.secret.name, "secret": w.secret.name},
        ("api-integration", "patch"): {"name": "renamed", "url": w.hook.url + "/x", "enabled": True},
        ("api-integration-test", "post"): {"payload": {"x": "${event_type}"}},
        ("api-integration-rotate", "post"): None,
        ("api-automations", "post"): {
            "name": "new automation", "description": "d", "enabled": True,
            "scope": {"type": "project", "project": w.project.name},
            "event": {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 3, "agg": "MIN", "cmp": "$lt", "threshold": 0.1,
                      "run_filter": {"user": "alice", "name_regex": "^r"}},
            "action": {"type": "WEBHOOK", "integration": w.hook.name, "payload": {"run": "${run_id}", "v": ["${metric_value}"]}},
        },
        ("api-automation", "patch"): {
            "name": "renamed", "enabled": False,
            "event": {"type": "RUN_METRIC_CHANGE", "metric": "acc", "change_amount": 0.25, "change_dir": "DECREASE"},
            "action": {"type": "SLACK", "integration": w.slack.pk, "title": "t", "message": "${run_name}", "severity": "WARN"},
        },
        ("api-automation-test", "post"): None,
        ("api-execution-redeliver", "post"): None,
    }


EXTRA_VALID = {  # more valid bodies, to reach the variants of a scope, event and action
    ("api-automations", "post"): [
        lambda w: {"name": "n2", "scope": {"type": "registry_collection", "registry": w.registry.name, "collection": w.collection.name},
                   "event": {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^prod$"}, "action": {"type": "NO_OP"}},
        lambda w: {"name": "n3", "scope": {"type": "project", "project": w.project.name},
                   "event": {"type": "RUN_STATE", "states": ["failed", "FINISHED"]}, "action": {"type": "NO_OP"}},
        lambda w: {"name": "n4", "scope": {"type": "project", "project": w.project.name},
                   "event": {"type": "RUN_METRIC_ZSCORE", "metric": "loss", "window": 10, "threshold": 2.5, "basis": "history"},
                   "action": {"type": "SLACK", "integration": w.slack.name, "title": "z"}},
        lambda w: {"name": "n5", "scope": {"type": "team"}, "event": {"type": "CREATE_ARTIFACT", "collection_type": "model"},
                   "action": {"type": "NO_OP"}},
    ],
    ("api-integrations", "post"): [lambda w: {"kind": "slack", "name": "chat2", "channel": "#c", "token_secret": w.secret.name}],
}


def api_routes():
    """(route, name, view class) of every URL pattern under api/v1/, from the resolver."""
    found = []

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                found.append((prefix + str(pattern.pattern), pattern.name, getattr(pattern.callback, "cls", None)))

    walk(get_resolver().url_patterns, "")
    return found


PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def fill(route, world):
    """The route with each parameter filled from `world` (a World, or a dict of overrides)."""
    by_segment, by_name = world.by_segment(), world.by_name()
    segments = route.split("/")
    out = []
    for i, segment in enumerate(segments):
        match = PARAM.fullmatch(segment)
        if match is None:
            out.append(segment)
            continue
        before = segments[i - 1] if i else ""
        value = by_segment.get(before) if before and not PARAM.fullmatch(before) else None
        out.append(str(value if value is not None else by_name[match.group(2)]))
    return "/" + "/".join(out)


def methods(view):
    return [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)]


def schema_path(route):
    return "/" + PARAM.sub(lambda m: "{id}" if m.group(2) == "pk" else "{" + m.group(2) + "}", route)


class Schema:
    def __init__(self):
        self.doc = SchemaGenerator().get_schema(request=None, public=True)

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = self.doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
        return node or {}

    def operation(self, route, method):
        return self.doc["paths"].get(schema_path(route), {}).get(method)

    def request_fields(self, route, method):
        """{field: schema} of an operation's JSON body; None when it takes no body."""
        body = (self.operation(route, method) or {}).get("requestBody")
        if not body:
            return None
        schema = self.resolve(body["content"]["application/json"]["schema"])
        return {k: self.resolve(v) for k, v in schema.get("properties", {}).items() if not self.resolve(v).get("readOnly")}

    def node_at(self, fields, body, path):
        """The schema of the value at `path` of `body` ({} where the schema says nothing)."""
        node = {"properties": fields}
        for key in path:
            node = self.variant(node, body)
            if isinstance(key, int):
                node = node.get("items", {})
            else:
                extra = node.get("additionalProperties")
                node = node.get("properties", {}).get(key, extra if isinstance(extra, dict) else {})
            body = body[key] if isinstance(body, (dict, list)) else None
        return self.variant(node, body)

    def declares_properties(self, fields, body, path):
        """Whether the schema declares the properties of the object at `path` of `body` (so an
        unknown key there must be refused), or leaves it free-form (config, metadata, a payload)."""
        return "properties" in self.node_at(fields, body, path)

    def variant(self, node, value):
        node = self.resolve(node)
        if "discriminator" in node and isinstance(value, dict):
            return self.resolve({"$ref": node["discriminator"]["mapping"][value["type"]]})
        return node

    def query_params(self, route):
        return [p["name"] for p in (self.operation(route, "get") or {}).get("parameters", []) if p["in"] == "query"]


def snapshot():
    """Every row of every table."""
    with connection.cursor() as cursor:
        rows = {}
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)} ORDER BY 1")
            rows[table] = cursor.fetchall()
        return rows


def rows_written():
    """Rows inserted, updated or deleted so far, by this connection (SQLite) or in this
    transaction (PostgreSQL), rolled back or not: while it stays put, no table can differ."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_xact_user_tables")
        else:
            cursor.execute("SELECT total_changes()")
        return cursor.fetchone()[0]


def diff(before, after):
    return sorted(t for t in before if before[t] != after.get(t))


def leaf_paths(node, path=()):
    """Every path into a body: each key of each object and each list item, containers too."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key)
            yield from leaf_paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*path, i)
            yield from leaf_paths(value, (*path, i))


def object_paths(node, path=()):
    if isinstance(node, dict):
        yield path
        for key, value in node.items():
            yield from object_paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from object_paths(value, (*path, i))


def replaced(body, path, value):
    if not path:
        return value
    copy = dict(body) if isinstance(body, dict) else list(body)
    copy[path[0]] = replaced(body[path[0]], path[1:], value)
    return copy


def without(body, path):
    copy = dict(body) if isinstance(body, dict) else list(body)
    if len(path) == 1:
        del copy[path[0]]
    else:
        copy[path[0]] = without(body[path[0]], path[1:])
    return copy


class Sweep:
    """Sends requests, each in a savepoint: an accepted one is rolled back and remembered, a
    refused one must have left every table as it was (every row compared with the snapshot taken
    before the sweep whenever the database counted a row written)."""

    def __init__(self, client):
        self.client = client
        self.baseline = snapshot()
        self.failures = []
        self.accepted = []
        self.sent = 0

    def send(self, method, url, body=None, refuse=False, query=None):
        self.sent += 1
        written = rows_written()
        savepoint = transaction.savepoint()
        if method == "get":
            response = self.client.get(url, query or {})
        else:
            data = None if body is None else dumps(body)
            response = self.client.generic(method.upper(), url, data or "", content_type="application/json")
        status = response.status_code
        what = f"{method.upper()} {url} {query or ''} {repr(body)[:160] if body is not None else ''}"
        if status >= 500:
            transaction.savepoint_rollback(savepoint)
            error = response.exc_info[1] if getattr(response, "exc_info", None) else ""
            self.failures.append(f"{status} {what}: {error!r}"[:500])
            return response
        if status < 400:
            transaction.savepoint_rollback(savepoint)  # every request meets the same world
            if method != "get":
                self.accepted.append((method, url, body))
            if refuse:
                self.failures.append(f"accepted ({status}) but must be refused: {what}")
            return response
        transaction.savepoint_commit(savepoint)
        if rows_written() != written:  # something was written, maybe undone: compare every row
            changed = diff(self.baseline, snapshot())
            if changed:
                self.failures.append(f"refused ({status}) but changed {changed}: {what}")
                self.baseline = snapshot()
        return response


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def worlds(db, make_user, receiver):
    alice, bob, charlie = make_user("alice"), make_user("bob"), make_user("charlie")
    rita, ron = make_user("rita"), make_user("ron")
    mine = World("acme", alice, bob, "", receiver.url + "/hook")
    rival = World("rival", rita, ron, "rival-", receiver.url + "/rival")
    return mine, rival, token_client(alice, raise_request_exception=False)


@pytest.fixture
def quiet():
    """Thousands of 4xx would each log a warning."""
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def write_routes():
    return [(route, name, view, m) for route, name, view in api_routes() if route.startswith("api/v1/") for m in methods(view) if m in WRITE_METHODS]


def test_every_write_route_has_a_valid_body(worlds):
    mine, _, _ = worlds
    routes = {(name, method) for _, name, _, method in write_routes()}
    assert routes == set(valid_bodies(mine)), "give each new write route a valid body in valid_bodies()"


def test_hostile_bodies_on_every_write_route(worlds, quiet):
    mine, rival, client = worlds
    schema = Schema()
    sweep = Sweep(client)
    bodies = valid_bodies(mine)
    for route, name, _, method in write_routes():
        url = fill(route, mine)
        fields = schema.request_fields(route, method)
        base = bodies[(name, method)]
        reads_body = fields is not None
        assert reads_body == (base is not None), f"{method} {route}: the schema and valid_bodies() disagree on a body"
        for body in WHOLE_BODIES:
            is_refusal_case = body in MUST_REFUSE or body.text in ("NaN", '{"zzz_unknown": 1}')
            sweep.send(method, url, body, refuse=reads_body and is_refusal_case)
        if not reads_body:
            continue
        assert sweep.send(method, url, base).status_code < 400, f"the valid body of {method} {route} is refused"
        for extra in EXTRA_VALID.get((name, method), []):
            assert sweep.send(method, url, extra(mine)).status_code < 400, f"an extra valid body of {method} {route} is refused"
        swept = set()  # paths already swept for this route: extra bodies add only their own
        for candidate in [base, *(extra(mine) for extra in EXTRA_VALID.get((name, method), []))]:
            for path in leaf_paths(candidate):
                if path in swept:
                    continue
                swept.add(path)
                max_length = schema.node_at(fields, candidate, path).get("maxLength")
                in_metrics = len(path) == 4 and path[0] == "rows" and path[2] == "metrics"
                current = _at(candidate, path)
                values = [*MUST_REFUSE, *NON_FINITE]
                if schema.node_at(fields, candidate, path):  # a field the schema declares; the rest is free-form JSON
                    values += WRONG_TYPES
                    if isinstance(current, str):
                        values += oversized(max_length) + ([ONE_MB] if len(path) == 1 else [])
                if current in mine.names() or current in mine.ids():  # where the team's object is named
                    values += rival_values(rival)
                for value in values:
                    refuse = value in MUST_REFUSE or (value in NON_FINITE and not in_metrics)
                    sweep.send(method, url, replaced(candidate, path, value), refuse=refuse)
                sweep.send(method, url, without(candidate, path))
            for path in object_paths(candidate):
                if ("object", path) in swept:
                    continue
                swept.add(("object", path))
                typed = schema.declares_properties(fields, candidate, path)
                sweep.send(method, url, replaced(candidate, path, {**_at(candidate, path), "zzz_unknown": 1}), refuse=typed)
    assert not sweep.failures, f"{len(sweep.failures)} of {sweep.sent} requests:\n" + "\n".join(sweep.failures[:60])
    replay_and_read(sweep, mine, schema)


def _at(body, path):
    for key in path:
        body = body[key]
    return body


def replay_and_read(sweep, mine, schema):
    """The accepted hostile writes, stored for good: every GET route and page still answers."""
    for method, url, body in sweep.accepted:
        response = sweep.client.generic(method.upper(), url, dumps(body), content_type="application/json")
        assert response.status_code < 500, f"replaying {method} {url}: {response.status_code}"
    for route, _, view in api_routes():
        if view is not None and "get" in methods(view) and route.startswith("api/v1/"):
            response = sweep.client.get(fill(route, mine))
            assert response.status_code < 500, f"GET {route} after the accepted writes: {response.status_code}"
    page_client = APIClient(raise_request_exception=False)
    assert page_client.login(username="alice", password="alice-password")
    for route, name, view in api_routes():
        if not route.startswith(("api/", "admin/")) and name and name != "healthz":  # 503 without a worker is its answer
            response = page_client.get(fill(route, mine))
            assert response.status_code < 500, f"page {route} after the accepted writes: {response.status_code}"


QUERY_VALUES = ["", "-1", "0", "abc", "1" * 400, "1e999", "NaN", "a\x00b", "é" * 300, str(2**63), "1.5", "1,2,,3", "loss," * 200, "x" * 100_000]


def test_hostile_query_and_path_parameters_on_every_route(worlds, quiet):
    """GET with hostile query values; every method with another team's objects in the path."""
    mine, rival, client = worlds
    schema = Schema()
    sweep = Sweep(client)
    crossed = CrossedWorld(mine, rival)
    for route, name, view in api_routes():
        if view is None or not route.startswith("api/v1/"):
            continue
        url = fill(route, mine)
        if "get" in methods(view):
            for param in [*schema.query_params(route), "unknown"]:
                for value in QUERY_VALUES:
                    sweep.send("get", url, query={param: value})
        params = PARAM.findall(route)
        for world in (rival, crossed) if len(params) > 1 else (rival,) if params else ():
            for method in methods(view):
                body = valid_bodies(mine).get((name, method))
                response = sweep.send(method, fill(route, world), body)
                assert response.status_code in (403, 404), f"{method.upper()} {fill(route, world)}: {response.status_code}"
    assert not sweep.failures, f"{len(sweep.failures)} of {sweep.sent} requests:\n" + "\n".join(sweep.failures[:60])
    assert not diff(sweep.baseline, snapshot())


class CrossedWorld:
    """The caller's team in the path, with another team's objects after it."""

    def __init__(self, mine, rival):
        self.mine, self.rival = mine, rival

    def by_segment(self):
        return {**self.rival.by_segment(), "teams": self.mine.team.name}

    def by_name(self):
        return {**self.rival.by_name(), "team": self.mine.team.name}


def changed(value):
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, "x"]
    if isinstance(value, dict):
        return {**value, "x": 1}
    return "x"


def test_read_only_fields_are_never_applied(worlds, quiet):
    """Each field a write route answers with but does not take (`id`, `created_at`, a run's
    `config` on PATCH, `signing_secret`, …) is refused with a 400 naming it, storing nothing."""
    mine, _, client = worlds
    schema = Schema()
    sweep = Sweep(client)
    refused = []
    for route, name, _, method in write_routes():
        fields = schema.request_fields(route, method)
        if fields is None:
            continue
        url, base = fill(route, mine), valid_bodies(mine)[(name, method)]
        answer = sweep.send(method, url, base).json()
        for key in [k for k in answer if k not in fields] if isinstance(answer, dict) else []:
            response = sweep.send(method, url, {**base, key: changed(answer[key])}, refuse=True)
            assert response.status_code != 400 or key in response.json(), f"{method} {route}: the 400 does not name {key}"
            refused.append(f"{name} {method} {key}")
    assert not sweep.failures, "\n".join(sweep.failures)
    assert {"api-run patch id", "api-run patch config", "api-runs post state", "api-automation patch id"} <= set(refused)


def test_every_text_a_write_takes_has_a_maximum_length(db):
    """Every string field of every request body declares its maximum length (the API refuses
    longer ones, so a column limit is never met first, and the limit is documented)."""
    schema = Schema()
    unbounded = []

    def walk(node, where):
        node = schema.resolve(node)
        if node.get("readOnly"):
            return
        if node.get("type") == "string" and "enum" not in node and "maxLength" not in node:
            unbounded.append(where)
        for key, child in node.get("properties", {}).items():
            walk(child, f"{where}.{key}")
        for child in node.get("oneOf", []) + node.get("allOf", []):
            walk(child, where)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{where}[]")

    for route, _, _, method in write_routes():
        body = (schema.operation(route, method) or {}).get("requestBody")
        if body:
            walk(body["content"]["application/json"]["schema"], f"{method.upper()} {route}")
    assert not unbounded


def test_the_write_count_sees_writes_even_when_rolled_back(worlds):
    """The sweep compares every row only when this count moves: it must move on any write."""
    mine, _, _ = worlds
    for write in (lambda: mine.team.projects.create(name="counted"), lambda: Run.objects.filter(pk=mine.run.pk).update(name="x"),
                  lambda: Event.objects.filter(pk=mine.execution.event_id).delete()):
        before = rows_written()
        savepoint = transaction.savepoint()
        write()
        transaction.savepoint_rollback(savepoint)
        assert rows_written() > before
