"""Storage: blob modes, uploads under the load limits, housekeeping of work files and retention (410)."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from biometrics import Decision
from broker import clients, directory
from broker.db.engine import read_transaction, transaction
from broker.db.models import AuditEvent, Document, SigningMode, SigningRequest
from broker.lifecycle import housekeeping, load_limits, uploads
from broker.lifecycle.signing_requests import now
from broker.runtime import Runtime
from demo.documents import write_payment_order_pdf
from tests.conftest import ACTOR, Enrolled
from tests.support import AutoApprover, b64, bearer_http, make_device, relying_system_client, wait_done

PENDING_FOREVER = "ec"
"""hung's credential: no phone of hung answers in this module, so its requests stay pending."""


@pytest.fixture(scope="module")
def phones(runtime: Runtime, live_server: str, enrolled: Enrolled) -> Iterator[AutoApprover]:
    approver = AutoApprover([make_device(runtime, live_server, "lan")])
    yield approver
    approver.stop()


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, phones: AutoApprover) -> Iterator[httpx.Client]:
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-retention")) as http:
        yield http


@pytest.fixture
def saved_settings(runtime: Runtime) -> Iterator[None]:
    names = ("rate_limit_per_minute", "max_uploads_per_relying_system", "max_upload_bytes_per_relying_system",
             "document_retention_days")
    saved = {name: getattr(runtime.settings, name) for name in names}
    yield
    for name, value in saved.items():
        setattr(runtime.settings, name, value)


def payload(runtime: Runtime, request_id: str) -> dict[str, Any]:
    with read_transaction(runtime.sessions) as s:
        request = s.get(SigningRequest, request_id)
        assert request is not None
        return dict(request.payload or {})


def blobs_state(runtime: Runtime, request_id: str) -> str | None:
    with read_transaction(runtime.sessions) as s:
        return s.scalar(select(SigningRequest.blobs).where(SigningRequest.id == request_id))


def delete_events(runtime: Runtime, after: int) -> list[dict[str, Any]]:
    with read_transaction(runtime.sessions) as s:
        return [dict(e.details or {}) for e in s.scalars(select(AuditEvent).where(
            AuditEvent.id > after, AuditEvent.action == housekeeping.ACTION).order_by(AuditEvent.id))]


def last_event(runtime: Runtime) -> int:
    with read_transaction(runtime.sessions) as s:
        return int(s.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1)) or 0)


def sweep(runtime: Runtime) -> housekeeping.Swept:
    return housekeeping.sweep(runtime.sessions, runtime.settings, ACTOR)


def private(path: Path) -> bool:
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode == (0o700 if path.is_dir() else 0o600)


def pdf(tmp_path: Path, name: str = "order.pdf") -> bytes:
    write_payment_order_pdf(tmp_path / name)
    return (tmp_path / name).read_bytes()


# -- modes ----------------------------------------------------------------------------------------


def test_every_blob_is_0600_in_0700_directories(api: httpx.Client, runtime: Runtime, enrolled: Enrolled,
                                                tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: modes must not depend on it
    saved = runtime.settings.blob_dir
    runtime.settings.blob_dir = tmp_path / "shared-storage"  # KYSO_BLOB_DIR outside the data dir
    runtime.settings.blob_dir.mkdir(mode=0o755)
    try:
        uploaded = api.put("/v1/documents", content=pdf(tmp_path), headers={"Content-Type": "application/pdf"})
        assert uploaded.status_code == 201, uploaded.text
        created = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "format": "pades", "documents": [
            {"document_id": uploaded.json()["document_id"], "title": "UNC-M1"},
            {"content": b64(pdf(tmp_path, "second.pdf")), "title": "UNC-M2"}]})
        assert created.status_code == 201, created.text
        work = Path(payload(runtime, created.json()["request_id"])["work"])
        in_flight = sorted(work.iterdir())  # inputs and prepared PDFs, before signing
        done = wait_done(api, created.json()["request_id"])
        assert done["state"] == "signed", done
        cades = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "format": "cades", "documents": [
            {"content": b64(b"<UNC/>"), "title": "UNC-M3", "enveloping": True}]})
        assert wait_done(api, cades.json()["request_id"])["state"] == "signed"
        blobs = runtime.settings.blobs
    finally:
        os.umask(old)
        runtime.settings.blob_dir = saved
    paths = [blobs, blobs / "documents", blobs / "work", *in_flight, *blobs.rglob("*")]
    assert in_flight and all(private(p) for p in paths if p.exists()), \
        [(p, oct(p.stat().st_mode)) for p in paths if p.exists() and not private(p)]


