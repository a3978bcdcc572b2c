"""Reading a single coordinate written by people: decimal degrees or degrees-minutes-seconds.

Handles the spellings met in spreadsheets and survey sheets: ``114°21'30.5"``, ``114°21′30.5″``,
``114 21 30.5``, ``114:21:30.5``, ``114d21m30.5s``, ``E114°21'30.5"``, ``22°41'N``, ``东经114度21分``,
full-width characters (``１１４°２１′``) and a decimal comma (``22,5``) when it cannot be a separator.
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from typing import Literal

from common.errors import InvalidInput

Axis = Literal["lon", "lat"]

# Look-alike characters, mapped before NFKC (which would turn the ordinal º into the letter "o"
# and the double prime into two primes).
_LOOKALIKES = str.maketrans(
    {
        "º": "°",
        "˚": "°",
        "⁰": "°",
        "′": "'",
        "’": "'",
        "‘": "'",
        "`": "'",
        "´": "'",
        "″": '"',
        "”": '"',
        "“": '"',
        "−": "-",
        "–": "-",
    }
)

_TOKEN = re.compile(
    r"""
    (?P<num>\d+(?:\.\d*)?|(?<!\d)\.\d+)
    |(?P<deg>°|度|degrees?|deg|d)
    |(?P<sec>''|"|秒|seconds?|secs?|s)
    |(?P<min>'|分|minutes?|mins?|m)
    |(?P<hemi>[nsew]|东经|東經|西经|西經|北纬|北緯|南纬|南緯)
    |(?P<sep>[\s:;/_]+)
    """,
    re.VERBOSE,
)

_HEMISPHERE = {
    "n": "n",
    "s": "s",
    "e": "e",
    "w": "w",
    "东经": "e",
    "東經": "e",
    "西经": "w",
    "西經": "w",
    "北纬": "n",
    "北緯": "n",
    "南纬": "s",
    "南緯": "s",
}
_UNIT_RANK = {"deg": 0, "min": 1, "sec": 2}
_LIMIT: dict[Axis | None, float] = {"lon": 180.0, "lat": 90.0, None: 180.0}


def _fail(text: object, why: str) -> InvalidInput:
    return InvalidInput(f"cannot read {text!r} as a coordinate: {why}", given=str(text))


def _check_range(value: float, axis: Axis | None, text: object) -> float:
    limit = _LIMIT[axis]
    if not math.isfinite(value) or abs(value) > limit:
        what = {"lon": "longitude", "lat": "latitude", None: "coordinate"}[axis]
        raise _fail(text, f"{what} must be a finite number within ±{limit:g} degrees")
    return value


def _normalise(text: str) -> str:
    s = unicodedata.normalize("NFKC", text.translate(_LOOKALIKES)).strip().lower()
    if "," in s:
        # A decimal comma is only unambiguous when it is the single separator between digits and
        # no decimal point appears ("22,5"); "114,21,30" or "114.5, 22.7" could be anything.
        if s.count(",") == 1 and "." not in s and re.search(r"\d,\d", s):
            s = s.replace(",", ".")
        else:
            raise _fail(text, "ambiguous comma (use a decimal point, and one coordinate per field)")
    return s


def parse_coordinate(text: str | float, axis: Axis | None = None) -> float:
    """Decimal degrees from a number or DMS text; S/W are negative; InvalidInput naming the text."""
    if isinstance(text, bool) or not isinstance(text, str | numbers.Real):
        raise _fail(text, "expected text or a number")
    if axis not in _LIMIT:
        raise ValueError(f"axis must be 'lon', 'lat' or None, not {axis!r}")
    if isinstance(text, numbers.Real):
        return _check_range(float(text), axis, text)

    s = _normalise(text)
    if not s:
        raise _fail(text, "it is empty")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:].lstrip()

    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(s):
        match = _TOKEN.match(s, pos)
        if match is None:
            raise _fail(text, f"unexpected {s[pos]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "sep":
            tokens.append((kind, match.group()))
        pos = match.end()

    # "s" means seconds in the letter style (114d21m30.5s) but south otherwise (22°41'30S).
    letter_style = any(k in ("deg", "min") and t[0] in "dm" for k, t in tokens)

    components: list[list[str | None]] = []  # [number text, unit or None]
    hemisphere: str | None = None
    hemisphere_is_prefix = False
    for kind, token in tokens:
        if kind in ("deg", "min", "sec"):
            last_has_unit = not components or components[-1][1] is not None
            if kind == "sec" and token == "s" and (last_has_unit or not letter_style):
                kind, token = "hemi", "s"
            elif last_has_unit:
                raise _fail(text, f"unit {token!r} does not follow a number")
            else:
                components[-1][1] = kind
                continue
        if kind == "hemi":
            if hemisphere is not None:
                raise _fail(text, "more than one hemisphere letter")
            hemisphere = _HEMISPHERE[token]
            hemisphere_is_prefix = not components
            continue
        # kind == "num"
        if hemisphere is not None and not hemisphere_is_prefix:
            raise _fail(text, "numbers after the hemisphere letter")
        components.append([token, None])

    if not components:
        raise _fail(text, "no number found")
    if len(components) > 3:
        raise _fail(text, "more than three numbers (degrees, minutes, seconds)")

    # Unmarked numbers take the next position after the previous one; marked ones must ascend.
    values = [0.0, 0.0, 0.0]
    rank = -1
    for index, (number, unit) in enumerate(components):
        assert number is not None
        new_rank = rank + 1 if unit is None else _UNIT_RANK[unit]
        if new_rank <= rank or new_rank > 2:
            raise _fail(text, "degrees, minutes and seconds are out of order")
        if "." in number and index != len(components) - 1:
            raise _fail(text, "only the last of degrees/minutes/seconds may have decimals")
        values[new_rank] = float(number)
        rank = new_rank
    if _UNIT_RANK.get(components[0][1] or "deg") != 0:
        raise _fail(text, "degrees are missing")
    degrees, minutes, seconds = values
    if minutes >= 60.0:
        raise _fail(text, f"minutes must be below 60, got {minutes:g}")
    if seconds >= 60.0:
        raise _fail(text, f"seconds must be below 60, got {seconds:g}")

    if hemisphere is not None:
        implied: Axis = "lat" if hemisphere in "ns" else "lon"
        if axis is not None and axis != implied:
            wanted = "longitude" if axis == "lon" else "latitude"
            raise _fail(text, f"hemisphere {hemisphere.upper()} does not fit a {wanted}")
        axis = implied
        if sign < 0:
            raise _fail(text, "both a minus sign and a hemisphere letter")
        if hemisphere in "sw":
            sign = -1.0

    return _check_range(sign * (degrees + minutes / 60.0 + seconds / 3600.0), axis, text)
