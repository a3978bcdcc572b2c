"""The QR symbol of a label URL: error correction Q, the smallest version that holds it.

The ``qrcode`` package encodes the data; choosing the mask is done here with numpy. ``qrcode`` builds
and scores all eight masked symbols in pure Python (about 4.5 ms a symbol on the reference machine,
45 s for 10,000 labels); here the symbol is built once, the other seven are derived from it by XOR
with precomputed mask patterns, and the ISO/IEC 18004 penalty rules score all eight in one go.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
import qrcode
import qrcode.util
from qrcode.constants import ERROR_CORRECT_Q

from qr.segments import shortest_segments

# Version 5 is 37x37 modules: at 25 mm that is 0.68 mm a module, which a phone reads from about 30 cm.
MAX_VERSION = 5
# Rule 3 of the penalty: a finder-like 1:1:3:1:1 run with four light modules on one side.
_FINDER_LIKE = (
    np.array([1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0], dtype=bool),
    np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1], dtype=bool),
)

Matrix = npt.NDArray[np.bool_]


def _symbol(url: str) -> qrcode.QRCode:
    # The 17-digit code goes in numeric mode and the upper-case signature in alphanumeric mode; the
    # split is priced for versions 1-9 first and again for a larger band only if the text needs one.
    for band_top in (9, 26, 40):
        symbol = qrcode.QRCode(error_correction=ERROR_CORRECT_Q, border=0)
        for segment in shortest_segments(url, band_top):
            symbol.add_data(segment)
        symbol.best_fit(start=None)
        if symbol.version <= band_top:
            break
    return symbol


@lru_cache(maxsize=40)
def _blank_masks(version: int) -> Matrix:
    """The eight symbols of a version whose data bits are all zero: function patterns, format, mask."""
    probe = qrcode.QRCode(version=version, error_correction=ERROR_CORRECT_Q, border=0)
    probe.add_data("0")
    codewords = len(qrcode.util.create_data(version, ERROR_CORRECT_Q, probe.data_list))
    masks = []
    for pattern in range(8):
        probe.data_cache = [0] * codewords
        probe.makeImpl(False, pattern)
        masks.append(np.array(probe.modules, dtype=bool))
    return np.stack(masks)


def _penalties(symbols: Matrix) -> npt.NDArray[np.int64]:
    """ISO/IEC 18004 mask penalty (rules 1-4) of each of a stack of symbols."""
    n = symbols.shape[-1]
    total = np.zeros(symbols.shape[0], dtype=np.int64)
    for grid in (symbols, symbols.transpose(0, 2, 1)):
        # Rule 1: a run of 5 + k modules of one colour costs 3 + k, i.e. (windows of five) + 2 per run.
        same = grid[:, :, 1:] == grid[:, :, :-1]
        windows = same[:, :, :-3] & same[:, :, 1:-2] & same[:, :, 2:-1] & same[:, :, 3:]
        starts = windows.copy()
        starts[:, :, 1:] &= ~same[:, :, : n - 5]
        total += windows.sum(axis=(1, 2)) + 2 * starts.sum(axis=(1, 2))
        # Rule 3: finder-like patterns in rows (and, on the second pass, in columns).
        for pattern in _FINDER_LIKE:
            hit = np.ones((grid.shape[0], n, n - 10), dtype=bool)
            for offset, colour in enumerate(pattern):
                hit &= grid[:, :, offset : n - 10 + offset] == colour
            total += 40 * hit.sum(axis=(1, 2))
    # Rule 2: each 2x2 block of one colour costs 3.
    block = (
        (symbols[:, 1:, 1:] == symbols[:, :-1, 1:])
        & (symbols[:, 1:, 1:] == symbols[:, 1:, :-1])
        & (symbols[:, 1:, 1:] == symbols[:, :-1, :-1])
    )
    total += 3 * block.sum(axis=(1, 2))
    # Rule 4: 10 per whole 5 % the dark share strays from half.
    dark_percent = symbols.sum(axis=(1, 2)) * 100 // (n * n)
    total += 10 * (np.abs(dark_percent - 50) // 5)
    return total


def qr_matrix(url: str) -> Matrix:
    """The module matrix (True = dark, no quiet zone) of ``url`` at error correction Q, best mask."""
    symbol = _symbol(url)
    symbol.makeImpl(False, 0)
    blanks = _blank_masks(symbol.version)
    # The data bits alone, then every masked variant: the mask and format bits are all in the blanks.
    data = np.array(symbol.modules, dtype=bool) ^ blanks[0]
    candidates = blanks ^ data
    return candidates[int(np.argmin(_penalties(candidates)))]


def qr_version(url: str) -> int:
    """The QR version (1-40) ``url`` needs at error correction Q."""
    return int(_symbol(url).version)
