"""The declarative base and the column helpers every model uses."""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import Enum
from sqlalchemy.orm import DeclarativeBase


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


def enum_column(cls: type[enum.Enum], name: str) -> Enum:
    """An enum stored as its values in a string column, not a native database enum type."""
    return Enum(cls, name=name, native_enum=False, values_callable=lambda e: [m.value for m in e], length=32)
