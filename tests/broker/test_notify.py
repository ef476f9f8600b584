"""Topic wake-ups: a long poll on one request sleeps through the other requests' notifications, and
is woken by its own, by a notification for everyone, and across processes through PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from broker.db.models import RequestState, SigningRequest
from broker.lifecycle.waiting import changed_topics
from broker.lifecycle.worker import SigningWorker
from broker.notify import WORK_TOPIC, Notifier, PgNotifier, make_notifier, request_topic, user_topic
from broker.runtime import Runtime
from tests.support import eventually, postgres_url


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


def _two_processes() -> tuple[PgNotifier, PgNotifier]:
    channel = f"kyso_test_{uuid.uuid4().hex[:8]}"
    here, there = make_notifier(postgres_url()), make_notifier(postgres_url())
    assert isinstance(here, PgNotifier) and isinstance(there, PgNotifier)
    here._channel = there._channel = channel
    there.start()
    assert there.listening.wait(10)
    return here, there


@pytest.mark.postgres
def test_work_an_idle_local_worker_takes_wakes_no_other_process() -> None:
    """With several ``kyso serve`` processes, each approval named the signing worker's topic to all of
    them: every worker queried for the request and all but one failed to claim it. Work this process's
    idle worker takes stays here; its other topics still cross."""
    here, there = _two_processes()
    idle = threading.Event()
    here.take_work_locally(idle.is_set)
    try:
        mine = request_topic(uuid.uuid4().hex)
        waiter = _Waiter(there, mine)
        work_before = there.version(WORK_TOPIC)

        idle.set()  # the local worker waits for work: it takes this one
        here.notify(mine, WORK_TOPIC)
        time.sleep(1.0)  # the round trip through PostgreSQL
        assert waiter.checks == 2  # the request's own topic crossed
        here.notify(WORK_TOPIC)  # the worker's alone: nothing is sent (an empty NOTIFY would wake everyone)
        time.sleep(1.0)
        assert there.version(WORK_TOPIC) == work_before and waiter.checks == 2

        idle.clear()  # busy: another process's worker may take it sooner
        here.notify(WORK_TOPIC)
        assert eventually(lambda: there.version(WORK_TOPIC) > work_before, timeout=5)

        here.take_work_locally(None)  # no worker here (a CLI): every process hears of the work
        idle.set()
        work_before = there.version(WORK_TOPIC)
        here.notify(WORK_TOPIC)
        assert eventually(lambda: there.version(WORK_TOPIC) > work_before, timeout=5)
        waiter.finish_on_next_wake()
        here.notify(mine)
        assert waiter.join(5)
    finally:
        here.close()
        there.close()


@pytest.mark.parametrize("db_runtime", ["postgresql"], indirect=True)
def test_a_signing_worker_takes_the_work_it_is_woken_for_while_it_waits(db_runtime: Runtime) -> None:
    worker = SigningWorker(db_runtime)
    assert not worker.waiting()
    worker.start()
    try:
        assert eventually(worker.waiting, timeout=10)
        assert isinstance(db_runtime.notifier, PgNotifier) and db_runtime.notifier._local_worker_idle()
        worker.stop()
        assert not worker.waiting() and not db_runtime.notifier._local_worker_idle()
    finally:
        worker.stop()
        db_runtime.notifier.close()


def test_a_rest_request_s_approval_wakes_its_worker_not_its_long_polls() -> None:
    """A relying system's long poll waits for its request's end: an approval is not one (the worker
    signs it next, and announces the end), so it wakes the worker only. A CSC authorisation's and a
    local request's waiters wait for the decision itself."""
    rest = SigningRequest(id="r1", user_id=7, client_id="dvc", sad_hash=None, state=RequestState.APPROVED)
    assert changed_topics(rest) == (WORK_TOPIC,)
    for ended in (RequestState.SIGNED, RequestState.REJECTED, RequestState.CANCELLED, RequestState.FAILED):
        rest.state = ended
        assert changed_topics(rest) == (request_topic("r1"), WORK_TOPIC)
    csc = SigningRequest(id="r2", user_id=7, client_id="dvc", sad_hash="h" * 64, state=RequestState.APPROVED)
    assert changed_topics(csc) == (request_topic("r2"),)
    local = SigningRequest(id="r3", user_id=7, client_id=None, sad_hash=None, state=RequestState.APPROVED)
    assert changed_topics(local) == (request_topic("r3"), WORK_TOPIC)


def test_a_wait_looks_again_when_its_result_changes_by_itself() -> None:
    """A result that changes with no notification (a request's expiry) is checked again at that
    moment, not at the next re-check."""
    notifier = Notifier()
    changes_at = time.monotonic() + 0.5
    checks: list[float] = []

    def check() -> bool:
        checks.append(time.monotonic())
        return time.monotonic() >= changes_at

    started = time.monotonic()
    assert asyncio.run(notifier.wait_for_async(check, bool, timeout=20, recheck=10,
                                               changes_in=lambda _: changes_at - time.monotonic()))
    assert len(checks) == 2 and 0.5 <= time.monotonic() - started < 2
