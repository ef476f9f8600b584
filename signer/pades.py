"""PAdES baseline signatures through pyHanko's interrupted signing, the key wherever it lives.

``prepare`` writes the new revision with a placeholder and returns the digest of the signed
attributes (what the signer approves); ``finish`` embeds the signature value. Files in, files
out: pyHanko reads the input and writes the output incrementally, so a large PDF is never held
whole in memory twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from asn1crypto import cms, x509
from fontTools import subset
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator, GlyphAccumulatorFactory
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.fields import FieldMDPAction, FieldMDPSpec, MDPPerm, SigFieldSpec, SigSeedSubFilter
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument, PdfTimeStamper, PostSignInstructions
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.validation.dss import async_add_validation_info
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator.errors import InsufficientRevinfoError, PathBuildingError, PathValidationError, RevokedError
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signer import cades, ltv
from signer.algorithms import DIGEST_SIZES, PssParams, SignatureScheme, signature_algorithm
from signer.errors import InvalidDocument, InvalidFieldPlace, InvalidStamp, SignerError
from signer.keysigner import KeySigner

VIETNAMESE_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


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


MIN_BOX_POINTS = 20


def check_box(box: Sequence[float]) -> None:
    if len(box) != 4 or not all(isinstance(v, int | float) and 0 <= v < 100_000 for v in box):
        raise InvalidFieldPlace("a box is four numbers x1, y1, x2, y2 in PDF points")
    x1, y1, x2, y2 = box
    if x2 - x1 < MIN_BOX_POINTS or y2 - y1 < MIN_BOX_POINTS:
        raise InvalidFieldPlace(f"a box is at least {MIN_BOX_POINTS} points wide and high, x1 < x2 and y1 < y2")


STAMP_MAX_CHARS = 200
STAMP_MAX_PLACEHOLDERS = 4
_STAMP_TOKENS = re.compile(r"%%|%\((signer|ts)\)s|%|[^%]+")
"""Left to right, as ``%`` formatting reads it: a lone ``%`` starts any other conversion."""


def check_stamp(text: str) -> None:
    """Only text, ``%(signer)s``, ``%(ts)s`` and ``%%``: pyHanko fills the template with ``%``, so any
    other conversion would be the caller's format string (a width of millions, a ``%d`` that fails)."""
    if len(text) > STAMP_MAX_CHARS:
        raise InvalidStamp(f"the stamp is limited to {STAMP_MAX_CHARS} characters")
    tokens = list(_STAMP_TOKENS.finditer(text))
    if any(t.group() == "%" for t in tokens):
        raise InvalidStamp("the stamp may use only the placeholders %(signer)s and %(ts)s (and %% for a percent sign)")
    if sum(1 for t in tokens if t.group(1)) > STAMP_MAX_PLACEHOLDERS:
        raise InvalidStamp(f"the stamp may hold at most {STAMP_MAX_PLACEHOLDERS} placeholders")


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Whatever a malformed PDF makes the parser raise is the document's fault: InvalidDocument.

    A hostile file reaches places pyHanko does not guard (a catalog that is an array, a missing
    /Pages, arrays nested past the recursion limit, a loop in the form tree). Kyso's own errors and
    the disk's pass through.
    """
    try:
        yield
    except (SignerError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - the parser's errors are many and unlisted
        detail = f"{type(exc).__name__}: {exc}"[:120]
        raise InvalidDocument(f"{what}: {detail}") from exc


def _open_for_update(pdf_in: BinaryIO) -> IncrementalPdfFileWriter:
    with _reading("not a readable PDF"):
        writer = IncrementalPdfFileWriter(pdf_in, strict=False)
        encrypted = writer.prev.encrypted
        writer.root  # noqa: B018 - the catalog must be a dictionary: fail here, not halfway through
    if encrypted:
        raise InvalidDocument("the PDF is encrypted; kyso signs only unencrypted PDFs")
    return writer


def _new_field(writer: IncrementalPdfFileWriter, options: PadesOptions,
               existing: dict[str, object]) -> SigFieldSpec | None:
    """Where a field the document lacks goes: on the page and in the box asked for (inside the page),
    or nowhere (invisible) when no stamp was asked for either."""
    if options.field_name in existing:
        if options.box is not None:
            raise InvalidFieldPlace(f"field {options.field_name!r} exists: its place is the document's, "
                                   "a page and box are only for a new field")
        return None
    if options.box is None:
        if options.stamp_text is not None:
            raise InvalidFieldPlace(f"the document has no field {options.field_name!r}: a visible stamp needs "
                                   "the page and box of the field to create")
        return None
    assert options.page is not None
    with _reading("cannot read this PDF's pages"):
        pages = int(writer.prev.root["/Pages"]["/Count"])
        if not 1 <= options.page <= pages:
            raise InvalidFieldPlace(f"page {options.page} is not in the document ({pages} pages)")
        media = _media_box(writer.prev.find_page_for_modification(options.page - 1)[0])
    x1, y1, x2, y2 = options.box
    if x1 < media[0] or y1 < media[1] or x2 > media[2] or y2 > media[3]:
        raise InvalidFieldPlace(f"the box {tuple(options.box)} is not inside page {options.page} "
                               f"({media[2] - media[0]:.0f} × {media[3] - media[1]:.0f} points)")
    return SigFieldSpec(sig_field_name=options.field_name, on_page=options.page - 1,
                        box=(int(x1), int(y1), int(x2), int(y2)))


def _media_box(page: Any) -> list[float]:
    """A page's MediaBox, inherited from the page tree when the page has none of its own."""
    node = page.get_object() if hasattr(page, "get_object") else page
    for _ in range(64):  # a page tree deeper than this is a loop
        if "/MediaBox" in node:
            return [float(v) for v in node["/MediaBox"]]
        if "/Parent" not in node:
            break
        node = node["/Parent"].get_object() if hasattr(node["/Parent"], "get_object") else node["/Parent"]
    raise InvalidDocument("a page has no MediaBox")


