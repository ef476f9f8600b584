"""The binding's JSON: what the standard library writes is byte for byte RFC 8785, whatever the text."""

from __future__ import annotations

import random

import pytest
import rfc8785

from biometrics.binding import jcs_of_text

# Control characters, the escaped ones, DEL, non-ASCII, the line separators, the private use area
# (sorted apart from astral characters by UTF-16), astral characters and lone surrogates.
ALPHABET = ["a", "Z", "0", " ", '"', "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f", "é", "ký",
            "Đ", "\u2028", "\u2029", "\ue000", "\uffff", "😀", "\U0010ffff", "\ud800", "\udfff"]


def text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 6)))


def value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randint(0, 5 if depth < 3 else 2)
    if kind == 0:
        return rng.choice([True, False])
    if kind <= 2:
        return text(rng)
    if kind == 3:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {text(rng): value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def both(value: dict[str, object]) -> tuple[object, object]:
    def run(fn):  # type: ignore[no-untyped-def]
        try:
            return bytes(fn(value))
        except Exception as exc:  # noqa: BLE001 - the kind of refusal is compared too
            return type(exc)
    return run(jcs_of_text), run(rfc8785.dumps)


def test_random_text_values_are_written_as_rfc8785_writes_them() -> None:
    rng = random.Random(8785)
    for _ in range(20_000):
        document = {text(rng): value(rng) for _ in range(rng.randint(0, 5))}
        ours, reference = both(document)
        assert ours == reference, document


@pytest.mark.parametrize("document", [
    {"n": 1}, {"x": 1.5}, {"none": None}, {"\U0001f600": "a", "\uffff": "b"}, {"a": ["\ud800"]},
])
def test_numbers_nulls_astral_keys_and_lone_surrogates_go_to_the_full_implementation(
        document: dict[str, object]) -> None:
    ours, reference = both(document)
    assert ours == reference
