"""The visible stamp of a PAdES signature: its template, Vietnam-time text and Vietnamese font."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

from fontTools import subset
from fontTools.ttLib import TTFont
from fontTools.ttLib.scaleUpem import scale_upem
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator, GlyphAccumulatorFactory
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.stamp import TextStampStyle

from signer.errors import InvalidStamp

VIETNAMESE_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

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


_TS = re.compile(r"(?<!%)((?:%%)*)%\(ts\)s")
"""An unescaped ``%(ts)s`` (``%%(ts)s`` is the literal text)."""
VIETNAM_TIME = timezone(timedelta(hours=7), "ICT")
"""Indochina Time, UTC+07:00 all year (no daylight saving): what a Vietnamese reader expects on a stamp."""


def stamp_time(moment: datetime | None = None) -> str:
    """The stamp's ``%(ts)s``: Vietnam time, day first, with its offset, whatever the server's zone."""
    return (moment or datetime.now(timezone.utc)).astimezone(VIETNAM_TIME).strftime("%d/%m/%Y %H:%M:%S (UTC+07:00)")


def vietnam_time_template(text: str) -> str:
    """pyHanko fills ``%(ts)s`` in the server's zone: the template asks for :func:`stamp_params`' value instead."""
    return _TS.sub(r"\1%(ts_vietnam)s", text)


def stamp_params() -> dict[str, str]:
    """The appearance text parameters a :func:`vietnam_time_template` template needs."""
    return {"ts_vietnam": stamp_time()}


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


def stamp_style(text: str) -> TextStampStyle:
    # The glyph engine and the text box each have a font size; pyHanko shapes with one and lays
    # out with the other, so they must agree or lines drift.
    font = _StampFontFactory(str(stamp_font()), font_size=STAMP_FONT_SIZE)
    return TextStampStyle(
        stamp_text=text,
        text_box_style=TextBoxStyle(font=font, font_size=STAMP_FONT_SIZE),
        border_width=1,
    )
