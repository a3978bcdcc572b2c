"""统一社会信用代码 (unified social credit code, GB 32100-2015) validation."""

from __future__ import annotations

import unicodedata

from common.errors import InvalidInput

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
_VALUES = {char: value for value, char in enumerate(ALPHABET)}
_WEIGHTS = [pow(3, i, 31) for i in range(17)]  # 1, 3, 9, 27, 19, 26, ...


def credit_check_character(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters of a credit code."""
    total = sum(_VALUES[char] * weight for char, weight in zip(first17, _WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def normalize_credit_code(text: str) -> str:
    """Validate a credit code and return it upper-cased; raise ``InvalidInput`` saying what is wrong."""
    code = unicodedata.normalize("NFKC", text).strip().upper().replace(" ", "")
    if len(code) != 18:
        raise InvalidInput(
            f"统一社会信用代码 {text!r} has {len(code)} characters; it must have 18", field="credit_code"
        )
    bad = [char for char in code if char not in _VALUES]
    if bad:
        raise InvalidInput(
            f"统一社会信用代码 {text!r} contains {bad[0]!r}, which is not allowed "
            "(digits and letters except I, O, S, V, Z)",
            field="credit_code",
        )
    if not code[2:8].isdigit():
        raise InvalidInput(
            f"统一社会信用代码 {text!r}: characters 3-8 must be the 6-digit county code",
            field="credit_code",
        )
    expected = credit_check_character(code[:17])
    if code[17] != expected:
        raise InvalidInput(
            f"统一社会信用代码 {text!r} fails its check character (expected {expected}, got {code[17]})",
            field="credit_code",
        )
    return code


def is_valid_credit_code(text: str) -> bool:
    """True when ``text`` is a well-formed credit code with the right check character."""
    try:
        normalize_credit_code(text)
    except InvalidInput:
        return False
    return True
