"""One door for everything under /mlflow/<team>/: authenticate, find the team and the endpoint,
check the role, parse the request, and answer in MLflow's shapes and error codes."""

import base64
import binascii
import logging
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import DatabaseError, IntegrityError, transaction
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from rest_framework.authtoken.models import Token

from teams.context import CAUSE_HEADER, acting_as
from teams.models import ROLE_RANK, Role, Team

from . import artifacts, experiments, logged_models, registry, runs  # noqa: F401 (they register their endpoints)
from .errors import MlflowError, invalid
from .protocol import clean_string, parse_request
from .routing import endpoint, resolve

logger = logging.getLogger(__name__)


@dataclass
class Call:
    """What a handler gets: who calls, in which team, with which request and parsed message."""

    request: object
    user: User
    team: Team
    role: str
    data: dict


def authenticate(request):
    """The user of a Tripline API token sent as `Bearer <token>` (MLFLOW_TRACKING_TOKEN) or as
    the password of HTTP Basic (MLFLOW_TRACKING_USERNAME/PASSWORD); `Token <token>` works too."""
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    scheme, credentials, username = scheme.lower(), credentials.strip(), None
    if scheme == "basic":
        try:
            username, _, credentials = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            credentials = ""
    elif scheme not in ("bearer", "token"):
        credentials = ""
    if not credentials or len(credentials) > 128 or "\x00" in credentials:  # Basic's password may decode to NUL, which PostgreSQL's text refuses
        raise MlflowError("UNAUTHENTICATED", "Authenticate with a Tripline API token: set MLFLOW_TRACKING_TOKEN.")
    token = Token.objects.select_related("user").filter(key=credentials).first()
    if token is None or not token.user.is_active or (username is not None and username != token.user.username):
        raise MlflowError("UNAUTHENTICATED", "The token is not valid.")
    return token.user


def team_of(user, name):
    team = Team.objects.filter(name=name).first()
    role = team.role_of(user) if team else None
    if role is None:
        # Outsiders learn nothing, not even that the team exists: MLflow's not-found error.
        raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"No MLflow tracking server at team '{name[:100]}' for this user.")
    return team, role


@endpoint("GET", "api/3.0/mlflow/server-info")
def server_info(call):
    """What the client asks before it uploads: no multipart or presigned transfers, so it sends
    each file whole (streamed) through the artifacts endpoint."""
    return {
        "store_type": "SqlStore",
        "workspaces_enabled": False,
        "trace_archival_enabled": False,
        "multipart_uploads_enabled": False,
        "multipart_downloads_enabled": False,
        "presigned_upload_run_id_supported": False,
        "presigned_upload_model_id_supported": False,
        "features_enabled": {"gateway": False},
    }


@csrf_exempt
def serve(request, team, path):
    try:
        return _serve(request, team, path)
    except MlflowError as error:
        return error.response()


def _serve(request, team_name, path):
    route, args = resolve(request.method, path)
    if route is None:
        message = f"{request.method} {path[:200]} is not an MLflow endpoint Tripline serves."
        if args:
            message += f" It takes {', '.join(sorted(set(args)))}."
        raise MlflowError("ENDPOINT_NOT_FOUND", message)
    user = authenticate(request)
    team, role = team_of(user, team_name)
    needed = Role.MEMBER if route.write else Role.VIEWER
    if ROLE_RANK[role] < ROLE_RANK[needed]:
        raise MlflowError("PERMISSION_DENIED", f"This needs the {needed} role in team {team.name}; you are {role}.")
    args = {name: clean_string(value, name) for name, value in args.items()}
    data = parse_request(request, route.spec) if route.spec else {}
    call = Call(request=request, user=user, team=team, role=role, data=data)
    with acting_as(user, request.META.get(CAUSE_HEADER, "")):
        try:
            if route.write:
                with transaction.atomic():
                    result = route.handler(call, **args)
            else:
                result = route.handler(call, **args)
        except ValidationError as error:
            raise invalid(" ".join(error.messages)) from None
        except IntegrityError:
            # A unique constraint lost a race with a concurrent request for the same name.
            raise MlflowError("RESOURCE_ALREADY_EXISTS", "This conflicts with an object another request just created; try again.") from None
        except DatabaseError as error:
            logger.exception("mlflow %s %s failed", request.method, path)
            raise MlflowError("INTERNAL_ERROR", f"The database refused the request: {type(error).__name__}.") from None
    if isinstance(result, HttpResponseBase):
        return result
    return JsonResponse(result if result is not None else {}, json_dumps_params={"allow_nan": False})
