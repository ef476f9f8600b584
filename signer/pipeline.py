"""One document pipeline for every caller: prepare a document for a key, then finish it with the signature.

:func:`prepare` does the format's work up to the digest the key must sign (``dtbs_digest``) and
returns a :class:`PendingDocument`: typed, and serialisable (:meth:`PendingDocument.to_dict`), so
that a request can be approved minutes later, by another process, or after a restart.
:func:`finish` embeds the signature, adds what the level needs (a timestamp, validation data),
and writes the signed document whole or not at all (a temporary file, fsync, rename). The REST
API's worker, ``kyso sign`` and the sandbox's unconfirmed signing all go through here, so that
levels, file modes and the rules for work files are the same for all of them:

- a work file is 0600, and goes when the document cannot be finished (a :class:`SignerError`);
  any other error keeps it, so that a retry finishes from the stored signature;
- a PDF whose output exists while its work file is gone was finished by a run that died before
  it could say so: finishing it again is a no-op.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from asn1crypto import x509
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest

from signer import aio, cades, ltv, pades, xades
from signer.algorithms import DIGEST_SIZES, PssParams, SignatureScheme, file_digest
from signer.errors import InvalidDocument, SignerError
from signer.keysigner import KeySigner, signature_size

VERSION = 1
"""Of :meth:`PendingDocument.to_dict`; version 0 is the same keys without ``v`` (read as well)."""
HASH_NAME = "sha256"


@dataclass(frozen=True)
class SigningMaterial:
    """What a format needs of a key besides the key itself."""

    certificate: x509.Certificate
    intermediates: list[x509.Certificate]
    """The chain to embed: intermediates only; roots are the verifier's trust anchors."""
    scheme: SignatureScheme

    @property
    def signature_size(self) -> int:
        return signature_size(self.certificate, self.scheme)

    @property
    def pss(self) -> PssParams | None:
        """kyso's PSS parameters for a PSS key: MGF1 with SHA-256, a 32-byte salt."""
        return PssParams(HASH_NAME, DIGEST_SIZES[HASH_NAME]) if self.scheme is SignatureScheme.RSA_PSS else None


@dataclass(frozen=True)
class PadesSpec:
    """A PAdES signature into ``field_name`` (made if missing), by incremental update."""

    field_name: str = "Signature1"
    certify: bool = False
    reason: str | None = None
    location: str | None = None
    stamp_text: str | None = None
    signer_name: str = ""
    page: int | None = None
    """A new field's page (1 is the first) and box in points (x1, y1, x2, y2): see :class:`pades.PadesOptions`."""
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class CadesSpec:
    """A CAdES signature: detached (``.p7s`` beside its content) or enveloping (``.p7m``)."""

    enveloping: bool = False


@dataclass(frozen=True)
class XadesSpec:
    """An enveloped XAdES signature over the element ``reference_id``, placed in ``placement``."""

    reference_id: str
    placement: str
    claimed_role: str | None = None


Spec = PadesSpec | CadesSpec | XadesSpec

FORMAT_NAMES = {"pades": "PAdES", "cades": "CAdES", "xades": "XAdES"}
SUFFIXES = {"pades": ".pdf", "cades": ".p7s", "cades-enveloping": ".p7m", "xades": ".xml"}


def kind_of(spec: Spec) -> str:
    if isinstance(spec, PadesSpec):
        return "pades"
    if isinstance(spec, XadesSpec):
        return "xades"
    return "cades-enveloping" if spec.enveloping else "cades"


