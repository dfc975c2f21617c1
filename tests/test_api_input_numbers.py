"""The parser's quick test for a number that may be beyond a 64-bit float answers as the regex it
replaced (`\\d{19,}|[eE][+-]?\\d{3,}`): a body it passes over is parsed without the number hooks."""

import random
import re

import pytest

from teams.api_input import might_hold_a_long_number

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
