"""Ids as typed by an administrator: the whole id, or a unique prefix of it (``kyso cert show 137c93``)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker import approvals
from broker.db.models import Credential
from broker.errors import InvalidInput, NotFound

MIN_PREFIX = 4
"""A shorter prefix is not looked up: too easy to mistype into another credential."""


class AmbiguousId(InvalidInput):
    code = "ambiguous_id"


def resolve(kind: str, given: str, known: Iterable[str]) -> str:
    """The one id of ``known`` equal to ``given`` or starting with it."""
    given = given.strip()
    candidates = sorted(set(known))
    if given in candidates:
        return given
    if len(given) < MIN_PREFIX:
        raise NotFound(f"no {kind} {given[:100]!r} (a prefix needs at least {MIN_PREFIX} characters)")
    matches = [c for c in candidates if c.startswith(given)]
    if not matches:
        raise NotFound(f"no {kind} {given[:100]!r}")
    if len(matches) > 1:
        shown = ", ".join(m[:16] for m in matches[:5]) + (", …" if len(matches) > 5 else "")
        raise AmbiguousId(f"{kind} prefix {given[:100]!r} matches {len(matches)}: {shown}; type more of the id")
    return matches[0]


def credential_id(session: Session, given: str) -> str:
    if session.get(Credential, given) is not None:
        return given
    if len(given.strip()) < MIN_PREFIX:
        return resolve("credential", given, ())
    found = session.scalars(select(Credential.id).where(Credential.id.startswith(given.strip(), autoescape=True))
                            .limit(6))
    return resolve("credential", given, found)


def device_id(session: Session, username: str, given: str) -> str:
    """One of the user's phones or WebAuthn authenticators."""
    return resolve(f"device of {username!r}", given, (a.id for a in approvals.list_authenticators(session, username)))
