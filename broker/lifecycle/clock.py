"""The one clock of the request lifecycle: timezone-aware UTC, also for what SQLite gives back naive."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def aware(moment: datetime) -> datetime:
    """SQLite drops the zone of a stored time: every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def seconds_until(moment: datetime) -> float:
    """From now to ``moment`` (negative once it passed)."""
    return (aware(moment) - now()).total_seconds()


def seconds_to_first(moments: Iterable[datetime]) -> float | None:
    """From now to the earliest of ``moments`` (None if there is none)."""
    earliest = min((aware(m) for m in moments), default=None)
    return None if earliest is None else seconds_until(earliest)
