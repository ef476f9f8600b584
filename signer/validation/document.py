"""A signed file validated whole: its format told from its first bytes, each signature's verdict, one report."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

from signer.validation import cms, pdf, xml
from signer.validation.errors import NotSigned
from signer.validation.policy import ValidationOptions, signature_spec, validation_timing
from signer.validation_report import ValidationPolicyInfo, ValidationReport

PDF_MAGIC_WINDOW = 1024
"""Readers accept a PDF header within the first kilobyte."""


def validate_file(path: Path, options: ValidationOptions, *, content: Path | None = None,
                  name: str | None = None) -> ValidationReport:
    """Validate every signature of the signed file at ``path``; ``content``: a detached CMS's content."""
    sha256, size = _file_digest(path, "sha256")
    with path.open("rb") as fh:
        head = fh.read(PDF_MAGIC_WINDOW)
    now = options.at or datetime.now(timezone.utc)
    policy = ValidationPolicyInfo(
        trust_store=options.trust.source,
        trust_anchors=[c.subject.human_friendly for c in options.trust.anchors],
        validation_time=now, at_current_time=options.at is None, revocation_fetching=options.fetch_revocation)
    timing_info = validation_timing(options, now)
    spec = signature_spec(options)
    if size == 0:
        raise NotSigned("the file is empty")
    if b"%PDF-" in head:
        fmt, verdicts, content_sha = "PDF", pdf.validate_pdf(path, spec, timing_info, options), None
    elif looks_like_xml(head):
        fmt, content_sha = "XML", None
        verdicts = xml.validate(path.read_bytes(), spec, timing_info, options)
    else:
        fmt = "CMS"
        content_sha = _file_digest(content, "sha256")[0] if content is not None else None
        verdicts = cms.validate_cms(path.read_bytes(), content, spec, timing_info)
    return ValidationReport(document=name or path.name, format=fmt, sha256=sha256, size=size, policy=policy,
                            signatures=verdicts, detached_content_sha256=content_sha)


def looks_like_xml(head: bytes) -> bool:
    """XML starts with ``<`` (``<?xml`` or the root element), maybe after a byte order mark and blanks."""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    elif head[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16: drop the zero halves to see the first character
        head = head[2:].replace(b"\0", b"")
    return head.lstrip()[:1] == b"<"


def _file_digest(path: Path, algorithm: str) -> tuple[str, int]:
    digest, size = hashlib.new(algorithm), 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