def add_signature_fields(input_path: Path, output_path: Path, specs: Sequence[FieldSpec]) -> None:
    """Add empty signature fields in one incremental update."""
    with input_path.open("rb") as pdf_in, _reading("cannot add fields to this PDF"):
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


_TS = re.compile(r"(?<!%)((?:%%)*)%\(ts\)s")
"""An unescaped ``%(ts)s`` (``%%(ts)s`` is the literal text)."""
VIETNAM_TIME = timezone(timedelta(hours=7), "ICT")
"""Indochina Time, UTC+07:00 all year (no daylight saving): what a Vietnamese reader expects on a stamp."""


def stamp_time(moment: datetime | None = None) -> str:
    """The stamp's ``%(ts)s``: Vietnam time, day first, with its offset, whatever the server's zone."""
    return (moment or datetime.now(timezone.utc)).astimezone(VIETNAM_TIME).strftime("%d/%m/%Y %H:%M:%S (UTC+07:00)")


STAMP_FONT_SIZE = 10
DEFAULT_STAMP = "Ký bởi: %(signer)s\nNgày ký: %(ts)s"


# Latin with Vietnamese (Latin Extended Additional), combining marks, punctuation, đồng sign.
STAMP_UNICODE_RANGES = ((0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x1E00, 0x1EFF), (0x2000, 0x206F),
                        (0x20AB, 0x20AC))


@lru_cache(maxsize=1)
def stamp_font() -> Path:
    """DejaVu Sans cut to Latin and Vietnamese and rescaled to 1000 units per em, cached on disk.

    pyHanko writes glyph widths and kerning in font units into ``/W`` and ``TJ``, which PDF reads
    as thousandths of an em: a 2048-unit TrueType font comes out twice too wide. The cut keeps
    pyHanko's per-signature font subsetting fast.
    """
    from fontTools import subset
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.scaleUpem import scale_upem

    logging.getLogger("fontTools").setLevel(logging.ERROR)
    cache = Path(tempfile.gettempdir()) / f"kyso-fonts-{os.getuid()}"
    cache.mkdir(mode=0o700, exist_ok=True)
    target = cache / f"{VIETNAMESE_FONT.stem}-vi-1000upem.ttf"
    if not target.exists():
        font = TTFont(str(VIETNAMESE_FONT))
        options = subset.Options()
        options.layout_features = ["*"]
        options.drop_tables += ["FFTM"]
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=[u for low, high in STAMP_UNICODE_RANGES for u in range(low, high + 1)])
        subsetter.subset(font)
        if font["head"].unitsPerEm != 1000:
            scale_upem(font, 1000)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        font.save(str(tmp))
        tmp.replace(target)
    return target


