"""Units and their users."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker import audit
from broker.audit import Actor
from broker.db.models import Role, SigningMode, Unit, User
from broker.errors import Conflict, InvalidInput, NotFound, PolicyViolation

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NATIONAL_ID = re.compile(r"^[0-9A-Za-z-]{6,20}$")


class UserDisabled(PolicyViolation):
    """The user was disabled by an administrator: none of their credentials signs."""

    code = "user_disabled"


def add_unit(session: Session, actor: Actor, code: str, name: str, mode: SigningMode) -> Unit:
    if not _CODE.match(code):
        raise InvalidInput(f"unit code {code!r}: letters, digits, '.', '_' or '-', at most 64")
    if not name.strip():
        raise InvalidInput("a unit needs a name")
    if session.scalar(select(Unit).where(Unit.code == code)) is not None:
        raise Conflict(f"unit {code!r} already exists")
    unit = Unit(code=code, name=name.strip(), signing_mode=mode)
    session.add(unit)
    _flush(session, f"unit {code!r} already exists")
    audit.record(session, actor, "unit.add", target_type="unit", target_id=code, details={"mode": mode.value})
    return unit


def get_unit(session: Session, code: str) -> Unit:
    unit = session.scalar(select(Unit).where(Unit.code == code))
    if unit is None:
        raise NotFound(f"no unit {code!r}")
    return unit


def list_units(session: Session) -> list[Unit]:
    return list(session.scalars(select(Unit).order_by(Unit.code)))


def add_user(
    session: Session,
    actor: Actor,
    *,
    username: str,
    unit_code: str,
    full_name: str,
    national_id: str,
    role: Role,
    email: str | None = None,
) -> User:
    if not _CODE.match(username):
        raise InvalidInput(f"username {username!r}: letters, digits, '.', '_' or '-', at most 64")
    if not full_name.strip():
        raise InvalidInput("a user needs a full name")
    if not _NATIONAL_ID.match(national_id):
        raise InvalidInput("the national id (CCCD/CMND) or tax code has 6 to 20 letters or digits")
    unit = get_unit(session, unit_code)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(username=username, full_name=full_name.strip(), national_id=national_id, role=role, email=email, unit=unit)
    session.add(user)
    _flush(session, f"user {username!r} already exists")
    audit.record(
        session, actor, "user.add", target_type="user", target_id=username, details={"unit": unit_code, "role": role.value}
    )
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def list_users(session: Session, unit_code: str | None = None) -> list[User]:
    query = select(User).order_by(User.username)
    if unit_code:
        query = query.where(User.unit_id == get_unit(session, unit_code).id)
    return list(session.scalars(query))


def disable_user(session: Session, actor: Actor, username: str, reason: str | None = None) -> User:
    """None of the user's credentials signs from now on (every signing path checks, right before
    the key is used); their credentials, devices and history stay."""
    user = get_user(session, username)
    if user.disabled_at is not None:
        raise Conflict(f"user {username!r} is already disabled")
    user.disabled_at = datetime.now(timezone.utc)
    session.flush()
    audit.record(session, actor, "user.disable", target_type="user", target_id=username,
                 details={"reason": reason} if reason else {})
    return user


def enable_user(session: Session, actor: Actor, username: str) -> User:
    user = get_user(session, username)
    if user.disabled_at is None:
        raise Conflict(f"user {username!r} is not disabled")
    user.disabled_at = None
    session.flush()
    audit.record(session, actor, "user.enable", target_type="user", target_id=username)
    return user


def check_user_enabled(user: User) -> None:
    if user.disabled_at is not None:
        raise UserDisabled(f"user {user.username!r} is disabled; an administrator can enable them again "
                           f"(kyso user enable {user.username})")


def _flush(session: Session, conflict_message: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(conflict_message) from exc
