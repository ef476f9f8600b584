"""PAdES baseline signatures through pyHanko, with the key wherever the KeySigner keeps it.

Files in, files out: pyHanko reads the input and writes the output incrementally, so a large
PDF is never held whole in memory twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign import fields, signers
from pyhanko.sign.fields import FieldMDPAction, FieldMDPSpec, MDPPerm, SigFieldSpec, SigSeedSubFilter
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signer.algorithms import DIGEST_SIZES, PssParams, Scheme, signature_algorithm
from signer.errors import InvalidDocument
from signer.keysigner import KeySigner

VIETNAMESE_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


class PyHankoKeySigner(signers.Signer):
    """pyHanko's ``Signer`` whose raw signature comes from a :class:`KeySigner`."""

    def __init__(self, key: KeySigner, hash_name: str = "sha256") -> None:
        self._key = key
        self._pss = PssParams(hash_name, DIGEST_SIZES[hash_name]) if key.scheme is Scheme.RSA_PSS else None
        mechanism = signature_algorithm(key.scheme, hash_name, self._pss)
        super().__init__(
            signing_cert=key.certificate,
            cert_registry=SimpleCertificateStore.from_certs(list(key.chain)),
            signature_mechanism=mechanism,
            prefer_pss=key.scheme is Scheme.RSA_PSS,
            embed_roots=False,
        )

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if dry_run:
            return bytes(self._key.signature_size())
        digest = hashlib.new(digest_algorithm, data).digest()
        return self._key.sign(digest, digest_algorithm, pss=self._pss)


@dataclass(frozen=True)
class FieldSpec:
    """A signature field to create before anyone signs."""

    name: str
    page: int = 0
    box: tuple[int, int, int, int] | None = None
    lock_self: bool = False
    """Lock this field once signed (FieldMDP), as the certifying signer's field does."""


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


def _open_for_update(pdf_in: BinaryIO) -> IncrementalPdfFileWriter:
    try:
        writer = IncrementalPdfFileWriter(pdf_in, strict=False)
    except (PdfError, ValueError, IndexError, KeyError, TypeError) as exc:
        raise InvalidDocument(f"not a readable PDF: {exc}") from None
    if writer.prev.encrypted:
        raise InvalidDocument("the PDF is encrypted; kyso signs only unencrypted PDFs")
    return writer


def add_signature_fields(input_path: Path, output_path: Path, specs: Sequence[FieldSpec]) -> None:
    """Add empty signature fields in one incremental update."""
    with input_path.open("rb") as pdf_in:
        writer = _open_for_update(pdf_in)
        existing = {name for name, _, _ in fields.enumerate_sig_fields(writer.prev)}
        for spec in specs:
            if spec.name in existing:
                raise InvalidDocument(f"the PDF already has a field named {spec.name!r}")
            lock = FieldMDPSpec(FieldMDPAction.INCLUDE, fields=[spec.name]) if spec.lock_self else None
            fields.append_signature_field(
                writer,
                SigFieldSpec(sig_field_name=spec.name, on_page=spec.page, box=spec.box, field_mdp_spec=lock),
            )
        with output_path.open("wb") as out:
            writer.write(out)


def _stamp_style(text: str) -> TextStampStyle:
    return TextStampStyle(
        stamp_text=text,
        text_box_style=TextBoxStyle(font=GlyphAccumulatorFactory(str(VIETNAMESE_FONT)), font_size=9),
        border_width=1,
    )


def sign(key: KeySigner, input_path: Path, output_path: Path, options: PadesOptions) -> None:
    """Sign ``input_path`` into ``output_path`` (PAdES B-B) by incremental update."""
    with input_path.open("rb") as pdf_in:
        writer = _open_for_update(pdf_in)
        sig_fields = {name: (value, ref) for name, value, ref in fields.enumerate_sig_fields(writer.prev)}
        if options.field_name in sig_fields and sig_fields[options.field_name][0] is not None:
            raise InvalidDocument(f"field {options.field_name!r} is already signed; a field is never reused")
        if options.certify and any(value is not None for value, _ in sig_fields.values()):
            raise InvalidDocument("only the first signature can certify a document")
        meta = signers.PdfSignatureMetadata(
            field_name=options.field_name,
            md_algorithm="sha256",
            subfilter=SigSeedSubFilter.PADES,
            certify=options.certify,
            docmdp_permissions=MDPPerm.FILL_FORMS,
            reason=options.reason,
            location=options.location,
            name=options.signer_name,
        )
        stamp = _stamp_style(options.stamp_text) if options.stamp_text else None
        pdf_signer = signers.PdfSigner(meta, signer=PyHankoKeySigner(key), stamp_style=stamp)
        tmp = output_path.with_name(output_path.name + ".part")
        try:
            with tmp.open("wb") as out:
                pdf_signer.sign_pdf(writer, output=out)
            tmp.replace(output_path)
        except (PdfError, ValueError) as exc:
            raise InvalidDocument(f"cannot sign this PDF: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
