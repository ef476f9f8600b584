"""Services over a real database: SQLite and PostgreSQL (when KYSO_TEST_DATABASE_URL is set)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from broker import audit, credentials, directory
from broker.db.engine import transaction
from broker.db.models import AuditEvent, Credential, CredentialStatus, Role, SigningMode, Unit, User
from broker.errors import Conflict, CredentialNotUsable, InvalidInput, NotFound, UnitInUsbTokenMode
from broker.lifecycle import unit_mode
from broker.runtime import Runtime
from ca_adapters import EnrollmentRefused, RevocationReason
from hsm import KeyAlgorithm
from tests.conftest import ACTOR


def counts(rt: Runtime) -> dict[str, int]:
    with transaction(rt.sessions) as s:
        return {m.__name__: s.scalar(select(func.count()).select_from(m)) or 0 for m in (Unit, User, Credential, AuditEvent)}


def seed(rt: Runtime, mode: SigningMode = SigningMode.REMOTE) -> None:
    with transaction(rt.sessions) as s:
        directory.add_unit(s, ACTOR, "U9", "Kho bạc thử nghiệm", mode)
        directory.add_user(s, ACTOR, username="thu", unit_code="U9", full_name="Lê Thị Thu", national_id="001190000789",
                           role=Role.CHIEF_ACCOUNTANT)


def test_units_users_and_a_credential(db_runtime: Runtime) -> None:
    seed(db_runtime)
    with transaction(db_runtime.sessions) as s:
        c = credentials.enroll(s, ACTOR, db_runtime.hsm, db_runtime.ca("nacencomm"), username="thu",
                               key_algorithm=KeyAlgorithm.EC_P256)
        credential_id = c.id
    with transaction(db_runtime.sessions) as s:
        [c] = credentials.list_credentials(s, "thu")
        assert c.id == credential_id and c.provider == "nacencomm" and c.status is CredentialStatus.ACTIVE
        assert "MST:001190000789" in c.subject
        assert credentials.default_credential(s, directory.get_user(s, "thu")).id == credential_id
        assert [u.username for u in directory.list_users(s, "U9")] == ["thu"]
        assert directory.list_units(s)[0].signing_mode is SigningMode.REMOTE
        assert [e.action for e in audit.list_events(s)] == ["unit.add", "user.add", "credential.enroll"]
        assert audit.verify_chain(s) is None
    assert db_runtime.hsm.key_exists(credential_id)


def test_usb_token_unit_is_refused_and_nothing_is_left(db_runtime: Runtime) -> None:
    seed(db_runtime, SigningMode.USB_TOKEN)
    before = counts(db_runtime)
    with pytest.raises(UnitInUsbTokenMode) as refused, transaction(db_runtime.sessions) as s:
        credentials.enroll(s, ACTOR, db_runtime.hsm, db_runtime.ca("vnpt"), username="thu",
                           key_algorithm=KeyAlgorithm.EC_P256)
    assert refused.value.code == "unit_in_usb_token_mode"
    assert counts(db_runtime) == before
    with transaction(db_runtime.sessions) as s:
        unit_mode.set_mode(s, ACTOR, "U9", SigningMode.REMOTE)
    with transaction(db_runtime.sessions) as s:
        credentials.enroll(s, ACTOR, db_runtime.hsm, db_runtime.ca("vnpt"), username="thu",
                           key_algorithm=KeyAlgorithm.EC_P256)


def test_a_failed_enrollment_deletes_its_key(db_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(db_runtime)
    adapter = db_runtime.ca("misa")
    made: list[str] = []
    original = db_runtime.hsm.generate_key

    def spy(key_id, algorithm, label=None):  # type: ignore[no-untyped-def]
        made.append(key_id)
        return original(key_id, algorithm, label)

    def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise EnrollmentRefused("provider said no")

    monkeypatch.setattr(db_runtime.hsm, "generate_key", spy)
    monkeypatch.setattr(adapter, "enroll", refuse)
    before = counts(db_runtime)
    with pytest.raises(EnrollmentRefused), transaction(db_runtime.sessions) as s:
        credentials.enroll(s, ACTOR, db_runtime.hsm, adapter, username="thu", key_algorithm=KeyAlgorithm.EC_P256)
    assert counts(db_runtime) == before
    assert made and not db_runtime.hsm.key_exists(made[0])


def test_bad_input_and_conflicts(db_runtime: Runtime) -> None:
    seed(db_runtime)
    before = counts(db_runtime)
    cases = [
        (Conflict, lambda s: directory.add_unit(s, ACTOR, "U9", "again", SigningMode.REMOTE)),
        (InvalidInput, lambda s: directory.add_unit(s, ACTOR, "bad code!", "x", SigningMode.REMOTE)),
        (NotFound, lambda s: directory.add_user(s, ACTOR, username="x", unit_code="nope", full_name="X",
                                                national_id="001190000789", role=Role.OTHER)),
        (InvalidInput, lambda s: directory.add_user(s, ACTOR, username="y", unit_code="U9", full_name="Y",
                                                    national_id="12", role=Role.OTHER)),
        (Conflict, lambda s: directory.add_user(s, ACTOR, username="thu", unit_code="U9", full_name="T",
                                                national_id="001190000789", role=Role.OTHER)),
        (NotFound, lambda s: credentials.enroll(s, ACTOR, db_runtime.hsm, db_runtime.ca("vnpt"), username="ghost",
                                                key_algorithm=KeyAlgorithm.EC_P256)),
        (NotFound, lambda s: credentials.get_credential(s, "nope")),
        (NotFound, lambda s: credentials.default_credential(s, directory.get_user(s, "thu"))),
    ]
    for error, action in cases:
        with pytest.raises(error), transaction(db_runtime.sessions) as s:
            action(s)
    assert counts(db_runtime) == before


def test_a_revoked_credential_never_signs(db_runtime: Runtime) -> None:
    seed(db_runtime)
    with transaction(db_runtime.sessions) as s:
        credential_id = credentials.enroll(s, ACTOR, db_runtime.hsm, db_runtime.ca("viettel"), username="thu",
                                           key_algorithm=KeyAlgorithm.EC_P256).id
    with transaction(db_runtime.sessions) as s:
        c = credentials.revoke(s, ACTOR, db_runtime.ca("viettel"), credential_id, RevocationReason.KEY_COMPROMISE)
        serial = int(c.serial_hex, 16)
    assert db_runtime.ca("viettel").status(serial).revoked
    with transaction(db_runtime.sessions) as s:
        c = credentials.get_credential(s, credential_id)
        with pytest.raises(CredentialNotUsable):
            credentials.key_signer(db_runtime.hsm, c)
        with pytest.raises(CredentialNotUsable):
            credentials.revoke(s, ACTOR, db_runtime.ca("viettel"), credential_id, RevocationReason.UNSPECIFIED)


def test_audit_chain_detects_alteration_removal_and_reordering(db_runtime: Runtime) -> None:
    seed(db_runtime)
    with transaction(db_runtime.sessions) as s:
        unit_mode.set_mode(s, ACTOR, "U9", SigningMode.USB_TOKEN)
        unit_mode.set_mode(s, ACTOR, "U9", SigningMode.REMOTE)
    with transaction(db_runtime.sessions) as s:
        assert audit.verify_chain(s) is None
        s.execute(update(AuditEvent).where(AuditEvent.id == 2).values(actor="cli:someone-else"))
    with transaction(db_runtime.sessions) as s:
        bad = audit.verify_chain(s)
        assert bad is not None and bad.id == 2
        s.rollback()
    with transaction(db_runtime.sessions) as s:
        s.execute(update(AuditEvent).where(AuditEvent.id == 2).values(actor=ACTOR.label()))
        assert audit.verify_chain(s) is None
        s.delete(s.get(AuditEvent, 3))
    with transaction(db_runtime.sessions) as s:
        bad = audit.verify_chain(s)
        assert bad is not None and bad.id == 4