# -- uploads under the load limits ------------------------------------------------------------------


def test_uploads_count_against_the_load_limits(runtime: Runtime, live_server: str, saved_settings: None) -> None:
    documents = runtime.settings.blobs / "documents"
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-upload-caps")) as http:
        runtime.settings.max_uploads_per_relying_system = 2
        for n in range(2):
            assert http.put("/v1/documents", content=b"x" * 100).status_code == 201
        before = set(documents.iterdir())
        refused = http.put("/v1/documents", content=b"x" * 100)
        assert (refused.status_code, refused.json()["code"]) == (429, "upload_quota_exceeded"), refused.text
        assert "Retry-After" in refused.headers
        runtime.settings.max_uploads_per_relying_system = 100
        runtime.settings.max_upload_bytes_per_relying_system = 250
        declared = http.put("/v1/documents", content=b"x" * 100)  # 300 bytes stored: refused before reading
        assert (declared.status_code, declared.json()["code"]) == (429, "upload_quota_exceeded")
        streamed = http.put("/v1/documents", content=iter([b"x" * 60, b"x" * 40]))  # no Content-Length
        assert (streamed.status_code, streamed.json()["code"]) == (429, "upload_quota_exceeded"), streamed.text
        assert set(documents.iterdir()) == before  # nothing of a refused upload stays on disk
        with read_transaction(runtime.sessions) as s:
            stored = load_limits.stored_uploads(s.connection(), "dvc-upload-caps")
        assert stored == (2, 200)
        runtime.settings.max_upload_bytes_per_relying_system = 10**9
        runtime.settings.rate_limit_per_minute = 3
        assert http.put("/v1/documents", content=b"y").status_code == 201
        limited = http.put("/v1/documents", content=b"y")
        assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60


# -- housekeeping -----------------------------------------------------------------------------------


def test_work_files_go_when_a_request_ends_unsigned(api: httpx.Client, runtime: Runtime, enrolled: Enrolled,
                                                    phones: AutoApprover, tmp_path: Path) -> None:
    body = {"format": "pades", "documents": [{"content": b64(pdf(tmp_path)), "title": "UNC-E"}]}
    cancelled = api.post("/v1/requests", json={"credential_id": getattr(enrolled, PENDING_FOREVER), **body}).json()
    expired = api.post("/v1/requests", json={"credential_id": getattr(enrolled, PENDING_FOREVER), **body}).json()
    assert api.post(f"/v1/requests/{cancelled['request_id']}/cancel").status_code == 200
    with transaction(runtime.sessions) as s:  # its time ran out and nobody asked about it since
        s.execute(update(SigningRequest).where(SigningRequest.id == expired["request_id"])
                  .values(expires_at=now() - timedelta(seconds=1)))
    phones.decision = Decision.REFUSE
    try:
        refused = api.post("/v1/requests", json={"credential_id": enrolled.rsa, **body}).json()
        assert wait_done(api, refused["request_id"])["state"] == "rejected"
    finally:
        phones.decision = Decision.APPROVE
    ids = [cancelled["request_id"], expired["request_id"], refused["request_id"]]
    works = [Path(payload(runtime, i)["work"]) for i in ids]
    assert all(w.is_dir() and any(w.iterdir()) for w in works)
    mark = last_event(runtime)

    swept = sweep(runtime)

    assert not any(w.exists() for w in works)
    assert [blobs_state(runtime, i) for i in ids] == ["gone"] * 3
    assert api.get(f"/v1/requests/{expired['request_id']}").json()["state"] == "expired"
    events = delete_events(runtime, mark)
    assert set(ids) <= {i for e in events for i in e["requests"]}
    assert sum(e["unsigned"] for e in events) >= 3 and all(e["files"] >= 0 and e["bytes"] >= 0 for e in events)
    assert swept.unsigned >= 3
    mark = last_event(runtime)
    again = sweep(runtime)  # idempotent: nothing left to delete, nothing audited
    assert not again.anything and delete_events(runtime, mark) == []


