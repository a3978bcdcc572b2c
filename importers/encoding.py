"""Choosing the text encoding of a DBF (shapefile attributes) or a CSV file.

Chinese inventories come in GBK (Windows exports, older ArcGIS) or UTF-8 (QGIS, newer GDAL), often
with no .cpg file. A wrong guess turns every name into mojibake and breaks unit matching, so the
rule is: what the caller says wins, then what the file declares (.cpg, BOM, the DBF language driver
byte), and only then a detection from the bytes themselves, reported as "detected".
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from charset_normalizer import from_bytes

from common.errors import InvalidInput
from importers.source import EncodingOrigin
from registry.messages import both

# Bytes of non-ASCII text to collect before deciding: plenty for a confident answer, cheap to read.
_EVIDENCE_BYTES = 1 << 20
_BLOCK_BYTES = 1 << 20

# .cpg contents seen in the field (upper-cased, blanks removed) -> encoding name Python and GDAL share.
_CODEPAGES: dict[str, str] = {
    "UTF-8": "UTF-8",
    "UTF8": "UTF-8",
    "65001": "UTF-8",
    "936": "GBK",
    "CP936": "GBK",
    "ANSI936": "GBK",
    "GBK": "GBK",
    "MS936": "GBK",
    "WINDOWS-936": "GBK",
    # GB2312 labels often sit on files that use a few GBK-only characters; GBK is a superset.
    "GB2312": "GBK",
    "20936": "GBK",
    "EUC-CN": "GBK",
    "GB18030": "GB18030",
    "54936": "GB18030",
    "950": "BIG5",
    "CP950": "BIG5",
    "BIG5": "BIG5",
    "1252": "CP1252",
    "ANSI1252": "CP1252",
    "CP1252": "CP1252",
    "WINDOWS-1252": "CP1252",
    "88591": "ISO-8859-1",
    "ISO-8859-1": "ISO-8859-1",
    "ISO88591": "ISO-8859-1",
}

# dBASE language driver ids (DBF header byte 29) that name an encoding unambiguously. 0x57 ("ANSI",
# i.e. whatever the writing machine used) and 0 (none) say nothing and are left to detection.
_LDIDS: dict[int, str] = {
    0x4D: "GBK",
    0x7A: "GBK",
    0x4F: "BIG5",
    0x78: "BIG5",
    0x03: "CP1252",
    0x58: "CP1252",
    0x59: "CP1252",
}


@dataclass(frozen=True, slots=True)
class EncodingChoice:
    """The encoding to read with, where that answer came from, and a line for the user."""

    encoding: str
    origin: EncodingOrigin
    detail: str


def codepage_to_encoding(value: str) -> str | None:
    """Map a .cpg value or a user's encoding name ("936", "ANSI 936", "utf8") to an encoding name."""
    key = "".join(value.split()).upper()
    if key in _CODEPAGES:
        return _CODEPAGES[key]
    try:
        info = codecs.lookup(value.strip())
    except (LookupError, ValueError):  # ValueError: a name with NUL in it
        return None
    # rot13, hex, base64, zlib... are codecs too, but they do not turn bytes into text.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name.upper()


