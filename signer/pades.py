"""PAdES baseline signatures through pyHanko's interrupted signing, the key wherever it lives.

``prepare`` writes the new revision with a placeholder and returns the digest of the signed
attributes (what the signer approves); ``finish`` embeds the signature value. Files in, files
out: pyHanko reads the input and writes the output incrementally, so a large PDF is never held
whole in memory twice. Fields and their places are in :mod:`signer.pdf_fields`, the visible
stamp in :mod:`signer.stamp`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from asn1crypto import cms, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.fields import MDPPerm, SigSeedSubFilter
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument, PdfTimeStamper, PostSignInstructions
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.validation.dss import async_add_validation_info
from pyhanko_certvalidator.errors import InsufficientRevinfoError, PathBuildingError, PathValidationError, RevokedError
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signer import aio, cades, ltv
from signer.algorithms import DIGEST_SIZES, PssParams, SignatureScheme, signature_algorithm
from signer.errors import InvalidDocument, InvalidFieldPlace, SignerError
from signer.keysigner import KeySigner
from signer.pdf_fields import check_box, new_field, open_for_update, reading
from signer.stamp import DEFAULT_STAMP, check_stamp, stamp_params, stamp_style, vietnam_time_template


@dataclass(frozen=True)
class PadesOptions:
    field_name: str
    certify: bool = False
    """Certify with DocMDP "fill forms and sign" (the first signer of a payment order)."""
    reason: str | None = None
    location: str | None = None
    signer_name: str | None = None
    stamp_text: str | None = None
    """Text of the visible appearance; ``%(signer)s`` and ``%(ts)s`` are filled in."""
    page: int | None = None
    """A field the document does not have yet: the page it goes on (1 is the first)."""
    box: tuple[float, float, float, float] | None = None
    """... and its box in PDF points (x1, y1, x2, y2, origin bottom left). Without one, a new field
    is invisible, and a stamp for it (which would be drawn nowhere) is refused."""

    def __post_init__(self) -> None:
        if self.stamp_text is not None:
            check_stamp(self.stamp_text)
        if self.box is not None:
            check_box(self.box)
        if (self.page is None) != (self.box is None):
            raise InvalidFieldPlace("a new field's place is a page and a box, both or neither")


@dataclass(frozen=True)
class PreparedPdf:
    """A PDF with its signature placeholder written, waiting for the signature value.

    ``dtbs_digest`` (the hash of the DER signed attributes) is what the signer approves and the
    key signs; :func:`finish` embeds the signature into ``work_path`` and moves it into place.
    """

    work_path: Path
    output_path: Path
    prepared_digest: PreparedByteRangeDigest
    post_sign_instructions: PostSignInstructions | None
    signed_attrs_der: bytes
    dtbs_digest: bytes
    hash_name: str


def _external_signer(
    certificate: x509.Certificate, chain: Sequence[x509.Certificate], scheme: SignatureScheme, signature: bytes | int,
    hash_name: str,
) -> signers.ExternalSigner:
    pss = PssParams(hash_name, DIGEST_SIZES[hash_name]) if scheme is SignatureScheme.RSA_PSS else None
    return signers.ExternalSigner(
        signing_cert=certificate,
        cert_registry=SimpleCertificateStore.from_certs(list(chain)),
        signature_value=signature,
        signature_mechanism=signature_algorithm(scheme, hash_name, pss),
        prefer_pss=scheme is SignatureScheme.RSA_PSS,
        embed_roots=False,
    )


def prepare(
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    scheme: SignatureScheme,
    signature_size: int,
    input_path: Path,
    output_path: Path,
    options: PadesOptions,
    hash_name: str = "sha256",
    timestamped: bool = False,
) -> PreparedPdf:
    """Write the signed revision with a placeholder and compute what must be signed.

    ``timestamped`` leaves room in the placeholder for a signature timestamp (B-T and above).
    """
    return aio.run(_prepare(certificate, chain, scheme, signature_size, input_path, output_path, options,
                            hash_name, timestamped))


TIMESTAMP_ROOM = 12_000
"""Bytes a signature timestamp token adds to the CMS: TSTInfo, the TSA's signature and two certificates."""