class _StampFontEngine(GlyphAccumulator):
    """pyHanko's glyph engine, minus a needless cost: the embedded subset leaves out the layout
    tables (GPOS, GDEF, GSUB; HarfBuzz has already shaped with them), but fontTools still parsed
    DejaVu's large kerning table while subsetting, two thirds of a visible signature's time.
    Dropping them first gives the same subset."""

    def _extract_subset(self, options: subset.Options | None = None) -> None:
        if options is None:  # pyHanko's default options, which drop these tables anyway
            for tag in ("GPOS", "GDEF", "GSUB"):
                if tag in self.tt:
                    del self.tt[tag]
        super()._extract_subset(options)


@dataclass(frozen=True)
class _StampFontFactory(GlyphAccumulatorFactory):
    def create_font_engine(self, writer: BasePdfFileWriter, obj_stream: Any = None) -> GlyphAccumulator:
        if obj_stream is None and writer.stream_xrefs and self.create_objstream_if_needed:
            obj_stream = writer.prepare_object_stream()
        return _StampFontEngine(writer=writer, font_handle=BytesIO(_font_bytes(self.font_file)),
                                font_size=self.font_size, obj_stream=obj_stream)


@lru_cache(maxsize=4)
def _font_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def _stamp_style(text: str) -> TextStampStyle:
    # The glyph engine and the text box each have a font size; pyHanko shapes with one and lays
    # out with the other, so they must agree or lines drift.
    font = _StampFontFactory(str(stamp_font()), font_size=STAMP_FONT_SIZE)
    return TextStampStyle(
        stamp_text=text,
        text_box_style=TextBoxStyle(font=font, font_size=STAMP_FONT_SIZE),
        border_width=1,
    )


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
    return asyncio.run(_prepare(certificate, chain, scheme, signature_size, input_path, output_path, options,
                                hash_name, timestamped))


TIMESTAMP_ROOM = 12_000
"""Bytes a signature timestamp token adds to the CMS: TSTInfo, the TSA's signature and two certificates."""


async def _prepare(
    certificate: x509.Certificate, chain: Sequence[x509.Certificate], scheme: SignatureScheme, signature_size: int,
    input_path: Path, output_path: Path, options: PadesOptions, hash_name: str, timestamped: bool,
) -> PreparedPdf:
    with input_path.open("rb") as pdf_in:
        writer = _open_for_update(pdf_in)
        with _reading("cannot read this PDF's form"):
            sig_fields = {name: value for name, value, _ in fields.enumerate_sig_fields(writer.prev)}
        if sig_fields.get(options.field_name) is not None:
            raise InvalidDocument(f"field {options.field_name!r} is already signed; a field is never reused")
        if options.certify and any(value is not None for value in sig_fields.values()):
            raise InvalidDocument("only the first signature can certify a document")
        new_field = _new_field(writer, options, sig_fields)
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
        # pyHanko fills %(ts)s in the server's zone: the template gets kyso's own Vietnam-time value instead.
        stamp = _stamp_style(_TS.sub(r"\1%(ts_vietnam)s", options.stamp_text or DEFAULT_STAMP))
        pdf_signer = signers.PdfSigner(meta, signer=external, stamp_style=stamp, new_field_spec=new_field)
        work_path = output_path.with_name(output_path.name + ".part")
        try:
            # 0600 whatever the umask: the prepared PDF is the signer's document.
            with _reading("cannot sign this PDF"), \
                    os.fdopen(os.open(work_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600), "w+b") as out:
                # Hex digits for the CMS: the bound spares pyHanko a dry-run signature to measure it.
                reserved = 2 * ((TIMESTAMP_ROOM if timestamped else 0) + 4096 + signature_size
                                + sum(len(c.dump()) for c in (certificate, *chain)))
                prepared_digest, tbs, _ = await pdf_signer.async_digest_doc_for_signing(
                    writer, output=out, bytes_reserved=reserved, appearance_text_params={"ts_vietnam": stamp_time()})
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
    return asyncio.run(_finish(prepared, signature, certificate, chain, scheme, level, services, accept_lower))


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
