"""The QR symbol of a label URL: error correction Q, the smallest version that holds it."""

from __future__ import annotations

import qrcode
from qrcode.constants import ERROR_CORRECT_Q

# Version 5 is 37x37 modules: at 25 mm that is 0.68 mm a module, which a phone reads from about 30 cm.
MAX_VERSION = 5
# Splitting runs of at least this many digits / alphanumerics into their own segments lets the 17-digit
# code and the upper-case signature use the denser numeric and alphanumeric modes instead of bytes.
_SEGMENT_MIN = 4


def qr_matrix(url: str) -> list[list[bool]]:
    """The module matrix (True = dark, no quiet zone) of ``url`` at error correction Q."""
    symbol = qrcode.QRCode(error_correction=ERROR_CORRECT_Q, border=0)
    symbol.add_data(url, optimize=_SEGMENT_MIN)
    symbol.make(fit=True)
    return symbol.get_matrix()


def qr_version(url: str) -> int:
    """The QR version (1-40) ``url`` needs at error correction Q."""
    return (len(qr_matrix(url)) - 17) // 4
