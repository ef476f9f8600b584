"""Sole control: no service path uses a signer's key without a consumed
authorisation. Only ``sole_control`` signs for requests; ``local_signing`` is the sandbox-only
unconfirmed path (refused elsewhere, tested in test_cli); the CLI's ``cert enroll`` signs its own
CSR with a key that has no certificate yet.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO

ALLOWED = {
    "broker/lifecycle/sole_control.py",
    "broker/lifecycle/unconfirmed_signing.py",
    "broker/credentials/__init__.py",  # defines key_signer; enroll signs the CSR (proof of possession)
    "broker/audit/key.py",  # signs with the HSM's audit key ("kyso-audit") only, never a signer's key
}


def _calls(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            names.add(name)
    return names


def test_only_sole_control_signs_for_requests() -> None:
    offenders = []
    for package in ("broker", "api", "kyso_device", "kyso_client"):
        for path in (REPO / package).rglob("*.py"):
            rel = str(path.relative_to(REPO))
            if rel in ALLOWED:
                continue
            used = _calls(path) & {"key_signer", "sign_digest", "sign_digests", "sign_many", "sign_hashes"}
            if used:
                offenders.append((rel, sorted(used)))
    assert offenders == []


def test_sole_control_refuses_what_was_not_approved(runtime, enrolled) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    import pytest

    from broker import credentials
    from broker.db.engine import transaction
    from broker.lifecycle import signing_requests, sole_control
    from tests.conftest import ACTOR

    with transaction(runtime.sessions) as s:
        credential = credentials.get_credential(s, enrolled.ec)
        request = signing_requests.create(s, runtime.settings, ACTOR, credential,
                                  [signing_requests.DocumentToSign(hashlib.sha256(b"never approved").digest(), "x")],
                                  relying_system="test", provider=runtime.ca(credential.provider))
    with pytest.raises(sole_control.NotAuthorised):
        sole_control.sign_approved(runtime.sessions, runtime.hsm, ACTOR, request.id)
