"""The 17-digit smart code: a 16-digit 数字城管 component identifier plus an ISO/IEC 7064 check digit.

Layout: county (6, GB/T 2260) + class (4: big class 2 + small class 2) + serial (6) + check (1).
Printed grouped as ``440310-0118-000123-4``; accepted with or without separators and whitespace.
The check digit uses MOD 11,10 (GB/T 17710 = ISO/IEC 7064), which catches every single-digit
error and every adjacent transposition.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from common.errors import CheckDigitMismatch, InvalidCode
from registry.messages import Bilingual, both

SERIAL_MAX = 999_999
IDENTIFIER_LENGTH = 16
CODE_LENGTH = 17

# Separators people type or scanners emit between groups; full-width forms are folded by NFKC first.
_SEPARATORS = re.compile(r"[\s\-_.·/]+")
# A QR label encodes a URL such as https://host/c/440310-0118-000123-4?s=...; take the code segment.
_URL_CODE = re.compile(r"/c/([^/?#]+)")


def mod11_10_check_digit(digits: str) -> str:
    """Compute the ISO/IEC 7064 MOD 11,10 check digit for a string of decimal digits."""
    product = 10
    for char in digits:
        total = (product + int(char)) % 10 or 10
        product = (total * 2) % 11
    return str((11 - product) % 10)


def _mod11_10_state(product: npt.NDArray[np.int64], digit: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    total = (product + digit) % 10
    total[total == 0] = 10
    return (total * 2) % 11


def check_digits(prefix10: str, serials: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Vectorised MOD 11,10 check digits of ``prefix10 + serial:06d`` for many serials at once (0-9)."""
    if len(prefix10) != 10 or not prefix10.isdigit():
        raise InvalidCode(f"prefix must be 10 digits (county 6 + class 4), got {prefix10!r}")
    values = np.asarray(serials, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() > SERIAL_MAX):
        raise InvalidCode(f"serials must be between 000000 and {SERIAL_MAX}")
    # The prefix is shared, so its part of the recurrence is computed once as a scalar.
    product = 10
    for char in prefix10:
        product = (((product + int(char)) % 10 or 10) * 2) % 11
    state = np.full(values.shape, product, dtype=np.int64)
    for power in (100_000, 10_000, 1_000, 100, 10, 1):
        state = _mod11_10_state(state, (values // power) % 10)
    return ((11 - state) % 10).astype(np.uint8)


def mod11_10_is_valid(digits_with_check: str) -> bool:
    """True when the last digit is the correct MOD 11,10 check digit of the ones before it."""
    body, check = digits_with_check[:-1], digits_with_check[-1]
    return mod11_10_check_digit(body) == check


@dataclass(frozen=True, slots=True)
class SmartCode:
    """A parsed smart code; ``str()`` gives the 17 plain digits used as the registry key."""

    county: str
    class_code: str
    serial: int

    def __post_init__(self) -> None:
        if len(self.county) != 6 or not self.county.isdigit():
            raise InvalidCode(f"county code must be 6 digits, got {self.county!r}")
        if len(self.class_code) != 4 or not self.class_code.isdigit():
            raise InvalidCode(f"class code must be 4 digits, got {self.class_code!r}")
        if not 0 <= self.serial <= SERIAL_MAX:
            raise InvalidCode(f"serial must be between 000000 and {SERIAL_MAX}, got {self.serial}")

    @property
    def identifier(self) -> str:
        """The 16-digit 数字城管 component identifier (no check digit)."""
        return f"{self.county}{self.class_code}{self.serial:06d}"

    @property
    def check_digit(self) -> str:
        """The MOD 11,10 check digit of the identifier."""
        return mod11_10_check_digit(self.identifier)

    @property
    def formatted(self) -> str:
        """The grouped form printed on labels, e.g. ``440310-0118-000123-4``."""
        return f"{self.county}-{self.class_code}-{self.serial:06d}-{self.check_digit}"

    def __str__(self) -> str:
        return self.identifier + self.check_digit


def normalize(text: str) -> str:
    """Strip a scanned or typed code down to its digits (URL, separators, full-width forms removed)."""
    folded = unicodedata.normalize("NFKC", text).strip()
    url_match = _URL_CODE.search(folded)
    if url_match:
        folded = url_match.group(1)
    return _SEPARATORS.sub("", folded)


def parse_code(text: str, *, allow_identifier: bool = True) -> SmartCode:
    """Parse a 17-digit smart code, or (when allowed) a 16-digit identifier that lacks its check digit.

    Raises ``InvalidCode`` for anything not shaped like a code and ``CheckDigitMismatch`` when the
    shape is right but the check digit is not, so a mistyped code is told apart from an unknown one.
    """
    digits = normalize(text)
    if not digits:
        raise InvalidCode(both("err.code.empty"))
    if not digits.isdigit():
        bad = next(c for c in digits if not c.isdigit())
        raise InvalidCode(both("err.code.digits", code=text, bad=bad), code=text)
    if len(digits) == IDENTIFIER_LENGTH and allow_identifier:
        return SmartCode(digits[:6], digits[6:10], int(digits[10:16]))
    if len(digits) != CODE_LENGTH:
        expected = Bilingual("16 或 17", "16 or 17") if allow_identifier else "17"
        raise InvalidCode(both("err.code.length", code=text, count=len(digits), expected=expected), code=text)
    code = SmartCode(digits[:6], digits[6:10], int(digits[10:16]))
    if code.check_digit != digits[16]:
        raise CheckDigitMismatch(
            both("err.code.check", code=text, expected=code.check_digit, got=digits[16]), code=text
        )
    return code


def near_misses(digits: str) -> list[str]:
    """Valid 17-digit codes one typo away: one digit changed, or two adjacent digits swapped."""
    candidates: set[str] = set()
    for i, original in enumerate(digits):
        for replacement in "0123456789":
            if replacement != original:
                candidates.add(digits[:i] + replacement + digits[i + 1 :])
    for i in range(len(digits) - 1):
        if digits[i] != digits[i + 1]:
            candidates.add(digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :])
    return sorted(c for c in candidates if mod11_10_is_valid(c))
