"""The background worker: finishes approved REST requests and delivers due webhooks."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from broker.audit import Actor
from broker.credentials import delegated
from broker.db.models import RequestState
from broker.lifecycle import finishing, housekeeping, recovery, webhooks
from broker.notify import WORK_TOPIC, request_topic
from broker.runtime import Runtime

log = logging.getLogger("kyso.worker")
ACTOR = Actor("worker", "signing-worker")
HOUSEKEEPING_SECONDS = 1.0
RETRY_SECONDS = 2.0
BLOB_SWEEP_SECONDS = 120.0
"""Work files of ended requests, documents past retention: a few indexed queries every two minutes."""


class SigningWorker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._stop = threading.Event()
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:64]
        self._thread = threading.Thread(target=self._run, name="signing-worker", daemon=True)
        self._waiting = False

    def start(self) -> None:
        self.runtime.notifier.take_work_locally(self.waiting)
        self._thread.start()

    def waiting(self) -> bool:
        """Idle, waiting for work: what it is woken for now it takes at once."""
        return self._waiting and not self._stop.is_set()

    def stop(self) -> None:
        self.runtime.notifier.take_work_locally(None)
        self._stop.set()
        self.runtime.notifier.notify()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        rt = self.runtime
        housekeeping_at = sweep_at = 0.0
        while not self._stop.is_set():
            seen = rt.notifier.version(WORK_TOPIC)
            try:
                # Woken by work (a request approved for it, webhooks queued), not by every change:
                # approved work and webhooks are looked at each time; crash recovery, unused
                # authorisations and the providers' answers wait for their interval.
                if time.monotonic() >= housekeeping_at:
                    housekeeping_at = time.monotonic() + HOUSEKEEPING_SECONDS
                    if recovery.reclaim(rt.sessions, rt.settings, ACTOR) + \
                            recovery.expire_unused_authorisations(rt.sessions, rt.settings, ACTOR):
                        rt.notifier.notify()
                    if time.monotonic() >= sweep_at:
                        sweep_at = time.monotonic() + BLOB_SWEEP_SECONDS
                        housekeeping.sweep(rt.sessions, rt.settings, ACTOR)
                    if self._follow_providers():  # some still wait for a signer at the provider
                        housekeeping_at = time.monotonic() + rt.settings.provider_poll_seconds
                seconds = rt.settings.reservation_timeout_seconds
                for request_id in finishing.pending_work(rt.sessions):
                    lease = finishing.Lease(self.name, seconds)
                    try:
                        if not finishing.finish(rt.sessions, rt.hsm, ACTOR, request_id, rt.long_term_services, lease,
                                                claim=True):
                            continue  # another worker is finishing it
                    except Exception as exc:  # noqa: BLE001 - one request's failure must not stop the others
                        log.warning("request %s could not be finished: %s", request_id, getattr(exc, "code", type(exc).__name__))
                        # Tried again after a pause, not at the next wake-up: a lasting fault must not spin.
                        finishing.release(rt.sessions, request_id, lease.finisher, RETRY_SECONDS)
                    rt.notifier.notify(request_topic(request_id))
                webhooks.deliver_due(rt.sessions, allow_private=rt.settings.webhook_allow_private)
            except Exception as exc:  # noqa: BLE001 - e.g. the database is briefly away: try again
                log.warning("signing worker: %s", type(exc).__name__)
            self._waiting = True
            try:
                rt.notifier.wait(seen, max(0.0, housekeeping_at - time.monotonic()), WORK_TOPIC)
            finally:
                self._waiting = False

    def _follow_providers(self) -> bool:
        """Poll the providers for delegated requests; True while some still wait for a signer there."""
        rt = self.runtime
        waiting = False
        for request_id in delegated.pending(rt.sessions):
            state = delegated.follow(rt.sessions, rt.ca, ACTOR, request_id)
            if state is RequestState.PENDING:
                waiting = True
            else:
                rt.notifier.notify(request_topic(request_id))
        return waiting
