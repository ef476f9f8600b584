"""The composition root: settings, database, HSM and CA adapters for one process.

Built once by the CLI or the server and handed to the services; nothing here is global.
"""

from __future__ import annotations

import threading
from functools import cached_property

from asn1crypto import x509 as asn1_x509
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from broker.audit.checkpoint import install_interval_checkpoints
from broker.db.engine import make_engine, session_factory
from broker.notify import make_notifier
from broker.settings import Settings
from ca_adapters import CaAdapter, get_adapter
from hsm import Hsm
from hsm.store import activate_token_store
from signer.ltv import LongTermServices


class Runtime:
    def __init__(self, settings: Settings, hsm: Hsm | None = None, *, interval_checkpoints: bool = True) -> None:
        """``interval_checkpoints`` False: a CLI beside a running server, which signs them."""
        self.settings = settings
        self._interval_checkpoints = interval_checkpoints
        self.notifier = make_notifier(settings.db_url)  # PostgreSQL: LISTEN/NOTIFY across workers
        self._hsm = hsm
        self._hsm_lock = threading.Lock()

    @cached_property
    def engine(self) -> Engine:
        # Every API thread and the worker may hold a connection at once: a smaller pool makes the
        # overflow open and close a PostgreSQL connection (a backend process) per busy request.
        return make_engine(self.settings.db_url, pool_size=self.settings.api_threads + 4)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        factory = session_factory(self.engine)
        if self._interval_checkpoints:
            install_interval_checkpoints(factory, self)
        return factory

    @property
    def hsm(self) -> Hsm:
        """The token, logged in on first use: once per process: a PKCS#11 login is per
        process, and SoftHSM rewrites its token file at every login."""
        with self._hsm_lock:
            if self._hsm is None:
                activate_token_store(self.settings.data_dir)
                self._hsm = Hsm(
                    self.settings.hsm_module,
                    self.settings.hsm_token_label,
                    self.settings.user_pin(),
                    max_sessions=self.settings.hsm_max_sessions,
                )
            return self._hsm

    def ca(self, provider: str) -> CaAdapter:
        return get_adapter(provider, self.settings.pki_dir, test_mode=self.settings.sandbox,
                           endpoints=self.settings.provider_endpoints.get(provider))

    def long_term_services(self, provider: str) -> LongTermServices:
        """The provider's TSA, and the roots its chains (and its TSA's) validate to."""
        adapter = self.ca(provider)
        roots = [asn1_x509.Certificate.load(der) for der in adapter.trust_anchors()]
        return LongTermServices(adapter.endpoints().tsa_url, roots, timeout=self.settings.tsa_timeout_seconds)

    def close(self) -> None:
        self.notifier.close()
        if self._hsm is not None:
            self._hsm.close()
            self._hsm = None
        if "engine" in self.__dict__:
            self.engine.dispose()