def test_signed_and_uploaded_documents_go_after_retention_then_answer_410(
        api: httpx.Client, runtime: Runtime, enrolled: Enrolled, tmp_path: Path) -> None:
    uploaded = api.put("/v1/documents", content=b"<UNC>retained</UNC>").json()
    unused = api.put("/v1/documents", content=b"<UNC>never used</UNC>").json()
    created = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "format": "cades", "documents": [
        {"document_id": uploaded["document_id"], "title": "UNC-R"}]}).json()
    done = wait_done(api, created["request_id"])
    assert done["state"] == "signed", done
    url = done["documents"][0].split(str(api.base_url).rstrip("/"))[-1]
    work = Path(payload(runtime, created["request_id"])["work"])
    output = Path(payload(runtime, created["request_id"])["documents"][0]["output"])

    sweep(runtime)  # ended signed: the work files go, the signed document stays for the retention period
    assert blobs_state(runtime, created["request_id"]) == "kept"
    assert sorted(work.iterdir()) == [output]
    assert api.get(url).status_code == 200

    with transaction(runtime.sessions) as s:  # the retention period passes
        s.execute(update(SigningRequest).where(SigningRequest.id == created["request_id"])
                  .values(ended_at=now() - timedelta(days=31)))
        s.execute(update(Document).where(Document.id.in_([uploaded["document_id"], unused["document_id"]]))
                  .values(retained_from=now() - timedelta(days=31)))
    mark = last_event(runtime)
    swept = sweep(runtime)
    assert swept.signed >= 1 and swept.uploads >= 2
    assert not work.exists()
    for document_id in (uploaded["document_id"], unused["document_id"]):
        assert not (runtime.settings.blobs / "documents" / document_id).exists()
    [event] = delete_events(runtime, mark)
    assert created["request_id"] in event["requests"] and uploaded["document_id"] in event["documents"]
    assert event["retention_days"] == runtime.settings.document_retention_days

    gone = api.get(url)
    assert (gone.status_code, gone.json()["code"]) == (410, "document_gone")
    reuse = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "format": "cades", "documents": [
        {"document_id": unused["document_id"], "title": "again"}]})
    assert (reuse.status_code, reuse.json()["code"]) == (410, "document_gone")
    after = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "format": "cades",
                                           "after_request_id": created["request_id"], "documents": [{"title": "x"}]})
    assert (after.status_code, after.json()["code"]) == (410, "document_gone")


def test_an_upload_a_pending_request_signs_is_kept_until_the_request_can_end(
        api: httpx.Client, runtime: Runtime, enrolled: Enrolled) -> None:
    uploaded = api.put("/v1/documents", content=b"<UNC>held</UNC>").json()
    with transaction(runtime.sessions) as s:  # uploaded long ago: its own retention has run out
        s.execute(update(Document).where(Document.id == uploaded["document_id"])
                  .values(retained_from=now() - timedelta(days=31)))
    created = api.post("/v1/requests", json={"credential_id": getattr(enrolled, PENDING_FOREVER), "format": "cades",
                                             "documents": [{"document_id": uploaded["document_id"], "title": "UNC"}]})
    assert created.status_code == 201, created.text
    with read_transaction(runtime.sessions) as s:
        request = s.get(SigningRequest, created.json()["request_id"])
        document = s.get(Document, uploaded["document_id"])
        assert request is not None and document is not None
        assert document.retained_from == request.expires_at  # held while the signer may still approve
    sweep(runtime)
    assert (runtime.settings.blobs / "documents" / uploaded["document_id"]).exists()
    api.post(f"/v1/requests/{created.json()['request_id']}/cancel")


