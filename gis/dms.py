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

from common.bilingual import Bilingual
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


# Why a text is not a coordinate, in Chinese and English (gis/ is below the message catalogue).
_WHY = {
    "range": (
        "{what}必须是 ±{limit:g} 度以内的有限数字",
        "{what} must be a finite number within ±{limit:g} degrees",
    ),
    "comma": (
        "逗号有歧义（请用小数点，每个字段只填一个坐标）",
        "ambiguous comma (use a decimal point, and one coordinate per field)",
    ),
    "type": ("应为文本或数字", "expected text or a number"),
    "empty": ("内容为空", "it is empty"),
    "unexpected": ("意外的字符 {char!r}", "unexpected {char!r}"),
    "unit": ("单位 {char!r} 前面没有数字", "unit {char!r} does not follow a number"),
    "hemispheres": ("半球字母不止一个", "more than one hemisphere letter"),
    "after_hemisphere": ("半球字母后面还有数字", "numbers after the hemisphere letter"),
    "no_number": ("没有数字", "no number found"),
    "too_many": ("数字超过三个（度、分、秒）", "more than three numbers (degrees, minutes, seconds)"),
    "order": ("度、分、秒的顺序不对", "degrees, minutes and seconds are out of order"),
    "decimals": (
        "只有最后的度/分/秒可以带小数",
        "only the last of degrees/minutes/seconds may have decimals",
    ),
    "degrees": ("缺少度", "degrees are missing"),
    "hemisphere": ("半球字母 {letter} 不适用于{what}", "hemisphere {letter} does not fit a {what}"),
    "sign": ("既有负号又有半球字母", "both a minus sign and a hemisphere letter"),
    "minutes": ("分必须小于 60，实为 {value:g}", "minutes must be below 60, got {value:g}"),
    "seconds": ("秒必须小于 60，实为 {value:g}", "seconds must be below 60, got {value:g}"),
}
_AXIS = {"lon": ("经度", "longitude"), "lat": ("纬度", "latitude"), None: ("坐标", "coordinate")}


def _fail(text: object, why: str, **params: object) -> InvalidInput:
    zh, en = _WHY[why]
    halves = {k: v.zh if isinstance(v, Bilingual) else v for k, v in params.items()}
    english = {k: v.en if isinstance(v, Bilingual) else v for k, v in params.items()}
    message = Bilingual(
        f"无法把 {text!r} 读作坐标：{zh.format(**halves)}",
        f"cannot read {text!r} as a coordinate: {en.format(**english)}",
    )
    return InvalidInput(message, given=str(text))


def _check_range(value: float, axis: Axis | None, text: object) -> float:
    limit = _LIMIT[axis]
    if not math.isfinite(value) or abs(value) > limit:
        what = _AXIS[axis]
        raise _fail(text, "range", what=Bilingual(*what), limit=limit)
    return value


def _normalise(text: str) -> str:
    s = unicodedata.normalize("NFKC", text.translate(_LOOKALIKES)).strip().lower()
    if "," in s:
        # A decimal comma is only unambiguous when it is the single separator between digits and
        # no decimal point appears ("22,5"); "114,21,30" or "114.5, 22.7" could be anything.
        if s.count(",") == 1 and "." not in s and re.search(r"\d,\d", s):
            s = s.replace(",", ".")
        else:
            raise _fail(text, "comma")
    return s


def parse_coordinate(text: str | float, axis: Axis | None = None) -> float:
    """Decimal degrees from a number or DMS text; S/W are negative; InvalidInput naming the text."""
    if isinstance(text, bool) or not isinstance(text, str | numbers.Real):
        raise _fail(text, "type")
    if axis not in _LIMIT:
        raise ValueError(f"axis must be 'lon', 'lat' or None, not {axis!r}")
    if isinstance(text, numbers.Real):
        return _check_range(float(text), axis, text)

    s = _normalise(text)
    if not s:
        raise _fail(text, "empty")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:].lstrip()

    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(s):
        match = _TOKEN.match(s, pos)
        if match is None:
            raise _fail(text, "unexpected", char=s[pos])
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
                raise _fail(text, "unit", char=token)
            else:
                components[-1][1] = kind
                continue
        if kind == "hemi":
            if hemisphere is not None:
                raise _fail(text, "hemispheres")
            hemisphere = _HEMISPHERE[token]
            hemisphere_is_prefix = not components
            continue
        # kind == "num"
        if hemisphere is not None and not hemisphere_is_prefix:
            raise _fail(text, "after_hemisphere")
        components.append([token, None])

    if not components:
        raise _fail(text, "no_number")
    if len(components) > 3:
        raise _fail(text, "too_many")

    # Unmarked numbers take the next position after the previous one; marked ones must ascend.
    values = [0.0, 0.0, 0.0]
    rank = -1
    for index, (number, unit) in enumerate(components):
        assert number is not None
        new_rank = rank + 1 if unit is None else _UNIT_RANK[unit]
        if new_rank <= rank or new_rank > 2:
            raise _fail(text, "order")
        if "." in number and index != len(components) - 1:
            raise _fail(text, "decimals")
        values[new_rank] = float(number)
        rank = new_rank
    if _UNIT_RANK.get(components[0][1] or "deg") != 0:
        raise _fail(text, "degrees")
    degrees, minutes, seconds = values
    if minutes >= 60.0:
        raise _fail(text, "minutes", value=minutes)
    if seconds >= 60.0:
        raise _fail(text, "seconds", value=seconds)

    if hemisphere is not None:
        implied: Axis = "lat" if hemisphere in "ns" else "lon"
        if axis is not None and axis != implied:
            raise _fail(text, "hemisphere", letter=hemisphere.upper(), what=Bilingual(*_AXIS[axis]))
        axis = implied
        if sign < 0:
            raise _fail(text, "sign")
        if hemisphere in "sw":
            sign = -1.0

    return _check_range(sign * (degrees + minutes / 60.0 + seconds / 3600.0), axis, text)
