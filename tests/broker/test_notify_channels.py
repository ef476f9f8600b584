"""Channel wake-ups for threads: the signing worker sleeps through signers' and CSC notifications and
is woken by work; the sandbox's phones are woken by any signer's new request."""

from __future__ import annotations

import threading
import time

from broker.notify import USER_CHANNEL, WORK_TOPIC, Notifier, request_topic, user_topic


def _waits(notifier: Notifier, channel: str | None, notify: tuple[str, ...] | None, timeout: float = 0.5) -> bool:
    """Whether a thread waiting on ``channel`` wakes before ``timeout`` when ``notify`` is sent."""
    seen = notifier.version(channel)
    woken = threading.Event()

    def wait() -> None:
        if notifier.wait(seen, timeout, channel) != seen:
            woken.set()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.05)
    if notify is not None:
        notifier.notify(*notify)
    thread.join(timeout + 1)
    return woken.is_set()


def test_the_worker_s_channel_sleeps_through_other_topics_and_wakes_on_work() -> None:
    notifier = Notifier()
    assert not _waits(notifier, WORK_TOPIC, (user_topic("7"), request_topic("r1")))
    assert _waits(notifier, WORK_TOPIC, (request_topic("r1"), WORK_TOPIC))
    assert _waits(notifier, WORK_TOPIC, ())  # a notification for everyone (stop, recovery)


def test_the_signers_channel_wakes_on_any_signer_s_topic_only() -> None:
    notifier = Notifier()
    assert _waits(notifier, USER_CHANNEL, (user_topic("7"),))
    assert _waits(notifier, USER_CHANNEL, (user_topic("8"), request_topic("r2")))
    assert not _waits(notifier, USER_CHANNEL, (WORK_TOPIC, request_topic("r2")))


def test_a_wait_without_a_channel_wakes_on_every_notification() -> None:
    notifier = Notifier()
    assert _waits(notifier, None, (request_topic("r3"),))
    assert notifier.version() == 1 and notifier.version(WORK_TOPIC) == 0 and notifier.version(USER_CHANNEL) == 0


def test_a_channel_notification_sent_before_the_wait_is_not_lost() -> None:
    notifier = Notifier()
    seen = notifier.version(WORK_TOPIC)
    notifier.notify(WORK_TOPIC)
    started = time.monotonic()
    assert notifier.wait(seen, 5, WORK_TOPIC) == seen + 1
    assert time.monotonic() - started < 1
