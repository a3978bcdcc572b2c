"""The CJK font labels are printed in: Noto Sans CJK SC from Debian's ``fonts-noto-cjk``.

PNG output draws with the installed font directly (FreeType reads its CFF outlines). For PDF the
characters a print run needs are cut out of the font (``fontTools.subset``) and their cubic CFF outlines
converted to quadratic TrueType ones, which every PDF reader (and reportlab, tried first) accepts as an
embedded CIDFontType2; the result, a few hundred glyphs, is what the PDF embeds.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from common.errors import ConfigurationError

# (file, index in the collection); Debian's fonts-noto-cjk first, other CJK fonts as a fallback.
_CANDIDATES = (
    (Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"), 2),  # index 2: Noto Sans CJK SC
    (Path("/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf"), 0),
    (Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"), 0),
)
FAMILY = "Noto Sans CJK SC"
# How far a converted curve may stray from the original, in font units (1000 per em): invisible on a label.
_MAX_CURVE_ERROR = 1.0


@dataclass(frozen=True)
class CjkFont:
    """An installed CJK font file and the index of the face to use in it."""

    path: Path
    index: int


@lru_cache(maxsize=1)
def cjk_font() -> CjkFont:
    """The installed CJK font; ``ConfigurationError`` when none is (scripts/setup.sh installs it)."""
    for path, index in _CANDIDATES:
        if path.exists():
            return CjkFont(path, index)
    raise ConfigurationError(
        "no CJK font installed for labels: install Debian's fonts-noto-cjk (scripts/setup.sh does)"
    )


def truetype_subset(chars: Iterable[str]) -> bytes:
    """A TrueType font holding just ``chars`` (plus ASCII), converted from the installed CJK font."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font_file = cjk_font()
    font = TTFont(font_file.path, fontNumber=font_file.index, lazy=True)
    options = subset.Options()
    options.layout_features = []  # labels need no shaping: one glyph per character
    options.hinting = False
    options.notdef_outline = True
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6]
    subsetter = subset.Subsetter(options)
    text = "".join(sorted(set(chars) | {chr(c) for c in range(32, 127)}))
    subsetter.populate(text=text)
    subsetter.subset(font)
    if "CFF " in font:
        _cff_to_glyf(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def _cff_to_glyf(font: object) -> None:
    """Replace the font's CFF outlines by TrueType ones, in place."""
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import newTable

    tt = font  # a fontTools TTFont; typed loosely because fontTools ships no stubs
    order = tt.getGlyphOrder()  # type: ignore[attr-defined]
    glyph_set = tt.getGlyphSet()  # type: ignore[attr-defined]
    converted = {}
    for name in order:
        pen = TTGlyphPen(glyph_set)
        # CFF contours run counter-clockwise, TrueType ones clockwise: reverse while converting.
        glyph_set[name].draw(Cu2QuPen(pen, _MAX_CURVE_ERROR, reverse_direction=True))
        converted[name] = pen.glyph()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = converted
    tt["loca"] = newTable("loca")  # type: ignore[index]
    tt["glyf"] = glyf  # type: ignore[index]
    del tt["CFF "]  # type: ignore[attr-defined]
    if "VORG" in tt:  # type: ignore[operator]
        del tt["VORG"]  # type: ignore[attr-defined]
    glyf.compile(tt)
    metrics = tt["hmtx"].metrics  # type: ignore[index]
    for name, glyph in converted.items():
        advance, _ = metrics[name]
        metrics[name] = (advance, getattr(glyph, "xMin", 0) if glyph.numberOfContours else 0)
    maxp = newTable("maxp")
    maxp.tableVersion = 0x00010000
    for field in (
        "maxZones",
        "maxTwilightPoints",
        "maxStorage",
        "maxFunctionDefs",
        "maxInstructionDefs",
        "maxStackElements",
        "maxSizeOfInstructions",
        "maxComponentElements",
    ):
        setattr(maxp, field, 1 if field == "maxZones" else 0)
    tt["maxp"] = maxp  # type: ignore[index]
    post = tt["post"]  # type: ignore[index]
    post.formatType = 2.0
    post.extraNames = []
    post.mapping = {}
    post.glyphOrder = order
    tt.sfntVersion = "\x00\x01\x00\x00"  # type: ignore[attr-defined]
