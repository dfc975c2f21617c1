"""The edge of the REST API: what every request goes through before a view or serializer acts.

Each check here stands for a class of input that once reached the database or the renderer and
answered 500, or was stored and broke every later read of the team:

- `JSONParser` (every body): nesting deeper than `MAX_DEPTH`, lone surrogates and NUL in any
  string or key, numbers beyond the range of a 64-bit float, and the `NaN`/`Infinity` literals
  outside metric history. Refused with a 400 that names where.
- `Pagination` (every list): `limit` and `offset` are whole numbers; `limit` above `MAX_LIMIT`
  is read as `MAX_LIMIT`.
- `PlainURL` (every view, among the permission checks that precede any lookup): no path or
  query value holds a control character (PostgreSQL cannot even compare text with NUL).
- `Serializer` and `ModelSerializer` (every API serializer): a body field the serializer does not
  write (read-only like `id`, or unknown) is refused, and `Meta.read_only_fields` also covers
  declared fields, which DRF silently leaves writable.
"""

import codecs
import json
import math
import re
import sys

import orjson
from django.conf import settings
from django.http import Http404
from rest_framework import parsers, permissions, serializers
from rest_framework.exceptions import ParseError
from rest_framework.pagination import LimitOffsetPagination

MAX_DEPTH = 32
MAX_LIMIT = 1000
MAX_OFFSET = 2**62

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# Only a body with one of these can hold a value the checks below refuse; others skip the walk.
ESCAPED_NUL_OR_SURROGATE = re.compile(rb"\\u(?:0000|[dD][89abAB]|[dD][c-fC-F])")
# A body may hold a number beyond a 64-bit float only if it has a run of 19 digits or an exponent
# of 3 digits (the regex `\d{19,}|[eE][+-]?\d{3,}`). Tested as substrings once digits, `E` and
# `+` are mapped to `0`, `e` and `-`: 0.3 ms for a 100 kB history batch where the regex took
# 4–9 ms, twice json.loads itself.
_NUMBER_SHAPE = bytes.maketrans(b"123456789E+", b"000000000e-")
_LONG_DIGITS = b"0" * 19


def might_hold_a_long_number(body):
    shape = body.translate(_NUMBER_SHAPE)
    return _LONG_DIGITS in shape or b"e000" in shape or b"e-000" in shape


class _OutOfRange:
    """A JSON number no 64-bit float can hold (`1e999`, a 400-digit integer), kept as written so
    that the walk can name where it was."""

    def __init__(self, text):
        self.text = text


def _parse_float(text):
    value = float(text)
    return value if math.isfinite(value) else _OutOfRange(text)


def _parse_int(text):
    # Python refuses to read more than 4,300 digits; anything past 309 is out of range anyway.
    if len(text) > 320:
        return _OutOfRange(text)
    value = int(text)
    return value if abs(value) <= sys.float_info.max else _OutOfRange(text)


def _where(path):
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path)) or "the body"


def shown(text, limit=40):
    return text if len(text) <= limit else text[:limit] + "…"


def _text_problem(text):
    if "\x00" in text:
        return "text cannot contain the NUL character (\\u0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "text holds a lone surrogate (\\ud800–\\udfff); send valid Unicode"
    return None


NON_FINITE_REFUSED = "NaN and Infinity are accepted only as metric values in history"


def _scalar_problem(value, strings, non_finite_allowed):
    kind = type(value)
    if kind is str:
        return _text_problem(value) if strings else None
    if kind is float:
        if not non_finite_allowed and not math.isfinite(value):
            return NON_FINITE_REFUSED
    elif kind is _OutOfRange:
        return f"the number {shown(value.text)} is beyond the range of a 64-bit float"
    return None


def find_problem(data, *, strings=True, non_finite_allowed=False):
    """The first value of parsed JSON that must not be stored, as (path, message), or None.

    Iterative, so that depth is checked before anything recurses into the value; scalars are
    checked in their container's loop and paths kept as parent links, spelled out only for the
    value refused (a 10,000-row history batch is walked in a few milliseconds)."""
    if type(data) not in (dict, list):
        problem = _scalar_problem(data, strings, non_finite_allowed)
        return (None, problem) if problem else None
    stack = [(data, 1, None)]
    while stack:
        container, depth, link = stack.pop()
        if depth > MAX_DEPTH:
            return link, f"nested more than {MAX_DEPTH} levels deep"
        is_dict = type(container) is dict
        for key, item in container.items() if is_dict else enumerate(container):
            if strings and is_dict:
                problem = _text_problem(key)
                if problem:
                    return link, f"a key's {problem}"  # the key itself is not shown: it cannot be rendered
            kind = type(item)
            if kind is dict or kind is list:
                stack.append((item, depth + 1, (link, key)))
            elif kind is float:
                if not non_finite_allowed and not math.isfinite(item):
                    return (link, key), NON_FINITE_REFUSED
            elif kind is str and strings or kind is _OutOfRange:
                problem = _scalar_problem(item, strings, non_finite_allowed)
                if problem:
                    return (link, key), problem
    return None


def _unlink(link):
    path = []
    while link is not None:
        link, key = link
        path.append(key)
    return path[::-1]


def refusal(data, root, *, non_finite_allowed=False):
    """Why parsed JSON under `root` must not be stored (`root.a[0]: …`), or None: for JSON that
    reaches the database by another door than the parser below (an admin form's JSON text)."""
    found = find_problem(data, non_finite_allowed=non_finite_allowed)
    return f"{_where([root, *_unlink(found[0])])}: {found[1]}." if found else None


_SLOW = object()
_UTF8 = codecs.lookup("utf-8").name


