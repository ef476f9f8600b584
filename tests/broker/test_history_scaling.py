"""The hot paths' statements read the open rows, not the history: on SQLite (no statistics for its
planner), the work each does, counted in virtual-machine steps, stays the same whether 200 or 20,000
finished requests (and their hashes), delivered webhooks and deleted uploads are stored (a peak day
adds 200,000 requests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from bench import history
from broker.db.engine import make_engine, session_factory
from broker.db.migrate import upgrade
from broker.lifecycle import housekeeping, webhooks
from broker.settings import Settings
from tests.conftest import ACTOR

_STEP = 50  # the progress handler runs every this many VM instructions


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[tuple[str, sessionmaker[Session], list[int]]]:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    upgrade(url)
    engine = make_engine(url)
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_progress_handler(count, _STEP)

    history.seed(engine)
    yield url, session_factory(engine), steps
    engine.dispose()


def test_hot_statements_do_not_read_the_history(counted: tuple[str, sessionmaker[Session], list[int]],
                                                settings: Settings) -> None:
    url, factory, steps = counted
    settings = settings.model_copy(update={"rate_limit_per_minute": 10**6})
    paths: dict[str, Callable[[], object]] = {
        **history.hot_paths(factory, settings),
        "the due webhooks": lambda: webhooks.deliver_due(factory, allow_private=True),
        "a housekeeping run": lambda: housekeeping.sweep(factory, settings, ACTOR),
    }

    def measure() -> dict[str, int]:
        spent = {}
        for name, run in paths.items():
            run()  # first use: prepared statements, the pool's connection
            before = steps[0]
            run()
            spent[name] = steps[0] - before
        return spent

    history.add_history(url, 200)
    small = measure()
    history.add_history(url, 20_000)
    large = measure()
    grown = {name: (small[name], large[name]) for name in small if large[name] > 2 * small[name] + 20}
    assert not grown, f"VM steps (×{_STEP}) that grew with 100× more history: {grown}"
