"""A small PDF writer that streams pages to the output as they are drawn.

General PDF libraries keep every page's content in memory until the document is saved; 10,000 labels
are about 50 MB of page text that way. Here each page is compressed and written at once, and only its
object number and file offset stay behind, so memory does not grow with the number of labels beyond
a few integers a page. It knows exactly one font, a TrueType font embedded whole as a CID font
(Identity-H, glyph ids as codes) with a ToUnicode map, so text can be searched and copied.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from typing import BinaryIO

_COMPRESSION = 6
_BFCHAR_BATCH = 100  # entries a bfchar block may hold


def _number(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


class PdfWriter:
    """Writes a PDF of same-sized pages to ``out``: ``add_page`` per page, then ``close``."""

    def __init__(self, out: BinaryIO, font_ttf: bytes, page_size: tuple[float, float], title: str) -> None:
        from fontTools.ttLib import TTFont

        self._out = out
        self._written = 0
        self._offsets: dict[int, int] = {}
        self._pages: list[int] = []
        self._next = 4  # 1 catalog, 2 page tree, 3 font: written last, referenced from the start
        self._page_size = page_size
        self._title = title
        self._font_data = font_ttf
        font = TTFont(io.BytesIO(font_ttf))
        self._scale = 1000 / font["head"].unitsPerEm
        self._gids = {chr(cp): font.getGlyphID(name) for cp, name in font.getBestCmap().items()}
        self._advance = {font.getGlyphID(name): width for name, (width, _) in font["hmtx"].metrics.items()}
        head, os2 = font["head"], font["OS/2"]
        self._bbox = [round(v * self._scale) for v in (head.xMin, head.yMin, head.xMax, head.yMax)]
        self._ascent = round(os2.sTypoAscender * self._scale)
        self._descent = round(os2.sTypoDescender * self._scale)
        self._cap = round(getattr(os2, "sCapHeight", os2.sTypoAscender) * self._scale)
        self._ps_name = str(font["name"].getDebugName(6) or "CJK").replace(" ", "")
        self._used: dict[int, str] = {}
        self._emit(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")

    # --- low level ---

    def _emit(self, data: bytes) -> None:
        self._out.write(data)
        self._written += len(data)

    def _object(self, number: int, body: bytes) -> None:
        self._offsets[number] = self._written
        self._emit(b"%d 0 obj\n" % number + body + b"\nendobj\n")

    def _stream(self, number: int, data: bytes, extra: str = "") -> None:
        packed = zlib.compress(data, _COMPRESSION)
        head = f"<< /Length {len(packed)} /Filter /FlateDecode{extra} >>\nstream\n".encode()
        self._object(number, head + packed + b"\nendstream")

    def _allocate(self) -> int:
        self._next += 1
        return self._next - 1

    # --- what callers use ---

    def text(self, value: str) -> str:
        """``value`` as a PDF string operand for ``Tj`` in the embedded font (hex glyph ids)."""
        codes = []
        for char in value:
            gid = self._gids.get(char, 0)
            self._used.setdefault(gid, char)
            codes.append(f"{gid:04X}")
        return "<" + "".join(codes) + ">"

    def add_page(self, content: str) -> None:
        """Compress and write one page whose content stream is ``content`` (font resource /F1)."""
        stream, page = self._allocate(), self._allocate()
        self._stream(stream, content.encode("latin-1"))
        width, height = self._page_size
        self._object(
            page,
            (
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {_number(width)} {_number(height)}] "
                f"/Resources << /Font << /F1 3 0 R >> >> /Contents {stream} 0 R >>"
            ).encode(),
        )
        self._pages.append(page)

    def close(self) -> None:
        """Write the font, the page tree, the catalogue and the cross-reference table."""
        tag = "".join(chr(65 + b % 26) for b in hashlib.sha256(self._font_data).digest()[:6])
        name = f"{tag}+{self._ps_name}"
        cid_font, descriptor, font_file, to_unicode = (self._allocate() for _ in range(4))
        widths = " ".join(
            f"{gid} [{round(self._advance.get(gid, 1000) * self._scale)}]" for gid in sorted(self._used)
        )
        self._object(
            3,
            (
                f"<< /Type /Font /Subtype /Type0 /BaseFont /{name} /Encoding /Identity-H "
                f"/DescendantFonts [{cid_font} 0 R] /ToUnicode {to_unicode} 0 R >>"
            ).encode(),
        )
        self._object(
            cid_font,
            (
                f"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /{name} "
                "/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> "
                f"/FontDescriptor {descriptor} 0 R /DW 1000 /W [{widths}] /CIDToGIDMap /Identity >>"
            ).encode(),
        )
        self._object(
            descriptor,
            (
                f"<< /Type /FontDescriptor /FontName /{name} /Flags 4 "
                f"/FontBBox [{' '.join(map(str, self._bbox))}] "
                f"/ItalicAngle 0 /Ascent {self._ascent} /Descent {self._descent} /CapHeight {self._cap} "
                f"/StemV 80 /FontFile2 {font_file} 0 R >>"
            ).encode(),
        )
        self._stream(font_file, self._font_data, f" /Length1 {len(self._font_data)}")
        self._stream(to_unicode, self._cmap().encode("ascii"))
        kids = " ".join(f"{page} 0 R" for page in self._pages)
        self._object(2, f"<< /Type /Pages /Count {len(self._pages)} /Kids [{kids}] >>".encode())
        self._object(1, b"<< /Type /Catalog /Pages 2 0 R >>")
        info = self._allocate()
        title = self._title.encode("utf-16-be").hex().upper()
        self._object(info, f"<< /Title <FEFF{title}> /Producer (smartcode) >>".encode())
        xref_at = self._written
        rows = ["xref", f"0 {self._next}", "0000000000 65535 f "]
        rows += [f"{self._offsets[number]:010d} 00000 n " for number in range(1, self._next)]
        rows += [
            "trailer",
            f"<< /Size {self._next} /Root 1 0 R /Info {info} 0 R >>",
            "startxref",
            str(xref_at),
        ]
        self._emit(("\n".join(rows) + "\n%%EOF\n").encode("ascii"))

    def _cmap(self) -> str:
        entries = sorted(self._used.items())
        blocks = []
        for first in range(0, len(entries), _BFCHAR_BATCH):
            batch = entries[first : first + _BFCHAR_BATCH]
            lines = [f"<{gid:04X}> <{char.encode('utf-16-be').hex().upper()}>" for gid, char in batch]
            blocks.append(f"{len(batch)} beginbfchar\n" + "\n".join(lines) + "\nendbfchar")
        return (
            "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
            "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
            "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
            + "\n".join(blocks)
            + "\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
        )