def _fast_loads(body, encoding):
    """The body parsed by orjson (twice as fast as json on a 100 kB history batch), or _SLOW for
    a body it would read otherwise than `_loads` does, or refuses: one not in UTF-8, or one with
    a run of 19 digits (orjson reads an integer past 64 bits as a float). orjson refuses a
    number past a float's range and the `NaN`/`Infinity` literals, and rounds a tiny one to 0.0
    as json does: those bodies need no look of their own. Any body orjson refuses is parsed
    again by `_loads`, whose errors are the ones the API gives (a lone surrogate, the nesting,
    the position of a syntax error). Both read a float as the nearest double."""
    try:
        if codecs.lookup(encoding).name != _UTF8:
            return _SLOW
    except LookupError:
        return _SLOW
    if _LONG_DIGITS in body.translate(_NUMBER_SHAPE):
        return _SLOW
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _SLOW


# Deletes all but the brackets and quotes, read as braces: the shape of the nesting.
_NESTING = bytes.maketrans(b"[]", b"{}"), bytes(set(range(256)) - set(b'{}[]"'))


def nests_within(body, limit):
    """Whether valid JSON text `body` with no backslash nests at most `limit` containers deep,
    from its bytes, without walking what it parsed to (0.1 ms for a 100 kB history batch, where
    the walk took 0.7): once its strings are gone (each is `""` when only brackets and quotes are
    kept; one holding a bracket is left to the walk), each pass that drops every `{}` takes one
    level off. False when it cannot tell."""
    shape = body.translate(*_NESTING).replace(b'""', b"")
    if b'"' in shape:
        return False
    for _ in range(limit):
        if not shape:
            return True
        shape = shape.replace(b"{}", b"")
    return not shape


def _loads(body, encoding, long_numbers):
    try:
        text = body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise ParseError(f"The body is not valid {encoding} text.") from None
    hooks = {"parse_float": _parse_float, "parse_int": _parse_int} if long_numbers else {}
    try:
        return json.loads(text, parse_constant=NON_FINITE.__getitem__, **hooks)
    except RecursionError:
        raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep.") from None
    except ValueError as exc:
        raise ParseError(f"JSON parse error - {exc}") from None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the edge checks of this module; `NaN` and `Infinity` are refused."""

    non_finite_allowed = False

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        body = stream.read()
        data = _fast_loads(body, encoding)
        if data is _SLOW:
            data = _loads(body, encoding, might_hold_a_long_number(body))
        elif b"\\" not in body and nests_within(body, MAX_DEPTH):
            # all the walk could refuse in what orjson read: without an escape no string holds
            # NUL or a lone surrogate, and orjson read no number out of range nor NaN/Infinity
            return data
        found = find_problem(data, strings=bool(ESCAPED_NUL_OR_SURROGATE.search(body)), non_finite_allowed=self.non_finite_allowed)
        if found:
            path = _unlink(found[0])
            field = shown(path[0]) if path and isinstance(data, dict) else "detail"
            raise serializers.ValidationError({field: [f"{_where(path)}: {found[1]}."]})
        return data


class MetricJSONParser(JSONParser):
    """For metric history, where SPEC.md §2 keeps NaN and ±Infinity as logged."""

    non_finite_allowed = True


class Pagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def _whole_number(self, request, name, low, high, message):
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return None
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 100 or not low <= int(raw) <= high:
            raise serializers.ValidationError({name: [message]})
        return int(raw)

    def get_limit(self, request):
        message = f"Must be a whole number from 1; more than {self.max_limit} reads as {self.max_limit}."
        limit = self._whole_number(request, self.limit_query_param, 1, math.inf, message)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request):
        message = f"Must be a whole number from 0 to {MAX_OFFSET}."
        return self._whole_number(request, self.offset_query_param, 0, MAX_OFFSET, message) or 0

    def get_schema_operation_parameters(self, view):
        limit, offset = super().get_schema_operation_parameters(view)
        limit["description"] = f"Number of results to return per page (at most {MAX_LIMIT}; more is read as {MAX_LIMIT})."
        limit["schema"].update(minimum=1)
        offset["schema"].update(minimum=0, maximum=MAX_OFFSET)
        return [limit, offset]


CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


class PlainURL(permissions.BasePermission):
    """A name with a control character exists nowhere (404), and a query value with one is
    refused (400), before either reaches a lookup."""

    def has_permission(self, request, view):
        if any(isinstance(v, str) and CONTROL_CHARACTER.search(v) for v in view.kwargs.values()):
            raise Http404
        for name, values in request.query_params.lists():
            if CONTROL_CHARACTER.search(name) or any(CONTROL_CHARACTER.search(v) for v in values):
                raise serializers.ValidationError({shown(CONTROL_CHARACTER.sub("?", name)): ["Query values cannot hold control characters."]})
        return True


class WritableFieldsOnly:
    """Refuses body fields the serializer does not write, naming the ones it does: a script that
    sends `id` to rename, or `stat` for `state`, learns it instead of being ignored."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = [name for name, field in self.fields.items() if not field.read_only]
            refused = [key for key in data if key not in writable]
            if refused:
                message = f"Not a field this request writes; it takes {', '.join(writable) or 'no fields'}."
                raise serializers.ValidationError({shown(key): [message] for key in refused})
        return super().to_internal_value(data)


class Serializer(WritableFieldsOnly, serializers.Serializer):
    pass


class ModelSerializer(WritableFieldsOnly, serializers.ModelSerializer):
    def get_fields(self):
        # DRF applies read_only_fields only to the fields it builds, not to declared ones.
        fields = super().get_fields()
        for name in getattr(self.Meta, "read_only_fields", ()):
            if name in fields:
                fields[name].read_only = True
                fields[name].required = False
        return fields
