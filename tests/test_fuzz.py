"""Every operation of the OpenAPI schema, fuzzed by schemathesis: bad input never gives a 500.

Path parameters point at real objects, so the generated bodies and queries reach the views."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.authtoken.models import Token

from config.wsgi import application
from tracking.models import ArtifactCollection, Run, create_version

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)

REAL = {"team": "acme", "project": "vision", "run": "r1", "name": "mnist", "registry": "models", "collection": "clf",
        "version": "v0", "alias": "latest", "tag": "t", "username": "bob", "pk": 1}


@pytest.fixture
def keep_connection():
    """Calling the WSGI app directly would close the test's database connection at the end of
    each request (inside the test transaction); Django's test client disconnects this too."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(db, keep_connection, team, project, registry, alice):

    Run.objects.create(project=project, run_id="r1", name="r1")
    version = create_version(ArtifactCollection.objects.create(team=team, project=project, name="mnist", type="model"), tags=["t"])
    clf = ArtifactCollection.objects.create(team=team, registry=registry, name="clf", type="model")
    create_version(clf, source=version)
    return Token.objects.create(user=alice).key


def call(case, token):
    for key in case.path_parameters or {}:
        if key in REAL:
            case.path_parameters[key] = REAL[key]
    if case.method.upper() == "DELETE":
        return  # deleting the fixtures would only make the other examples 404
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=[not_a_server_error])


FUZZ = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@schema.parametrize()
@settings(max_examples=12, **FUZZ)
def test_no_operation_answers_500(case, world):
    call(case, world)


# Automation writes take the richest bodies (scope, event and action: one variant per type, with a
# discriminator): more examples there, where they are cheap.
@schema.include(path_regex=r"/automations/(\{id\}/)?$", method=["POST", "PATCH"]).parametrize()
@settings(max_examples=40, **FUZZ)
def test_automation_writes_never_answer_500(case, world):
    call(case, world)
