"""The body scan before parsing agrees with a real JSON parser, on random bodies near every bound.

The scan skips its regular expressions when a body has no ``\\u`` escape or fewer brackets than the
depth limit (most bodies: base64 and plain text); these random bodies straddle both shortcuts.
"""

from __future__ import annotations

import json
import random

from api.body_limits import MAX_JSON_DEPTH, refusal_in_body

SAFE = ["plain", "\\\\u0000", "\\ud83d\\ude00", "[", "]", "{", "}", "\\\"", "\\\\", "\\u00e9", "ký số", "QUJD+/=="]
HOSTILE = ["\\u0000", "\\ud800", "\\udc00"]


def _string(rng: random.Random) -> str:
    pieces = SAFE + HOSTILE if rng.random() < 0.02 else SAFE
    return '"' + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))) + '"'


def _value(rng: random.Random, depth: int) -> str:
    if depth <= 0:
        return rng.choice([_string(rng), "1", "true", "null"])
    # One branch goes down to ``depth``; the others stay shallow, so a body stays small.
    children = [_value(rng, depth - 1), *(_value(rng, min(depth - 1, 2)) for _ in range(rng.randint(0, 1)))]
    rng.shuffle(children)
    if rng.random() < 0.5:
        return "[" + ",".join(children) + "]"
    return "{" + ",".join(f"{_string(rng)}:{child}" for child in children) + "}"


class _Pairs(list):  # type: ignore[type-arg]
    """An object's members as parsed, repeated keys included."""


def _depth(value: object) -> int:
    if isinstance(value, _Pairs):
        return 1 + max((max(_depth(k), _depth(v)) for k, v in value), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _texts(value: object) -> list[str]:
    if isinstance(value, _Pairs):
        return [t for k, v in value for t in (k, *_texts(v))]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return [value] if isinstance(value, str) else []


def _refused_by_parser(body: str) -> bool:
    value = json.loads(body, object_pairs_hook=_Pairs)  # a repeated key keeps its every value
    for text in _texts(value):
        if "\x00" in text:
            return True
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate
            return True
    return _depth(value) > MAX_JSON_DEPTH


def test_the_scan_agrees_with_a_parser_near_the_depth_limit_and_with_escapes() -> None:
    rng = random.Random(20261207)
    refused = accepted = 0
    for _ in range(3000):
        body = _value(rng, rng.randint(0, MAX_JSON_DEPTH + 3))
        expected = _refused_by_parser(body)
        got = refusal_in_body(body.encode(), "application/json", True) is not None
        assert got == expected, body
        refused, accepted = refused + expected, accepted + (not expected)
    assert refused > 300 and accepted > 300  # both verdicts were exercised


def test_a_large_plain_body_is_accepted_and_a_deep_one_refused() -> None:
    plain = json.dumps({"documents": [{"content": "QUJD" * 700, "title": f"UNC {k}"} for k in range(10)]})
    assert refusal_in_body(plain.encode(), "application/json", True) is None
    deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    assert refusal_in_body(deep.encode(), "application/json", True).code == "invalid_request"
    exactly = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert refusal_in_body(exactly.encode(), "application/json", True) is None