def test_a_missing_signed_file_answers_410_not_500(api: httpx.Client, runtime: Runtime, enrolled: Enrolled) -> None:
    """What a restore without documents leaves: the request is signed, its file is not there."""
    created = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "format": "cades", "documents": [
        {"content": b64(b"<UNC/>"), "title": "UNC-G"}]}).json()
    done = wait_done(api, created["request_id"])
    Path(payload(runtime, created["request_id"])["documents"][0]["output"]).unlink()
    gone = api.get(done["documents"][0].split(str(api.base_url).rstrip("/"))[-1])
    assert (gone.status_code, gone.json()["code"]) == (410, "document_gone")
    reuse = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "format": "cades",
                                           "after_request_id": created["request_id"], "documents": [{"title": "x"}]})
    assert (reuse.status_code, reuse.json()["code"]) == (410, "document_gone")


def test_several_workers_sweep_each_request_once(api: httpx.Client, runtime: Runtime, enrolled: Enrolled) -> None:
    ids = []
    for n in range(6):
        created = api.post("/v1/requests", json={"credential_id": getattr(enrolled, PENDING_FOREVER), "format": "cades",
                                                 "documents": [{"content": b64(b"<UNC/>" * n), "title": f"W{n}"}]})
        ids.append(created.json()["request_id"])
        assert api.post(f"/v1/requests/{ids[-1]}/cancel").status_code == 200
    mark = last_event(runtime)
    results: list[housekeeping.Swept] = []
    barrier = threading.Barrier(3)

    def worker() -> None:
        barrier.wait()
        results.append(sweep(runtime))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counted = [i for r in results for i in r.requests if i in ids]
    assert sorted(counted) == sorted(ids)  # each one deleted, counted and audited by exactly one worker
    audited = [i for e in delete_events(runtime, mark) for i in e["requests"] if i in ids]
    assert sorted(audited) == sorted(ids)
    assert all(not Path(payload(runtime, i)["work"]).exists() for i in ids)


def test_upload_retention_and_caps_on_each_database(db_runtime: Runtime) -> None:
    """The housekeeping and cap queries on SQLite and PostgreSQL."""
    rt = db_runtime
    with transaction(rt.sessions) as s:
        directory.add_unit(s, ACTOR, "U001", "Trường", SigningMode.REMOTE)
        clients.add_relying_system(s, ACTOR, "dvc-db", ["U001"])
        client, _ = clients.add_client(s, ACTOR, "dvc-db")
        client_id = client.client_id
    folder = rt.settings.blobs / "documents"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    ctx = clients.ClientContext(client_id, "dvc-db", frozenset(), frozenset({"sign"}))
    for name, age in (("old-db", 40), ("new-db", 1)):
        files[name] = folder / f"{name}-{rt.engine.dialect.name}"
        files[name].write_bytes(b"z" * 10)
        uploads.register_upload(rt.sessions, ctx, files[name].name, files[name], 10, "0" * 64, "text/plain", rt.settings)
        with transaction(rt.sessions) as s:
            s.execute(update(Document).where(Document.id == files[name].name)
                      .values(retained_from=now() - timedelta(days=age)))
    with read_transaction(rt.sessions) as s:
        assert load_limits.stored_uploads(s.connection(), "dvc-db") == (2, 20)
        rt.settings.max_uploads_per_relying_system, saved = 2, rt.settings.max_uploads_per_relying_system
        try:
            with pytest.raises(load_limits.UploadQuotaExceeded):
                load_limits.admit_upload(s.connection(), rt.settings, "dvc-db", 1)
        finally:
            rt.settings.max_uploads_per_relying_system = saved
    swept = housekeeping.sweep(rt.sessions, rt.settings, ACTOR)
    assert swept.uploads == 1 and swept.bytes == 10
    assert not files["old-db"].exists() and files["new-db"].exists()
    assert housekeeping.sweep(rt.sessions, rt.settings, ACTOR).uploads == 0
    with read_transaction(rt.sessions) as s:
        assert load_limits.stored_uploads(s.connection(), "dvc-db") == (1, 10)
        [event] = s.scalars(select(AuditEvent).where(AuditEvent.action == housekeeping.ACTION))
        assert event.details["documents"] == [f"old-db-{rt.engine.dialect.name}"]
