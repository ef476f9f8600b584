"""The redaction rules: the same text redacted as by the plain expressions they replace, in linear time."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable

import pytest

from broker.observability.redaction import REDACTED, redact_text

_WORDS = r"(?:pin|secret|token|password|passwd|passphrase|authorization|cookie|sad|api[_-]?key|private[_-]?key)"
# The rules written as single expressions: the meaning to keep (two of them took quadratic time).
REFERENCE = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(rf"""(?ix)
        (["']?[\w-]*?(?<![A-Za-z]){_WORDS}(?![A-Za-z])[\w-]*["']?\s*[:=]\s*)
        ("[^"]*"|'[^']*'|[^\s,;&}}]+)"""), r"\1" + REDACTED),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*[0-9_-])"
                r"[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])"), REDACTED),
]

PIECES = ["pin", "PIN", "token", "tokens", "Sad", "api_key", "apikey", "private-key", "mapping", "user_pin", "x", "_",
          "-", "'", '"', "=", ":", " ", ",", ";", "&", "}", ".", "\n", "é", "ký", "Bearer ", "basic ", "eyJ", "eyJhb",
          "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "-----BEGIN ", "PRIVATE KEY-----",
          "abcDEF0123456789abcDEF0123456789xyz", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"]


def reference(text: str) -> str:
    for pattern, replacement in REFERENCE:
        text = pattern.sub(replacement, text)
    return text


def test_random_texts_are_redacted_as_the_single_expressions_did() -> None:
    rng = random.Random(20261207)
    for _ in range(30_000):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 16)))
        assert redact_text(text) == reference(text), text


def test_what_a_log_line_carries_is_redacted() -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
    line = (f'client_secret="s3cr3t" user_pin=123456 path=/v1/requests/0a1b2c3d4e5f60718293a4b5c6d7e8f9 '
            f"Authorization: Bearer abc.def id_token={jwt} x-{jwt} "
            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY----- mapping=kept")
    redacted = redact_text(line)
    for secret in ("s3cr3t", "123456", "abc.def", jwt, "MIIE"):
        assert secret not in redacted
    assert "0a1b2c3d4e5f60718293a4b5c6d7e8f9" in redacted and "mapping=kept" in redacted


def _seconds(work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("unit", ["a", "x_pin", "eyJ-", "-----BEGIN RSA PRIVATE KEY-----\n", "token=\"", "aB1-"])
def test_a_long_hostile_line_costs_time_in_proportion_to_its_length(unit: str) -> None:
    """A path or message of one repeated piece, 16 times longer, costs at most about 16 times more (the
    single expressions took 1 s for an 8000-character path, on the server's event loop)."""
    short, long = unit * (4000 // len(unit)), unit * (64000 // len(unit))
    ratio = _seconds(lambda: redact_text(long)) / max(_seconds(lambda: redact_text(short)), 1e-5)
    assert ratio < 60, ratio  # linear: about 16; quadratic: about 256