def detect_bytes_encoding(blocks: Iterable[bytes]) -> tuple[str, str]:
    """Guess UTF-8 vs GBK/GB18030 (others via charset-normalizer) from byte blocks; (encoding, why).

    Blocks must not split a character (cut them at record or line boundaries). ASCII-only blocks
    are skipped, so a file whose Chinese text starts late is still judged on its Chinese text.
    """
    evidence = bytearray()
    for block in blocks:
        if block.isascii():
            continue
        evidence += block
        if len(evidence) >= _EVIDENCE_BYTES:
            break
    if not evidence:
        return "UTF-8", both("enc.ascii")
    sample = bytes(evidence)
    non_ascii = int(np.count_nonzero(np.frombuffer(sample, dtype=np.uint8) >= 0x80))
    decoded = sample.decode("utf-8", errors="replace")
    bad = decoded.count("\ufffd")
    if bad == 0:
        return "UTF-8", both("enc.utf8")
    # A UTF-8 writer that cut a fixed-width DBF field in the middle of a character leaves a few
    # broken sequences; GBK text read as UTF-8 breaks on nearly every character instead.
    if bad <= max(2, non_ascii // 200):
        return "UTF-8", both("enc.utf8_truncated", bad=bad)
    for candidate in ("GBK", "GB18030"):
        try:
            sample.decode(candidate)
        except UnicodeDecodeError:
            continue
        return candidate, both("enc.gbk", encoding=candidate)
    best = from_bytes(sample).best()
    if best is not None and best.encoding:
        return best.encoding.upper(), both("enc.guess", encoding=best.encoding)
    return "GB18030", both("enc.fallback")


def _decodes_as(blocks: Iterable[bytes], encoding: str) -> bool:
    """True when the non-ASCII evidence decodes strictly in ``encoding``."""
    seen = 0
    for block in blocks:
        if block.isascii():
            continue
        try:
            block.decode(encoding)
        except UnicodeDecodeError:
            return False
        seen += len(block)
        if seen >= _EVIDENCE_BYTES:
            break
    return True


def _dbf_blocks(dbf: IO[bytes]) -> Iterator[bytes]:
    """Field-name descriptors, then the record area of a DBF in blocks cut at record boundaries."""
    dbf.seek(0)
    header = dbf.read(32)
    if len(header) < 32:
        return
    header_len, record_len = struct.unpack("<HH", header[8:12])
    # Field names may be Chinese too, and GDAL decodes them with the same encoding.
    yield dbf.read(max(0, header_len - 32))
    if record_len <= 0:
        return
    dbf.seek(header_len)
    per_block = max(1, _BLOCK_BYTES // record_len) * record_len
    while block := dbf.read(per_block):
        yield block


def dbf_ldid(dbf: IO[bytes]) -> int:
    """The language driver id byte (29) of a DBF header, 0 when absent."""
    dbf.seek(0)
    header = dbf.read(32)
    return header[29] if len(header) >= 32 else 0


def dbf_encoding(dbf: IO[bytes], cpg_text: str | None = None, override: str | None = None) -> EncodingChoice:
    """Encoding of a shapefile's DBF: the caller's choice, then the .cpg, the LDID byte, detection."""
    if override:
        name = codepage_to_encoding(override)
        if name is None:
            raise InvalidInput(both("enc.unknown", name=override), given=override)
        return EncodingChoice(name, "argument", both("enc.given", encoding=override))
    if cpg_text is not None and cpg_text.strip():
        name = codepage_to_encoding(cpg_text.strip())
        if name is not None:
            return EncodingChoice(name, "declared", both("enc.cpg", value=cpg_text.strip()))
        # An unusable .cpg is not fatal: fall through to detection, but say so.
        encoding, why = detect_bytes_encoding(_dbf_blocks(dbf))
        return EncodingChoice(encoding, "detected", both("enc.cpg_unknown", value=cpg_text.strip(), why=why))
    ldid = dbf_ldid(dbf)
    ldid_encoding = _LDIDS.get(ldid)
    if ldid_encoding is not None:
        # Language driver bytes are often stale (copied by tools that re-encode the data), so trust
        # one only when the data actually decodes that way.
        if _decodes_as(_dbf_blocks(dbf), ldid_encoding):
            return EncodingChoice(ldid_encoding, "declared", both("enc.ldid", ldid=ldid))
        encoding, why = detect_bytes_encoding(_dbf_blocks(dbf))
        return EncodingChoice(encoding, "detected", both("enc.ldid_mismatch", ldid=ldid, why=why))
    encoding, why = detect_bytes_encoding(_dbf_blocks(dbf))
    return EncodingChoice(encoding, "detected", both("enc.no_cpg", why=why))


def _line_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """A byte stream in blocks cut after a newline, so no multi-byte character is split."""
    carry = b""
    while True:
        block = stream.read(_BLOCK_BYTES)
        if not block:
            if carry:
                yield carry
            return
        block = carry + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            carry = block
            continue
        carry = block[cut:]
        yield block[:cut]


_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    # Excel's "Unicode text" export is UTF-16 with a BOM (and tab-separated).
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def text_file_encoding(path: Path, override: str | None = None) -> EncodingChoice:
    """Encoding of a text (CSV) file: the caller's choice, a byte-order mark, or detection."""
    if override:
        name = codepage_to_encoding(override)
        if name is None:
            raise InvalidInput(both("enc.unknown", name=override), given=override)
        if name == "UTF-8":
            # utf-8-sig reads plain UTF-8 too and drops a BOM that would otherwise stick to the
            # first column name.
            name = "utf-8-sig"
        return EncodingChoice(name, "argument", both("enc.given", encoding=override))
    with path.open("rb") as stream:
        head = stream.read(4)
        for bom, name in _BOMS:
            if head.startswith(bom):
                return EncodingChoice(name, "declared", both("enc.bom"))
        stream.seek(0)
        encoding, why = detect_bytes_encoding(_line_blocks(stream))
    return EncodingChoice("utf-8-sig" if encoding == "UTF-8" else encoding, "detected", why)
