"""How names are compared: the one folding used for unit, class and complaint-category names."""

from __future__ import annotations

import unicodedata


def fold(name: str) -> str:
    """A name as matched: NFKC (full-width letters and digits to half-width) and no blanks anywhere,
    so 路 灯, 路灯 and a full-width variant are one name."""
    return "".join(unicodedata.normalize("NFKC", name).split())
