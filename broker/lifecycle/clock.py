"""The one clock of the request lifecycle: timezone-aware UTC, also for what SQLite gives back naive."""

from __future__ import annotations

from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def aware(moment: datetime) -> datetime:
    """SQLite drops the zone of a stored time: every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def seconds_until(moment: datetime) -> float:
    """From now to ``moment`` (negative once it passed)."""
    return (aware(moment) - now()).total_seconds()
