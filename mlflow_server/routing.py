"""The table of MLflow endpoints Tripline serves: (method, path pattern) -> handler."""

import re
from dataclasses import dataclass


@dataclass
class Endpoint:
    method: str
    pattern: re.Pattern
    handler: object
    spec: dict
    write: bool  # needs the member role; reads need viewer


ROUTES = []


def endpoint(method, path, spec=None, write=None):
    """Register a handler for `method path` (relative to /mlflow/<team>/). `{name}` matches one
    path segment and `{name:path}` the rest of the path; both reach the handler as arguments."""

    def pattern(path):
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", path)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        return re.compile(regex)

    def register(handler):
        ROUTES.append(Endpoint(method, pattern(path), handler, spec or {}, method != "GET" if write is None else write))
        return handler

    return register


def resolve(method, path):
    """(endpoint, path arguments), or (None, allowed methods) when the path is not served."""
    allowed = []
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match:
            if route.method == method:
                return route, match.groupdict()
            allowed.append(route.method)
    return None, allowed
