"""MLflow's search grammar, answered by the database.

A filter is comparisons joined by AND: `metrics.loss < 0.5 AND params.lr = '0.1' AND
tags."my tag" LIKE 'a%' AND attributes.status IN ('FINISHED', 'FAILED')`. Keys may be bare
(dots allowed: `tags.mlflow.runName`), "double-quoted" or `backquoted`. Each search endpoint
turns the parsed comparisons into queryset conditions on its own fields; `order_by` entries are
`<identifier> [ASC|DESC]`; pages are MLflow's offset tokens.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db.models import F, Lookup, Q, Value

from .errors import invalid

TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.|'')*')
      | (?P<quoted>"(?:[^"\\]|\\.)*"|`[^`]*`)
      | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<op>>=|<=|!=|<>|=|<|>|\(|\)|,)
      | (?P<word>[A-Za-z_][\w]*(?:\.(?:"(?:[^"\\]|\\.)*"|`[^`]*`|[\w.\-/:]+))?)
    )""",
    re.VERBOSE,
)
ENTITIES = {
    "metric": "metric", "metrics": "metric",
    "param": "param", "params": "param", "parameter": "param", "parameters": "param",
    "tag": "tag", "tags": "tag",
    "attribute": "attribute", "attributes": "attribute", "attr": "attribute", "run": "attribute",
    "dataset": "dataset", "datasets": "dataset",
}
STRING_OPS = {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"}
NUMBER_OPS = {"=", "!=", "<", "<=", ">", ">="}
NULL_OPS = {"IS NULL", "IS NOT NULL"}
MAX_FILTER = 4000


@dataclass
class Comparison:
    entity: str  # metric, param, tag, attribute (a key without a prefix), dataset
    key: str
    op: str
    value: object  # str, float, a tuple of str for IN, None for IS [NOT] NULL


def _unquote(text):
    if text[0] == "`":
        return text[1:-1]
    if text[0] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return re.sub(r"\\(.)|''", lambda m: m.group(1) or "'", text[1:-1])


def _identifier(text):
    if "." not in text:
        return "attribute", text
    prefix, key = text.split(".", 1)
    entity = ENTITIES.get(prefix.lower())
    if entity is None:
        raise invalid(f"Invalid entity type '{prefix}'. Valid values are metrics, params, tags, attributes.")
    if key[:1] in "\"`":
        key = _unquote(key)
    if not key:
        raise invalid(f"Invalid identifier '{text}': a key is missing.")
    return entity, key


def _tokens(text):
    tokens, pos = [], 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            if text[pos:].strip() == "":
                break
            raise invalid(f"Invalid filter '{text[:200]}': cannot read from '{text[pos:pos + 20]}'.")
        pos = match.end()
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
    return tokens


def parse_filter(text):
    """The comparisons of a filter string (an empty filter has none)."""
    if not text or not text.strip():
        return []
    if len(text) > MAX_FILTER:
        raise invalid(f"The filter is longer than {MAX_FILTER} characters.")
    tokens = _tokens(text)
    comparisons, i = [], 0

    def peek(offset=0):
        return tokens[i + offset] if i + offset < len(tokens) else (None, None)

    def word(offset=0, *options):
        kind, value = peek(offset)
        return kind == "word" and value.upper() in options

    def value_at(position):
        kind, value = tokens[position] if position < len(tokens) else (None, None)
        if kind == "string" or kind == "quoted":
            return _unquote(value)
        if kind == "number":
            return float(value)
        raise invalid(f"Invalid filter '{text[:200]}': expected a value after the comparator.")

    while True:
        kind, value = peek()
        if kind == "quoted":  # a bare quoted key: an attribute
            entity, key = "attribute", _unquote(value)
        elif kind == "word":
            entity, key = _identifier(value)
        else:
            raise invalid(f"Invalid filter '{text[:200]}': expected an identifier such as metrics.loss.")
        i += 1
        kind, value = peek()
        if kind == "op" and value in ("=", "!=", "<>", "<", "<=", ">", ">="):
            op = "!=" if value == "<>" else value
            comparisons.append(Comparison(entity, key, op, value_at(i + 1)))
            i += 2
        elif word(0, "LIKE", "ILIKE"):
            comparisons.append(Comparison(entity, key, value.upper(), value_at(i + 1)))
            i += 2
        elif word(0, "IS"):
            negate = word(1, "NOT")
            if not word(2 if negate else 1, "NULL"):
                raise invalid(f"Invalid filter '{text[:200]}': expected IS NULL or IS NOT NULL.")
            comparisons.append(Comparison(entity, key, "IS NOT NULL" if negate else "IS NULL", None))
            i += 3 if negate else 2
        elif word(0, "IN") or (word(0, "NOT") and word(1, "IN")):
            op = "IN" if word(0, "IN") else "NOT IN"
            i += 1 if op == "IN" else 2
            if peek() != ("op", "("):
                raise invalid(f"Invalid filter '{text[:200]}': IN takes a list in parentheses, e.g. ('a', 'b').")
            i += 1
            values = []
            while True:
                kind, item = peek()
                if kind not in ("string", "quoted"):
                    raise invalid(f"Invalid filter '{text[:200]}': IN takes quoted strings.")
                values.append(_unquote(item))
                i += 1
                if peek() == ("op", ","):
                    i += 1
                    continue
                if peek() == ("op", ")"):
                    i += 1
                    break
                raise invalid(f"Invalid filter '{text[:200]}': the list after IN is not closed.")
            comparisons.append(Comparison(entity, key, op, tuple(values)))
        else:
            raise invalid(f"Invalid filter '{text[:200]}': expected a comparator after '{key[:100]}'.")
        if peek() == (None, None):
            return comparisons
        if not word(0, "AND"):
            raise invalid(f"Invalid filter '{text[:200]}': comparisons are joined by AND (OR is not supported).")
        i += 1


def parse_order_by(entries, max_entries=10):
    """[(entity, key, ascending)] from entries like `metrics.loss DESC`."""
    out = []
    for entry in entries[:max_entries]:
        text = entry.strip()
        match = re.fullmatch(r"(.+?)(?:\s+(ASC|DESC))?", text, re.IGNORECASE | re.DOTALL)
        tokens = _tokens(match.group(1)) if text else []
        if len(tokens) != 1 or tokens[0][0] not in ("word", "quoted"):
            raise invalid(f"Invalid order_by clause '{entry[:200]}'.")
        kind, value = tokens[0]
        entity, key = ("attribute", _unquote(value)) if kind == "quoted" else _identifier(value)
        out.append((entity, key, (match.group(2) or "ASC").upper() == "ASC"))
    if len(entries) > max_entries:
        raise invalid(f"At most {max_entries} order_by clauses.")
    return out


class Like(Lookup):
    """LIKE with MLflow's case-sensitive meaning: SQLite's own LIKE ignores case, so there it
    is GLOB with the pattern translated."""

    lookup_name = "mlflow_like"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "sqlite":
            return f"{lhs} GLOB {rhs}", (*lhs_params, *[like_to_glob(p) for p in rhs_params])
        return f"{lhs} LIKE {rhs}", (*lhs_params, *rhs_params)


class ILike(Lookup):
    lookup_name = "mlflow_ilike"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        operator = "ILIKE" if connection.vendor == "postgresql" else "LIKE"
        return f"{lhs} {operator} {rhs}", (*lhs_params, *rhs_params)


def like_to_glob(pattern):
    special = {"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}
    return "".join(special.get(c, c) for c in pattern)


def string_condition(field, op, value, what):
    """A condition on the text at `field` (a lookup path or an annotation)."""
    if op in NULL_OPS:
        return Q(**{f"{field}__isnull": op == "IS NULL"})
    if op not in STRING_OPS:
        raise invalid(f"Invalid comparator '{op}' for {what}: use one of =, !=, LIKE, ILIKE, IN, NOT IN.")
    if op in ("IN", "NOT IN"):
        if not isinstance(value, tuple):
            raise invalid(f"{op} for {what} takes a list of strings in parentheses.")
        condition = Q(**{f"{field}__in": list(value)})
        return condition if op == "IN" else Q(**{f"{field}__isnull": False}) & ~condition
    if not isinstance(value, str):
        raise invalid(f"The value for {what} must be a string in single quotes.")
    if op == "=":
        return Q(**{field: value})
    if op == "!=":
        return Q(**{f"{field}__isnull": False}) & ~Q(**{field: value})
    return Q((Like if op == "LIKE" else ILike)(F(field), Value(value)))


def number_condition(field, op, value, what, convert=float):
    if op not in NUMBER_OPS:
        raise invalid(f"Invalid comparator '{op}' for {what}: use one of =, !=, <, <=, >, >=.")
    if not isinstance(value, float):
        raise invalid(f"The value for {what} must be a number.")
    value = convert(value)
    if op == "!=":
        return Q(**{f"{field}__isnull": False}) & ~Q(**{field: value})
    lookup = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
    return Q(**{f"{field}__{lookup}": value})


EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def ms_to_datetime(ms):
    """Milliseconds since the epoch as a datetime, exactly (ms / 1000 in floats is off by one
    past the year 2500), clamped to what a datetime can hold."""
    try:
        return EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return datetime.max.replace(tzinfo=dt_timezone.utc) if ms > 0 else datetime.min.replace(tzinfo=dt_timezone.utc)


def time_condition(field, op, value, what):
    return number_condition(field, op, value, what, convert=ms_to_datetime)


def read_page_token(token):
    if not token:
        return 0
    try:
        offset = json.loads(base64.b64decode(token, validate=True))["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError, RecursionError):
        raise invalid("Invalid page_token.") from None
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 2**62:
        raise invalid("Invalid page_token.")
    return offset


def page(queryset, token, max_results):
    """(items, next_page_token or None) for one page of an ordered queryset."""
    offset = read_page_token(token)
    items = list(queryset[offset:offset + max_results + 1])
    if len(items) > max_results:
        return items[:max_results], base64.b64encode(json.dumps({"offset": offset + max_results}).encode()).decode()
    return items, None
