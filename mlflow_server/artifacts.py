"""Artifacts served by Tripline itself (`mlflow-artifacts:/…` locations, as `mlflow server
--serve-artifacts`): files live in Django's default storage under `mlflow/<team id>/`, streamed
in and out in chunks, never read whole into memory."""

import mimetypes
import posixpath

from django.core.files import File
from django.core.files.storage import default_storage
from django.http import FileResponse

from .errors import invalid, missing
from .protocol import STRING, clean_string
from .routing import endpoint
from .runs import artifact_uri, run_of

MAX_PATH = 1024


def safe_path(path, what="path", allow_empty=False):
    """A relative path that stays inside its root: no absolute path, no `..`, no `.`, no empty
    segment, no backslash (MLflow's validate_path_is_safe refuses the same), and names a file
    system can hold (255 bytes a segment)."""
    path = clean_string(path or "", what)
    if not path:
        if allow_empty:
            return ""
        raise invalid(f"Missing value for required parameter '{what}'.")
    if len(path) > MAX_PATH or path.startswith("/") or "\\" in path or "%" in path or any(ord(c) < 32 for c in path):
        raise invalid(f"Invalid path '{path[:200]}': it must be a relative path inside the artifact root.")
    parts = path.rstrip("/").split("/")
    if any(part in ("", ".", "..") or part.startswith("~") or len(part.encode()) > 255 for part in parts) or parts[0].endswith(":"):
        raise invalid(f"Invalid path '{path[:200]}': it must be a relative path inside the artifact root.")
    return "/".join(parts)


def storage_name(team, path):
    return f"mlflow/{team.pk}/{path}" if path else f"mlflow/{team.pk}"


def listing(team, path):
    """[(name, is_dir, size)] in the directory `path` of the team's artifacts."""
    root = storage_name(team, path)
    try:
        dirs, files = default_storage.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = [(d, True, None) for d in sorted(dirs)]
    out += [(f, False, default_storage.size(f"{root}/{f}")) for f in sorted(files)]
    return out


def file_infos(team, root, path=""):
    """MLflow FileInfo messages for the directory `path` under `root`, paths relative to root."""
    where = "/".join(p for p in (root, path) if p)
    return [
        {"path": posixpath.join(path, name) if path else name, "is_dir": is_dir, **({"file_size": size} if not is_dir else {})}
        for name, is_dir, size in listing(team, where)
    ]


def delete_tree(team, path):
    name = storage_name(team, path)
    for entry, is_dir, _ in listing(team, path):
        if is_dir:
            delete_tree(team, f"{path}/{entry}")
        else:
            default_storage.delete(f"{name}/{entry}")
    if default_storage.exists(name):
        try:
            default_storage.delete(name)
        except OSError:
            pass  # a directory that still holds something: left as it is


@endpoint("PUT", "api/2.0/mlflow-artifacts/artifacts/{path:path}")
def upload(call, path):
    name = storage_name(call.team, safe_path(path))
    if default_storage.exists(name):
        if listing(call.team, safe_path(path)):
            raise invalid(f"'{path[:200]}' is a directory.")
        default_storage.delete(name)  # MLflow overwrites a file logged again under the same path
    saved = default_storage.save(name, File(call.request, name=posixpath.basename(name)))
    if saved != name:  # a concurrent upload took the name first; keep that one
        default_storage.delete(saved)
    return {}


@endpoint("GET", "api/2.0/mlflow-artifacts/artifacts/{path:path}")
def download(call, path):
    name = storage_name(call.team, safe_path(path))
    try:
        handle = default_storage.open(name, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        raise missing(f"Artifact '{path[:200]}' not found.") from None
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return FileResponse(handle, content_type=content_type, as_attachment=False, filename=posixpath.basename(name))


@endpoint("GET", "api/2.0/mlflow-artifacts/artifacts", {"path": STRING})
def list_artifacts(call):
    path = safe_path(call.data.get("path"), allow_empty=True)
    return {"files": [
        {"path": name, "is_dir": is_dir, **({"file_size": size} if not is_dir else {})}
        for name, is_dir, size in listing(call.team, path)
    ]}


@endpoint("DELETE", "api/2.0/mlflow-artifacts/artifacts/{path:path}")
def delete(call, path):
    delete_tree(call.team, safe_path(path))
    return {}


@endpoint("GET", "api/2.0/mlflow/artifacts/list", {"run_id": STRING, "run_uuid": STRING, "path": STRING, "page_token": STRING})
def list_run_artifacts(call):
    """The tracking API's listing of a run's artifacts (paths relative to the run's root)."""
    run = run_of(call, call.data)
    root = artifact_uri(run).removeprefix("mlflow-artifacts:/")
    path = safe_path(call.data.get("path"), allow_empty=True)
    return {"root_uri": artifact_uri(run), "files": file_infos(call.team, root, path)}