async def _prepare(
    certificate: x509.Certificate, chain: Sequence[x509.Certificate], scheme: SignatureScheme, signature_size: int,
    input_path: Path, output_path: Path, options: PadesOptions, hash_name: str, timestamped: bool,
) -> PreparedPdf:
    with input_path.open("rb") as pdf_in:
        writer = open_for_update(pdf_in)
        with reading("cannot read this PDF's form"):
            sig_fields = {name: value for name, value, _ in fields.enumerate_sig_fields(writer.prev)}
        if sig_fields.get(options.field_name) is not None:
            raise InvalidDocument(f"field {options.field_name!r} is already signed; a field is never reused")
        if options.certify and any(value is not None for value in sig_fields.values()):
            raise InvalidDocument("only the first signature can certify a document")
        new_field_spec = new_field(writer, options.field_name, options.page, options.box,
                                   options.stamp_text is not None, sig_fields)
        meta = signers.PdfSignatureMetadata(
            field_name=options.field_name,
            md_algorithm=hash_name,
            subfilter=SigSeedSubFilter.PADES,
            certify=options.certify,
            docmdp_permissions=MDPPerm.FILL_FORMS,
            reason=options.reason,
            location=options.location,
            name=options.signer_name,
        )
        external = _external_signer(certificate, chain, scheme, signature_size, hash_name)
        stamp = stamp_style(vietnam_time_template(options.stamp_text or DEFAULT_STAMP))
        pdf_signer = signers.PdfSigner(meta, signer=external, stamp_style=stamp, new_field_spec=new_field_spec)
        work_path = output_path.with_name(output_path.name + ".part")
        try:
            # 0600 whatever the umask: the prepared PDF is the signer's document.
            with reading("cannot sign this PDF"), \
                    os.fdopen(os.open(work_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600), "w+b") as out:
                # Hex digits for the CMS: the bound spares pyHanko a dry-run signature to measure it.
                reserved = 2 * ((TIMESTAMP_ROOM if timestamped else 0) + 4096 + signature_size
                                + sum(len(c.dump()) for c in (certificate, *chain)))
                prepared_digest, tbs, _ = await pdf_signer.async_digest_doc_for_signing(
                    writer, output=out, bytes_reserved=reserved, appearance_text_params=stamp_params())
        except BaseException:
            work_path.unlink(missing_ok=True)
            raise
    der = cades.pades_signed_attributes(certificate, chain, prepared_digest.document_digest, hash_name)
    return PreparedPdf(work_path, output_path, prepared_digest, tbs.post_sign_instructions, der,
                       hashlib.new(hash_name, der).digest(), hash_name)


def finish(
    prepared: PreparedPdf,
    signature: bytes,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    scheme: SignatureScheme,
    level: ltv.Level = ltv.Level.B_B,
    services: ltv.LongTermServices | None = None,
    *,
    accept_lower: bool = False,
) -> ltv.Level:
    """Embed the signature value, add what ``level`` needs, move the signed PDF into place; the level reached.

    With ``accept_lower`` a TSA or revocation outage gives the highest level reached instead of
    an error; a revoked certificate is always an error.
    """
    return aio.run(_finish(prepared, signature, certificate, chain, scheme, level, services, accept_lower))


