"""Session fixtures: one SoftHSM token store and test PKI for this process (SoftHSM reads its configuration once per process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import x509

from broker import credentials, directory
from broker.audit import Actor
from broker.db.engine import transaction
from broker.db.migrate import upgrade
from broker.db.models import Credential, Role, SigningMode
from broker.runtime import Runtime
from broker.settings import Settings, load_settings
from ca_adapters.emulator.server import EmulatorSet
from hsm import Hsm, KeyAlgorithm
from kyso.operations import setup
from signer import SignatureScheme
from tests.support import AutoApprover, admin, fresh_database, make_device, uvicorn_thread, write_pem

ACTOR = Actor("test", "pytest")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kyso-data")


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    base = load_settings(data_dir)
    setup.init_data_dir(base, ACTOR, sandbox=True)
    return load_settings(data_dir)


@pytest.fixture()
def kyso(settings: Settings, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """The admin CLI in this process on the session's data dir (initialised first): exit code, out, err."""

    def call(*args: str) -> tuple[int, str, str]:
        return admin(settings.data_dir, capsys, *args)

    return call


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings)
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def hsm(runtime: Runtime) -> Hsm:
    return runtime.hsm


@pytest.fixture(scope="session")
def root_der(runtime: Runtime) -> bytes:
    return runtime.ca("vnpt").trust_anchors()[0]


@pytest.fixture(scope="session")
def trust_roots(root_der: bytes) -> list[x509.Certificate]:
    return [x509.Certificate.load(root_der)]


@pytest.fixture(scope="session")
def root_pem(root_der: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pem(tmp_path_factory.mktemp("trust") / "root.pem", root_der)


@dataclass(frozen=True)
class Enrolled:
    """The session's unit, users and credentials (ids; load rows in your own session)."""

    unit: str
    chief_accountant: str
    account_holder: str
    rsa: str
    rsa_pss: str
    ec: str


@pytest.fixture(scope="session")
def enrolled(runtime: Runtime) -> Enrolled:
    with transaction(runtime.sessions) as s:
        directory.add_unit(s, ACTOR, "U001", "Trường Tiểu học Nguyễn Trãi", SigningMode.REMOTE)
        directory.add_user(s, ACTOR, username="lan", unit_code="U001", full_name="Nguyễn Thị Lan",
                           national_id="001185000123", role=Role.CHIEF_ACCOUNTANT)
        directory.add_user(s, ACTOR, username="hung", unit_code="U001", full_name="Trần Văn Hùng",
                           national_id="001080000456", role=Role.ACCOUNT_HOLDER)
    ids = []
    for user, provider, algorithm, scheme in [
        ("lan", "vnpt", KeyAlgorithm.RSA_2048, None),
        ("hung", "misa", KeyAlgorithm.RSA_2048, SignatureScheme.RSA_PSS),
        ("hung", "viettel", KeyAlgorithm.EC_P256, None),
    ]:
        with transaction(runtime.sessions) as s:
            c = credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca(provider), username=user,
                                   key_algorithm=algorithm, scheme=scheme)
            ids.append(c.id)
    return Enrolled("U001", "lan", "hung", *ids)


def load_credential(runtime: Runtime, credential_id: str) -> Credential:
    with transaction(runtime.sessions) as s:
        c = credentials.get_credential(s, credential_id)
        _ = c.user.full_name, c.user.unit.signing_mode
        return c


# -- databases: SQLite always, PostgreSQL when KYSO_TEST_DATABASE_URL is set ---------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def db_runtime(request: pytest.FixtureRequest, tmp_path: Path, settings: Settings, hsm: Hsm) -> Iterator[Runtime]:
    """A fresh, migrated database of each kind, sharing the session's HSM token."""
    url = fresh_database(request.param, tmp_path)
    upgrade(url)
    anchors = tmp_path / "audit-anchors.jsonl"  # this database's checkpoints stay out of the session data dir's
    rt = Runtime(settings.model_copy(update={"database_url": url, "audit_anchors_file": anchors}), hsm=hsm)
    yield rt
    rt.engine.dispose()


# -- a real HTTP server on loopback, in this process (it shares the session's token) -------------------


@pytest.fixture(scope="session")
def live_server(runtime: Runtime) -> Iterator[str]:
    """``http://localhost:PORT`` served by uvicorn on 127.0.0.1 (localhost: a valid WebAuthn RP ID)."""
    import uvicorn

    from api.app import create_app
    from kyso.sandbox import free_port

    port = free_port()
    base_url = f"http://localhost:{port}"
    runtime.settings.public_base_url = base_url
    runtime.settings.webauthn_origins = [base_url]
    with uvicorn_thread(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning")):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def phones(runtime: Runtime, live_server: str, enrolled: Enrolled) -> Iterator[AutoApprover]:
    """lan's and hung's phones, approving whatever arrives (set ``decision`` to refuse)."""
    approver = AutoApprover([make_device(runtime, live_server, "lan"), make_device(runtime, live_server, "hung")])
    yield approver
    approver.stop()


# -- the four providers' emulators (OCSP, CRL, TSA, signing APIs) on their loopback ports ---------------


@pytest.fixture(scope="session")
def emulators(runtime: Runtime) -> Iterator[EmulatorSet]:
    from ca_adapters import provider_names

    emulator_set = EmulatorSet(runtime.settings.pki_dir, provider_names(), ttl_seconds=3.0).start()
    yield emulator_set
    emulator_set.stop()


@pytest.fixture
def emulator_reset(emulators: EmulatorSet) -> Iterator[EmulatorSet]:
    """The emulators with an approving phone and no outage, restored after the test."""
    yield emulators
    for name in emulators.apps:
        emulators.state(name).set_phone("approve")
        emulators.state(name).outages = set()