@dataclass(frozen=True)
class PendingDocument:
    """A prepared document waiting for its signature value; everything :func:`finish` needs."""

    kind: str
    """``pades``, ``cades`` or ``xades``."""
    dtbs_digest: bytes
    """What the key signs: SHA-256 of the CMS signed attributes, or of XAdES's canonical SignedInfo."""
    document_sha256: str
    """Hex SHA-256 of the document as given (what the signer is told)."""
    output: Path
    work_path: Path | None = None
    """PAdES: the prepared PDF; XAdES: the prepared XML; CAdES: the content to envelop, or None."""
    signed_attrs: bytes | None = None
    """CAdES and PAdES: the DER signed attributes."""
    byte_range_digest: bytes | None = None
    region: tuple[int, int] | None = None
    work_size: int | None = None
    """PAdES: the prepared file's size, so that what a dead run appended is cut off before a retry."""
    signature_id: str | None = None
    signing_time: datetime | None = None
    shown: dict[str, str] = field(default_factory=dict)
    """What the signer should see of the format (XAdES: the signed element and the start of its text)."""

    @property
    def enveloping(self) -> bool:
        return self.kind == "cades" and self.work_path is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and versioned: what a request keeps until it is finished."""
        data: dict[str, Any] = {"v": VERSION, "kind": self.kind, "dtbs": self.dtbs_digest.hex(),
                                "document_sha256": self.document_sha256, "output": str(self.output)}
        if self.kind == "cades":
            data["content"] = str(self.work_path) if self.work_path else None
        elif self.work_path is not None:
            data["work_path"] = str(self.work_path)
        if self.signed_attrs is not None:
            data["signed_attrs"] = base64.b64encode(self.signed_attrs).decode()
        if self.byte_range_digest is not None:
            data["document_digest"] = self.byte_range_digest.hex()
        if self.region is not None:
            data["region"] = list(self.region)
        if self.work_size is not None:
            data["work_size"] = self.work_size
        if self.signature_id is not None:
            data["signature_id"] = self.signature_id
        if self.signing_time is not None:
            data["signing_time"] = self.signing_time.isoformat()
        if self.shown:
            data["shown"] = dict(self.shown)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingDocument:
        version = int(data.get("v", 0))
        if version > VERSION:
            raise InvalidDocument(f"a pending document of version {version} is newer than this kyso ({VERSION})")
        kind = str(data["kind"])
        work = data.get("content") if kind == "cades" else data.get("work_path")
        region = data.get("region")
        when = data.get("signing_time")
        return cls(
            kind=kind,
            dtbs_digest=bytes.fromhex(data["dtbs"]) if "dtbs" in data else b"",
            document_sha256=str(data.get("document_sha256", "")),
            output=Path(data["output"]),
            work_path=Path(work) if work else None,
            signed_attrs=base64.b64decode(data["signed_attrs"]) if data.get("signed_attrs") else None,
            byte_range_digest=bytes.fromhex(data["document_digest"]) if data.get("document_digest") else None,
            region=(int(region[0]), int(region[1])) if region else None,
            work_size=int(data["work_size"]) if data.get("work_size") is not None else None,
            signature_id=data.get("signature_id"),
            signing_time=datetime.fromisoformat(when) if when else None,
            shown=dict(data.get("shown") or {}),
        )


def output_name(spec: Spec, stem: str) -> str:
    """The signed document's file name for ``stem``: the format's suffix added."""
    return f"{stem}{SUFFIXES[kind_of(spec)]}"


def prepare(material: SigningMaterial, spec: Spec, source: Path, output: Path, *,
            level: ltv.Level = ltv.Level.B_B) -> PendingDocument:
    """Prepare ``source`` for ``material``'s key, to be signed into ``output``; work files go beside
    it (``output.part``, 0600). ``level`` matters to PAdES, which leaves room for a timestamp."""
    if isinstance(spec, CadesSpec) and not spec.enveloping:
        return prepare_detached(material, file_digest(source), output)
    document_sha256 = file_digest(source).hex()
    if isinstance(spec, PadesSpec):
        return _prepare_pdf(material, spec, source, output, document_sha256, level)
    if isinstance(spec, XadesSpec):
        return _prepare_xml(material, spec, source, output, document_sha256)
    tbs = cades.prepare(material.certificate, material.intermediates, content=source.read_bytes(), detached=False)
    return PendingDocument("cades", tbs.dtbs_digest, document_sha256, output, source, signed_attrs=tbs.signed_attrs_der)


def prepare_detached(material: SigningMaterial, content_sha256: bytes, output: Path) -> PendingDocument:
    """A detached CAdES signature over content known by its SHA-256 only: the content is not kept
    (nothing reads it again), so a caller holding it in memory need not write it anywhere."""
    tbs = cades.prepare(material.certificate, material.intermediates, content_digest=content_sha256)
    return PendingDocument("cades", tbs.dtbs_digest, content_sha256.hex(), output, None,
                           signed_attrs=tbs.signed_attrs_der)


def _prepare_pdf(material: SigningMaterial, spec: PadesSpec, source: Path, output: Path, document_sha256: str,
                 level: ltv.Level) -> PendingDocument:
    if not is_pdf(source):
        raise InvalidDocument("the document is not a PDF")
    options = pades.PadesOptions(spec.field_name, spec.certify, spec.reason, spec.location, spec.signer_name,
                                 spec.stamp_text, spec.page, tuple(spec.box) if spec.box is not None else None)
    prepared = pades.prepare(material.certificate, material.intermediates, material.scheme, material.signature_size,
                             source, output, options, timestamped=level.timestamped)
    digest = prepared.prepared_digest
    return PendingDocument("pades", prepared.dtbs_digest, document_sha256, output, prepared.work_path,
                           signed_attrs=prepared.signed_attrs_der, byte_range_digest=digest.document_digest,
                           region=(digest.reserved_region_start, digest.reserved_region_end),
                           work_size=prepared.work_path.stat().st_size)


def _prepare_xml(material: SigningMaterial, spec: XadesSpec, source: Path, output: Path,
                 document_sha256: str) -> PendingDocument:
    options = xades.XadesOptions(spec.reference_id, spec.placement, claimed_role=spec.claimed_role)
    prepared = xades.prepare(source.read_bytes(), material.certificate, tuple(material.intermediates),
                             material.scheme, options)
    work_path = output.with_name(output.name + ".part")
    _write(work_path, prepared.document)
    return PendingDocument("xades", prepared.dtbs_digest, document_sha256, output, work_path,
                           signature_id=prepared.signature_id, signing_time=prepared.signing_time,
                           shown={"signed_element": prepared.signed_element, "reference_id": prepared.reference_id,
                                  "placement": prepared.placement, "data_preview": prepared.data_preview,
                                  "data_digest": prepared.data_digest.hex()})


def is_pdf(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(5) == b"%PDF-"


def finish(pending: PendingDocument, signature: bytes, material: SigningMaterial,
           level: ltv.Level = ltv.Level.B_B, services: ltv.LongTermServices | None = None, *,
           accept_lower: bool = False) -> ltv.Level:
    """Write the signed document at ``level`` (or lower with ``accept_lower``); the level reached."""
    if pending.kind == "pades":
        return _finish_pdf(pending, signature, material, level, services, accept_lower)
    if pending.kind == "xades":
        return _finish_xml(pending, signature, material, level, services, accept_lower)
    if pending.kind != "cades" or pending.signed_attrs is None:
        raise InvalidDocument(f"a pending document of an unknown kind {pending.kind!r}")
    content = pending.work_path.read_bytes() if pending.work_path is not None else None
    tbs = cades.CadesToBeSigned(pending.signed_attrs, b"", HASH_NAME, content)
    data, reached = cades.finish(tbs, signature, material.certificate, material.intermediates, material.scheme,
                                   material.pss, level, services, accept_lower=accept_lower)
    _write(pending.output, data)
    return reached


def _finish_pdf(pending: PendingDocument, signature: bytes, material: SigningMaterial, level: ltv.Level,
                services: ltv.LongTermServices | None, accept_lower: bool) -> ltv.Level:
    assert pending.work_path is not None and pending.region is not None and pending.signed_attrs is not None
    if pending.output.exists() and not pending.work_path.exists():
        return level  # finished by a run that died before saying so
    if not pending.work_path.exists():
        raise InvalidDocument("the prepared document is gone (its work file was removed); not finished")
    if pending.work_size is not None:  # drop what a run that died while finishing may have appended
        os.truncate(pending.work_path, pending.work_size)
    prepared = pades.PreparedPdf(
        pending.work_path, pending.output,
        PreparedByteRangeDigest(pending.byte_range_digest or b"", pending.region[0], pending.region[1]),
        None, pending.signed_attrs, pending.dtbs_digest, HASH_NAME)
    reached = pades.finish(prepared, signature, material.certificate, material.intermediates, material.scheme,
                           level, services, accept_lower=accept_lower)
    _fsync(pending.output)
    return reached


def _finish_xml(pending: PendingDocument, signature: bytes, material: SigningMaterial, level: ltv.Level,
                services: ltv.LongTermServices | None, accept_lower: bool) -> ltv.Level:
    assert pending.work_path is not None and pending.signature_id is not None
    if pending.output.exists() and not pending.work_path.exists():
        return level
    if not pending.work_path.exists():
        raise InvalidDocument("the prepared document is gone (its work file was removed); not finished")
    prepared = xades.PreparedXml(
        document=pending.work_path.read_bytes(), signature_id=pending.signature_id,
        dtbs_digest=pending.dtbs_digest, document_digest=bytes.fromhex(pending.document_sha256),
        data_digest=bytes.fromhex(pending.shown.get("data_digest", "")),
        reference_id=pending.shown.get("reference_id", ""), placement=pending.shown.get("placement", ""),
        signed_element=pending.shown.get("signed_element", ""), data_preview=pending.shown.get("data_preview", ""),
        signing_time=pending.signing_time or datetime.now().astimezone(), scheme=material.scheme,
        certificate=material.certificate, chain=tuple(material.intermediates), pss=material.pss)
    try:
        data, reached = aio.run(xades.async_finish(prepared, signature, level, services,
                                                    accept_lower=accept_lower))
    except SignerError:
        pending.work_path.unlink(missing_ok=True)
        raise
    _write(pending.output, data)
    pending.work_path.unlink(missing_ok=True)
    return reached


def discard(pending: PendingDocument) -> None:
    """Remove what :func:`prepare` wrote (never the caller's own source file)."""
    if pending.kind in ("pades", "xades") and pending.work_path is not None:
        pending.work_path.unlink(missing_ok=True)


def sign(key: KeySigner, spec: Spec, source: Path, output: Path, *, level: ltv.Level = ltv.Level.B_B,
         services: ltv.LongTermServices | None = None) -> tuple[PendingDocument, ltv.Level]:
    """Prepare, sign with ``key`` and finish in one go: what was signed, and the level reached."""
    material = SigningMaterial(key.certificate, list(key.chain), key.scheme)
    pending = prepare(material, spec, source, output, level=level)
    try:
        signature = key.sign(pending.dtbs_digest, HASH_NAME, pss=material.pss)
    except BaseException:
        discard(pending)
        raise
    return pending, finish(pending, signature, material, level, services)


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all, 0600: a reader never sees a half-written file."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())
