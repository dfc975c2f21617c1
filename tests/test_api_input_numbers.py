"""The parser's quick tests: the test for a number that may be beyond a 64-bit float answers as
the regex it replaced (`\\d{19,}|[eE][+-]?\\d{3,}`): a body it passes over is parsed without the
number hooks; the fast parse (orjson) reads a body as the full one does, or leaves it; and the
nesting read from a body's bytes is the nesting of what it parses to."""

import json
import math
import random
import re
import struct

import pytest
from rest_framework.exceptions import ParseError

from teams.api_input import _SLOW, _fast_loads, _loads, might_hold_a_long_number, nests_within

REGEX = re.compile(rb"\d{19,}|[eE][+-]?\d{3,}")


@pytest.mark.parametrize("body", [
    b'{"rows": [{"step": 1, "metrics": {"loss": 0.30000000000000004}}]}',
    b'{"x": 1e999}', b'{"x": 1E+308}', b'{"x": 1e-400}', b'{"x": 2e99}', b'{"x": 1e+99}',
    b'{"x": ' + b"9" * 19 + b"}", b'{"x": ' + b"9" * 18 + b"}", b'{"x": -' + b"1" * 400 + b"}",
    b'{"x": 0.' + b"0" * 18 + b'1}', b'{"metrics": {"e123": 1}}', b'{"x": "E-0001"}', b"",
])
def test_examples(body):
    assert might_hold_a_long_number(body) is bool(REGEX.search(body))


def test_random_bodies():
    rng = random.Random(9)
    for alphabet in (b'0123456789eE+-. "x', b"12345678900000000009e", b"9e+-E1"):
        for _ in range(30_000):
            body = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
            assert might_hold_a_long_number(body) is bool(REGEX.search(body)), body


def random_document(rng, depth=0):
    """A JSON text of the shapes API bodies take: objects, arrays, any double (as repr, as 17
    significant digits, with an exponent), integers of up to 20 digits, text with escapes and
    non-ASCII, NaN and Infinity, true/false/null."""
    kind = rng.randrange(9 if depth < 6 else 6)
    if kind == 0:
        value = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        return rng.choice((repr, lambda v: "%.17g" % v, lambda v: "%.6e" % v))(value) if math.isfinite(value) else "NaN"
    if kind == 1:
        return str(rng.randint(-(10 ** rng.randint(1, 20)), 10 ** rng.randint(1, 20)))
    if kind == 2:
        return json.dumps("".join(rng.choice(("a", "é", "\\", '"', "\n", "€", "𝄞", "\x00", "NaN")) for _ in range(rng.randint(0, 6))),
                          ensure_ascii=rng.random() < 0.5)
    if kind == 3:
        return rng.choice(("true", "false", "null", "Infinity", "-Infinity", '"\\ud800"', "-0", "0.0", "1E5", "5e-324",
                           "1e400", "-2E+999", "1e-400", "4.9e-325", "1.8e308", "123456789012345678901234", "-9223372036854775809"))
    if kind in (4, 5):
        return rng.choice(("1", "0.5", '"x"'))
    if kind in (6, 7):
        return "{" + ", ".join(f'"k{i}": {random_document(rng, depth + 1)}' for i in range(rng.randint(0, 4))) + "}"
    return "[" + ",".join(random_document(rng, depth + 1) for _ in range(rng.randint(0, 4))) + "]"


def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("d", a) == struct.pack("d", b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_the_fast_parse_reads_every_body_as_the_full_parse_or_leaves_it():
    """orjson takes the bodies it reads exactly as json does (every double to the same bits, the
    same keys in the same order) and leaves the others to json: none is read differently."""
    rng = random.Random(11)
    fast = 0
    for _ in range(20_000):
        body = random_document(rng).encode("utf-8", "surrogatepass")
        try:
            expected = _loads(body, "utf-8", might_hold_a_long_number(body))
        except ParseError:
            expected = _SLOW
        got = _fast_loads(body, "utf-8")
        if got is not _SLOW:
            fast += 1
            assert same(got, expected), body
    assert fast > 5_000  # the fast path is taken for most of them
    assert _fast_loads(b'{"a": 1}', "latin-1") is _SLOW
    assert _fast_loads(b'{"a": 1}', "no-such-codec") is _SLOW


def nesting(value):
    if isinstance(value, dict):
        value = list(value.values())
    return 1 + max(map(nesting, value), default=0) if isinstance(value, list) else 0


def random_tree(rng, depth, odd_text):
    """A JSON text nested exactly `depth` deep (one branch that deep, the others at most 3); with
    `odd_text`, some of its strings hold brackets, quotes and other escapes."""
    texts = ('"[{"', '"a]}\\"b"', '"\\u00e9"', '"{}"') if odd_text else ('"x"', '""')
    if depth == 0:
        return rng.choice(("1", "null", *texts))
    inner = [random_tree(rng, depth - 1, odd_text)] + [random_tree(rng, rng.randint(0, min(depth - 1, 3)), odd_text) for _ in range(rng.randint(0, 2))]
    rng.shuffle(inner)
    if rng.random() < 0.5:
        return "[" + ",".join(inner) + "]"
    return "{" + ",".join(f'"k{i}{rng.choice(("", "{", "]")) if odd_text else ""}": {v}' for i, v in enumerate(inner)) + "}"


def test_the_nesting_read_from_the_bytes_is_that_of_the_parsed_body():
    """`nests_within` never says a body nests within the limit when it does not, and tells for
    every body whose strings hold no bracket (the others are left to the walk)."""
    rng = random.Random(5)
    told = 0
    for _ in range(5_000):
        odd_text = rng.random() < 0.3
        body = random_tree(rng, rng.randint(0, 40), odd_text).encode()
        if b"\\" in body:  # escapes are left to the walk (parse() never asks)
            continue
        depth, limit = nesting(json.loads(body)), rng.choice((1, 3, 31, 32, 33, 40))
        within = nests_within(body, limit)
        assert not within or depth <= limit, body
        if not odd_text:
            told += 1
            assert within is (depth <= limit), body
    assert told > 2_000
