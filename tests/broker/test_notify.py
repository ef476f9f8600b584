"""Topic wake-ups: a long poll on one request sleeps through the other requests' notifications, and
is woken by its own, by a notification for everyone, and across processes through PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from broker.notify import Notifier, PgNotifier, make_notifier, request_topic, user_topic
from tests.support import postgres_url


class _Waiter:
    """A coroutine long-polling on ``topic`` in its own thread and loop, like a request's long poll."""

    def __init__(self, notifier: Notifier, topic: str) -> None:
        self.checks = 0
        self.done = threading.Event()
        self.started = threading.Event()
        self._notifier, self._topic = notifier, topic
        self._thread = threading.Thread(target=lambda: asyncio.run(self._wait()), daemon=True)
        self._thread.start()
        assert self.started.wait(5)

    def _check(self) -> bool:
        self.checks += 1
        self.started.set()
        return self.done.is_set()

    async def _wait(self) -> None:
        await self._notifier.wait_for_async(self._check, bool, timeout=20, recheck=10, topic=self._topic)

    def finish_on_next_wake(self) -> None:
        self.done.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _settle() -> None:
    time.sleep(0.3)  # long enough for a wake-up to have run its check


def test_other_topics_do_not_wake_a_waiter_its_own_and_everyone_s_do() -> None:
    notifier = Notifier()
    mine, theirs = request_topic(uuid.uuid4().hex), request_topic(uuid.uuid4().hex)
    waiter = _Waiter(notifier, mine)
    for _ in range(5):
        notifier.notify(theirs, user_topic("someone"))
    _settle()
    assert waiter.checks == 1  # only the first check: five foreign notifications, no re-check

    notifier.notify()  # everyone: re-checked, still open
    _settle()
    assert waiter.checks == 2

    waiter.finish_on_next_wake()
    notifier.notify(theirs, mine)
    assert waiter.join(5) and waiter.checks == 3


def test_a_notification_just_before_the_wait_is_not_lost() -> None:
    """The waiter is registered before its first check: a notification between that check and
    the wait wakes it at once, not at the next re-check (10 s here)."""
    notifier = Notifier()
    topic = request_topic(uuid.uuid4().hex)
    calls = []

    def check() -> bool:
        calls.append(time.monotonic())
        if len(calls) == 1:
            notifier.notify(topic)  # lands after the check has read "not yet"
            return False
        return True

    started = time.monotonic()
    asyncio.run(notifier.wait_for_async(check, bool, timeout=20, recheck=10, topic=topic))
    assert len(calls) == 2 and time.monotonic() - started < 2


@pytest.mark.postgres
def test_topics_cross_processes_through_postgresql() -> None:
    channel = f"kyso_test_{uuid.uuid4().hex[:8]}"
    waiting, sending = make_notifier(postgres_url()), make_notifier(postgres_url())
    assert isinstance(waiting, PgNotifier) and isinstance(sending, PgNotifier)
    waiting._channel = sending._channel = channel  # one channel per test: nothing else wakes these waiters
    try:
        waiting.start()
        assert waiting.listening.wait(10)
        mine = request_topic(uuid.uuid4().hex)
        waiter = _Waiter(waiting, mine)
        sending.notify(request_topic(uuid.uuid4().hex))
        time.sleep(1.0)  # the round trip through PostgreSQL
        assert waiter.checks == 1

        waiter.finish_on_next_wake()
        sending.notify(mine)
        assert waiter.join(5) and waiter.checks == 2  # far below the 10 s re-check
    finally:
        waiting.close()
        sending.close()


@pytest.mark.postgres
def test_a_process_is_not_woken_twice_by_its_own_notification() -> None:
    """The sender's waiters are woken at once, in process; PostgreSQL's echo of the same NOTIFY
    must not wake them again (each wake-up is a query per waiter)."""
    notifier = make_notifier(postgres_url())
    assert isinstance(notifier, PgNotifier)
    notifier._channel = f"kyso_test_{uuid.uuid4().hex[:8]}"
    try:
        notifier.start()
        assert notifier.listening.wait(10)
        topic = request_topic(uuid.uuid4().hex)
        waiter = _Waiter(notifier, topic)
        notifier.notify(topic)
        time.sleep(1.0)  # the echo's round trip through PostgreSQL
        assert waiter.checks == 2  # the first check and the local wake-up, not the echo

        waiter.finish_on_next_wake()
        notifier.notify(topic)
        assert waiter.join(5)
    finally:
        notifier.close()
