"""Reading MLflow's requests as its protobuf JSON mapping does, and writing its responses.

Every endpoint declares its request message as a spec: field name -> a scalar type, an `Enum`,
a nested spec (a message) or `[spec]` (a repeated field). Values are checked the way protobuf's
JSON parser checks them (int64 as a number or a string of digits, doubles as numbers or "NaN",
"Infinity", "-Infinity"); unknown fields are ignored, as MLflow's server does; null is absent.
Anything else is MLflow's INVALID_PARAMETER_VALUE naming the field, never a 500.
"""

import json
import math

from django.http import RawPostDataException
from django.core.exceptions import RequestDataTooBig

from .errors import invalid

STRING, INT64, INT32, DOUBLE, BOOL = "string", "int64", "int32", "double", "bool"
LIMITS = {INT64: 2**63, INT32: 2**31}
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class Enum:
    def __init__(self, *names, first=1):
        self.names = names
        self.numbers = {number: name for number, name in enumerate(names, start=first)}


def parse_request(request, spec):
    """The request's message as a dict of the fields present."""
    if request.method == "GET":
        raw = {}
        for name, kind in spec.items():
            if isinstance(kind, list):
                values = request.GET.getlist(name)
                if values:
                    raw[name] = values
            elif name in request.GET:
                raw[name] = request.GET[name]
        return parse_message(raw, spec, "", query=True)
    try:
        body = request.body
    except RequestDataTooBig:
        raise invalid("The request body is too large.") from None
    except RawPostDataException:  # pragma: no cover - the body was streamed elsewhere
        body = b""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, too deep, a too long integer
        raise invalid("The request body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.")
    return parse_message(data, spec, "")


def parse_message(data, spec, path, query=False):
    if not isinstance(data, dict):
        raise invalid(f"Invalid value for {path or 'the request'}: expected an object.")
    out = {}
    for name, kind in spec.items():
        value = data.get(name)
        if value is None:
            continue
        where = f"{path}.{name}" if path else name
        if isinstance(kind, list):
            if not isinstance(value, list):
                raise invalid(f"Invalid value for {where}: expected a list.")
            out[name] = [parse_value(item, kind[0], f"{where}[{i}]", query) for i, item in enumerate(value) if item is not None]
        else:
            out[name] = parse_value(value, kind, where, query)
    return out


def parse_value(value, kind, where, query=False):
    if kind == STRING and type(value) is str:  # the common case first: batches hold thousands
        return clean_string(value, where)
    if isinstance(kind, dict):
        return parse_message(value, kind, where)
    if isinstance(kind, Enum):
        if isinstance(value, str) and value in kind.names:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value in kind.numbers:
            return kind.numbers[value]
        raise invalid(f"Invalid value for {where}: expected one of {', '.join(kind.names)}.")
    if kind == STRING:
        if not isinstance(value, str):
            raise invalid(f"Invalid value for {where}: expected a string.")
        return clean_string(value, where)
    if kind in LIMITS:
        number = value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 30:
            number = int(value)
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if not isinstance(number, int) or isinstance(number, bool) or not -LIMITS[kind] <= number < LIMITS[kind]:
            raise invalid(f"Invalid value for {where}: expected a {kind[-2:]}-bit integer.")
        return number
    if kind == DOUBLE:
        if isinstance(value, str):
            if value in NON_FINITE:
                return NON_FINITE[value]
            try:
                value = float(value) if len(value) < 400 else None
            except ValueError:
                value = None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid(f"Invalid value for {where}: expected a number.")
        try:
            return float(value)
        except OverflowError:
            raise invalid(f"Invalid value for {where}: the number is out of range.") from None
    if kind == BOOL:
        if query and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise invalid(f"Invalid value for {where}: expected true or false.")
        return value
    raise AssertionError(kind)


def clean_string(value, where):
    """Text every database can store: no NUL, no lone surrogate (which UTF-8 cannot encode)."""
    if "\x00" in value:
        raise invalid(f"Invalid value for {where}: text cannot contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"Invalid value for {where}: text must be valid Unicode.") from None
    return value


def number_out(value):
    """A double as MLflow's JSON writes it: non-finite values as "NaN", "Infinity", "-Infinity"."""
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


KV = {"key": STRING, "value": STRING}
METRIC = {
    "key": STRING,
    "value": DOUBLE,
    "timestamp": INT64,
    "step": INT64,
    "dataset_name": STRING,
    "dataset_digest": STRING,
    "model_id": STRING,
    "run_id": STRING,
}
VIEW_TYPE = Enum("ACTIVE_ONLY", "DELETED_ONLY", "ALL")
RUN_STATUS = Enum("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
LOGGED_MODEL_STATUS = Enum(
    "LOGGED_MODEL_STATUS_UNSPECIFIED", "LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED", first=0
)