async def _finish(
    prepared: PreparedPdf, signature: bytes, certificate: x509.Certificate, chain: Sequence[x509.Certificate],
    scheme: SignatureScheme, level: ltv.Level, services: ltv.LongTermServices | None, accept_lower: bool,
) -> ltv.Level:
    external = _external_signer(certificate, chain, scheme, signature, prepared.hash_name)
    signed_attrs = cms.CMSAttributes.load(prepared.signed_attrs_der)
    try:
        reached = ltv.Level.B_B
        signature_cms = None
        if level.timestamped:
            try:
                if services is None:
                    raise ltv.TimestampUnavailable("no TSA is configured")
                signature_cms = await external.async_sign_prescribed_attributes(
                    prepared.hash_name, signed_attrs=signed_attrs, timestamper=services.timestamper())
                reached = ltv.Level.B_T
            except (TimestampRequestError, OSError, ltv.TimestampUnavailable) as exc:
                if not accept_lower:
                    raise ltv.TimestampUnavailable(f"the TSA did not give a timestamp: {type(exc).__name__}") from exc
        if signature_cms is None:
            signature_cms = await external.async_sign_prescribed_attributes(prepared.hash_name, signed_attrs=signed_attrs)
        with prepared.work_path.open("r+b") as output:
            await PdfTBSDocument.async_finish_signing(
                output, prepared.prepared_digest, signature_cms, post_sign_instr=prepared.post_sign_instructions
            )
            if level.long_term and reached is ltv.Level.B_T and services is not None:
                reached = await _add_long_term_data(output, level, services, accept_lower)
        prepared.work_path.replace(prepared.output_path)
        return reached
    except SignerError:
        # It cannot be finished (no timestamp, revoked...): nothing to keep. Any other error keeps
        # the work file, so that a retry can finish it from the stored signature.
        prepared.work_path.unlink(missing_ok=True)
        raise


async def _add_long_term_data(output: BinaryIO, level: ltv.Level, services: ltv.LongTermServices,
                              accept_lower: bool) -> ltv.Level:
    """B-LT: the DSS with the signature's (and its timestamp's) validation data; B-LTA: a document timestamp."""
    output.seek(0)
    signature = PdfFileReader(output, strict=False).embedded_regular_signatures[-1]
    reached = ltv.Level.B_T
    try:
        async with services.fetching_context() as context:
            await async_add_validation_info(signature, context, in_place=True)
            reached = ltv.Level.B_LT
            if level is ltv.Level.B_LTA:
                output.seek(0)
                await PdfTimeStamper(services.timestamper()).async_timestamp_pdf(
                    IncrementalPdfFileWriter(output, strict=False), "sha256", validation_context=context,
                    in_place=True)
                reached = ltv.Level.B_LTA
    except RevokedError as exc:
        raise ltv.CertificateRevoked("a certificate of the signature's chain is revoked") from exc
    except (InsufficientRevinfoError, PathBuildingError, PathValidationError) as exc:
        if not accept_lower:
            raise ltv.RevocationUnavailable(f"validation data could not be gathered: {exc}") from exc
    except (TimestampRequestError, OSError) as exc:
        if not accept_lower:
            raise ltv.TimestampUnavailable(f"the TSA did not give a document timestamp: {type(exc).__name__}") from exc
    return reached


def discard(prepared: PreparedPdf) -> None:
    prepared.work_path.unlink(missing_ok=True)


def sign(key: KeySigner, input_path: Path, output_path: Path, options: PadesOptions,
         level: ltv.Level = ltv.Level.B_B, services: ltv.LongTermServices | None = None) -> None:
    """Sign ``input_path`` into ``output_path`` at ``level`` by incremental update, in one go."""
    prepared = prepare(key.certificate, key.chain, key.scheme, key.signature_size(), input_path, output_path, options,
                       timestamped=level.timestamped)
    try:
        pss = PssParams("sha256", DIGEST_SIZES["sha256"]) if key.scheme is SignatureScheme.RSA_PSS else None
        signature = key.sign(prepared.dtbs_digest, prepared.hash_name, pss=pss)
    except BaseException:
        discard(prepared)
        raise
    finish(prepared, signature, key.certificate, key.chain, key.scheme, level, services)
