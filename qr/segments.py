"""The shortest split of a text into QR segments (numeric, alphanumeric, byte), found exactly.

``qrcode``'s own optimiser cuts out every run of at least N digits or upper-case characters greedily.
On a label URL that is not always shortest: a signature such as ``1.99.TNES32243FAA`` loses bits when
its five digits become a numeric segment of their own (two extra segment headers cost more than the
digits save), and for the longest documented base URL those few bits decide between version 5 and 6.
Here every split is priced with the exact bit counts of ISO/IEC 18004 and the cheapest one is kept.
"""

from __future__ import annotations

from collections.abc import Iterator

from qrcode.util import MODE_8BIT_BYTE, MODE_ALPHA_NUM, MODE_NUMBER, QRData

_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
_MODE_INDICATOR_BITS = 4
# Character-count field widths (numeric, alphanumeric, byte) for versions 1-9, 10-26 and 27-40.
_COUNT_BITS = {
    9: (10, 9, 8),
    26: (12, 11, 16),
    40: (14, 13, 16),
}


def _numeric_bits(length: int) -> int:
    return 10 * (length // 3) + (0, 4, 7)[length % 3]


def _alphanumeric_bits(length: int) -> int:
    return 11 * (length // 2) + 6 * (length % 2)


def _segment_bits(mode: int, length: int, byte_length: int, count_bits: tuple[int, int, int]) -> int:
    if mode == MODE_NUMBER:
        return _MODE_INDICATOR_BITS + count_bits[0] + _numeric_bits(length)
    if mode == MODE_ALPHA_NUM:
        return _MODE_INDICATOR_BITS + count_bits[1] + _alphanumeric_bits(length)
    return _MODE_INDICATOR_BITS + count_bits[2] + 8 * byte_length


def _class(ch: str) -> int:
    if ch.isascii() and ch.isdigit():
        return MODE_NUMBER
    return MODE_ALPHA_NUM if ch in _ALPHANUMERIC else MODE_8BIT_BYTE


def _splits(text: str, count_bits: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """The cheapest list of ``(start, end, mode)`` covering ``text``.

    Segments only start and end where the character class (digit, other alphanumeric, other) changes:
    moving a boundary into a run of one class hands characters to a mode at least a bit dearer each
    (numeric 10/3, alphanumeric 5.5, byte 8 bits a character), so such a split is never cheaper. That
    keeps the search over a few dozen runs instead of every character position.
    """
    if not text:
        return []
    classes = [_class(ch) for ch in text]
    cuts = [0] + [i for i in range(1, len(text)) if classes[i] != classes[i - 1]] + [len(text)]
    byte_prefix = [0]
    for ch in text:
        byte_prefix.append(byte_prefix[-1] + len(ch.encode("utf-8")))
    best: list[float] = [0.0] + [float("inf")] * (len(cuts) - 1)
    step: list[tuple[int, int]] = [(0, 0)] * len(cuts)
    for i in range(len(cuts) - 1):
        # The widest mode that every run so far from cut i fits: numeric, then alphanumeric, then byte.
        widest = MODE_NUMBER
        for j in range(i + 1, len(cuts)):
            widest = max(widest, classes[cuts[j - 1]])
            length = cuts[j] - cuts[i]
            byte_length = byte_prefix[cuts[j]] - byte_prefix[cuts[i]]
            for mode in (MODE_NUMBER, MODE_ALPHA_NUM, MODE_8BIT_BYTE):
                if mode < widest:
                    continue
                cost = best[i] + _segment_bits(mode, length, byte_length, count_bits)
                if cost < best[j]:
                    best[j] = cost
                    step[j] = (i, mode)
    segments = []
    j = len(cuts) - 1
    while j > 0:
        i, mode = step[j]
        segments.append((cuts[i], cuts[j], mode))
        j = i
    return segments[::-1]


def shortest_segments(text: str, max_version: int) -> Iterator[QRData]:
    """The segments of ``text`` with the fewest bits at the count-field widths of ``max_version``."""
    band = next(top for top in sorted(_COUNT_BITS) if max_version <= top)
    for start, end, mode in _splits(text, _COUNT_BITS[band]):
        yield QRData(text[start:end].encode("utf-8"), mode=mode)
