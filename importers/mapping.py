"""Turn a SourceChunk and a mapping profile into a column-oriented DraftChunk of registry fields.

This stage only reads and normalises what the file says: text trimmed and full-width characters made
half-width, states and in-use flags translated through the profile, dates parsed, unit aliases and
local class names applied. Looking classes and units up in the registry, reprojecting and
validating geometry are the next stage's job. A value that cannot be read becomes a row problem
(row, field, reason), never an exception for the whole chunk.

Work is done column by column; every per-value function is memoised per chunk because inventory
columns repeat the same few values (one owner, a handful of classes and dates) thousands of times.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import orjson

from common.errors import InvalidInput
from importers._perf import gc_paused
from importers.profiles import Profile, default_profile
from importers.source import Column, RowProblem, SourceChunk, points_from_xy
from importers.tabular import parse_coordinate_column
from registry.messages import both

ObjectArray = npt.NDArray[np.object_]
TEXT_TARGETS = (
    "code",
    "source_id",
    "class_code",
    "class_name",
    "owner",
    "maintainer",
    "supervisor",
    "grid",
    "data_source",
    "note",
)
UNIT_TARGETS = ("owner", "maintainer", "supervisor")
DATE_TARGETS = ("installed", "changed")

# Full-width ASCII (U+FF01-U+FF5E) and the ideographic space, as typed with a Chinese IME.
_HALF_WIDTH = str.maketrans({chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)} | {"\u3000": " "})


@dataclass(slots=True)
class DraftChunk:
    """Registry fields for a run of source rows, one array per field (None where the file has none).

    Text fields hold ``str | None``; ``state`` one of 完好/破损/丢失/占用 or None; ``in_use`` a
    bool or None; ``installed``/``changed`` ``datetime.date`` or None. ``class_code`` is a national
    class code when the profile mapped the local class, else the code the file gives (if any);
    ``class_name`` is the name as found. Units are names or credit codes as found, after aliasing.
    ``attributes`` holds kept source values column-wise (None = nothing kept for that row).
    Geometry is in the source CRS ``crs``: ``xs``/``ys`` for point chunks, ``geometry`` otherwise.
    """

    file: str
    first_row: int
    rows: npt.NDArray[np.int64]
    code: ObjectArray
    source_id: ObjectArray
    class_code: ObjectArray
    class_name: ObjectArray
    owner: ObjectArray
    maintainer: ObjectArray
    supervisor: ObjectArray
    grid: ObjectArray
    state: ObjectArray
    in_use: ObjectArray
    installed: ObjectArray
    changed: ObjectArray
    data_source: ObjectArray
    note: ObjectArray
    attributes: dict[str, ObjectArray]
    geometry: ObjectArray | None
    xs: npt.NDArray[np.float64] | None
    ys: npt.NDArray[np.float64] | None
    crs: str | None
    problems: list[RowProblem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def shapes(self) -> ObjectArray:
        """Shapely geometries of all rows (points built from xs/ys when only those are set)."""
        if self.geometry is not None:
            return self.geometry
        if self.xs is not None and self.ys is not None:
            return points_from_xy(self.xs, self.ys)
        return np.full(len(self), None, dtype=object)

    def attribute_dicts(self) -> list[dict[str, Any]]:
        """The attribute bag of every row as a dict without empty entries."""
        names = list(self.attributes)
        if not names:
            return [{} for _ in range(len(self))]
        columns = [self.attributes[name] for name in names]
        return [
            {name: value for name, value in zip(names, values, strict=True) if value is not None}
            for values in zip(*columns, strict=True)
        ]

    def attributes_json(self) -> list[bytes]:
        """The attribute bag of every row as JSON (dates as ISO text), ready for a jsonb column."""
        return [orjson.dumps(bag, default=str) for bag in self.attribute_dicts()]

    def records(self) -> Iterator[dict[str, Any]]:
        """Row-at-a-time view (tests, previews, error reports)."""
        shapes = self.shapes()
        bags = self.attribute_dicts()
        for i, row in enumerate(self.rows.tolist()):
            record: dict[str, Any] = {"row": row}
            for name in (*TEXT_TARGETS, "state", "in_use", *DATE_TARGETS):
                record[name] = getattr(self, name)[i]
            record["attributes"] = bags[i]
            record["geometry"] = shapes[i]
            yield record


# --------------------------------------------------------------------------------------------------
# Value normalisation


def normalise_text(value: Any) -> str | None:
    """Text as the registry stores it: trimmed, blanks collapsed, full-width ASCII made half-width.

    Numbers become their decimal text (4403100101000001.0 -> "4403100101000001"), dates ISO text;
    empty text, None and NaN become None.
    """
    if value is None:
        return None
    if isinstance(value, str):
        # split() + join trims and collapses every run of blanks in one C-level pass.
        text = " ".join(value.translate(_HALF_WIDTH).split())
        return text or None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return normalise_text(str(value))


def normalise_code(value: Any) -> str | None:
    """An identifier (smart code, grid code, credit code): normalised text without any blanks."""
    if type(value) is str and value.isascii() and value.isalnum():
        return value.upper()  # the usual case, and codes are mostly distinct: keep it cheap
    text = normalise_text(value)
    return None if text is None else text.replace(" ", "").upper()


def normalise_class_code(value: Any) -> str | None:
    """A class code; a 3-digit number regains the leading zero Excel or a DBF number dropped."""
    text = normalise_code(value)
    if text is not None and text.isdigit() and len(text) == 3:
        return "0" + text
    return text


_EXCEL_EPOCH = date(1899, 12, 30)  # Excel's day 0, so that serial 60 is the fictitious 1900-02-29 + 1
_DATE_TEXT = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[T\s]+\d{1,2}[:时]\d{1,2}(?:[:分]\d{1,2}(?:\.\d+)?秒?)?\s*(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
_DATE_DIGITS = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


# Bare integers in this range are years, not Excel serial days; serial days start above 3653
# (1910-01-01), so a year is never read as a day of 1905.
_YEAR_MIN, _YEAR_MAX = 1900, 2100
_SERIAL_MIN = 3654
# Dates are judged in the registry's local time (Pingshan, Shenzhen).
LOCAL_TZ = ZoneInfo("Asia/Shanghai")


class DateError(ValueError):
    """A value that is not a date in any accepted spelling."""


def parse_date(value: Any) -> date | None:
    """A date from 2019-03-02, 2019/3/2, 2019.3.2, 20190302, 2019年3月2日, an ISO datetime, an Excel
    serial number or a date/datetime object; None for an empty value; DateError otherwise."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        day: date = value.astype("datetime64[D]").item()
        return day
    if isinstance(value, bool | np.bool_):
        raise DateError(both("imp.date.not"))
    if isinstance(value, int | float | np.integer | np.floating):
        return _date_from_number(float(value))
    text = normalise_text(value)
    if text is None:
        return None
    match = _DATE_TEXT.match(text) or _DATE_DIGITS.match(text)
    if match is None and text.isdigit() and text.isascii() and _YEAR_MIN <= int(text) <= _YEAR_MAX:
        raise DateError(both("imp.date.year", year=text))
    if match is None:
        raise DateError(both("imp.date.format"))
    return _make_date(*(int(g) for g in match.groups()))


def _date_from_number(number: float) -> date | None:
    if not math.isfinite(number):
        return None
    whole = int(number)
    if 19000101 <= whole <= 29991231 and number == whole:
        return _make_date(whole // 10000, whole // 100 % 100, whole % 100)  # 20190302 from a DBF number
    if _YEAR_MIN <= whole <= _YEAR_MAX and number == whole:
        # 2019 is a year (a cell holding only the year), not Excel day 2019 (1905-07-11).
        raise DateError(both("imp.date.year", year=whole))
    if _SERIAL_MIN <= whole <= 2958465:
        # An Excel serial day (cell formatted as a number); a fraction is the time of day.
        return _EXCEL_EPOCH + timedelta(days=whole)
    raise DateError(both("imp.date.number"))


def _make_date(year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise DateError(both("imp.date.no_such", why=exc)) from exc


# --------------------------------------------------------------------------------------------------
# Mapping


def _memo_map(function: Callable[[Any], Any], values: Column) -> tuple[list[Any], list[tuple[int, str, Any]]]:
    """Apply ``function`` once per distinct value; errors come back as (index, reason, raw value).

    Results are spread over the column by map() over a memo dict, a C-level loop that calls the
    function only on a miss: a column of one owner repeated 50,000 times costs one call.
    """
    items: list[Any] = values.tolist() if isinstance(values, np.ndarray) else values
    shortcut = _COLUMN_SHORTCUTS.get(function)
    if shortcut is not None and (out := shortcut(items)) is not None:
        return out, []
    memo = _Memo(function)
    try:
        out = list(map(memo.__getitem__, items))
    except TypeError:  # unhashable cells (nested GeoJSON objects): one call per cell
        return _map_each(function, items)
    failures = memo.failures
    errors = [(i, failures[raw], raw) for i, raw in enumerate(items) if raw in failures] if failures else []
    return out, errors


class _Memo(dict[Any, Any]):
    """Results of ``function`` by raw value, computed on first lookup; ValueErrors give None."""

    def __init__(self, function: Callable[[Any], Any]) -> None:
        super().__init__()
        self.function = function
        self.failures: dict[Any, str] = {}

    def __missing__(self, raw: Any) -> Any:
        try:
            result = self.function(raw)
        except ValueError as exc:
            result = None
            self.failures[raw] = _reason(exc)
        self[raw] = result
        return result


def _reason(exc: ValueError) -> str:
    """The message of a value's error, kept bilingual when it is (``str(exc)`` would flatten it)."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, str) else str(exc)


def _map_each(
    function: Callable[[Any], Any], items: list[Any]
) -> tuple[list[Any], list[tuple[int, str, Any]]]:
    out: list[Any] = []
    errors: list[tuple[int, str, Any]] = []
    for i, raw in enumerate(items):
        try:
            out.append(function(raw))
        except ValueError as exc:
            out.append(None)
            errors.append((i, _reason(exc), raw))
    return out, errors


def _plain_codes(items: list[Any]) -> list[Any] | None:
    """normalise_code of a column of plain ASCII alphanumeric texts, in a few C-level passes.

    Grid and asset codes are mostly distinct, so memoising does not help them; this is the common
    case of normalise_code done for the whole column at once. None if any cell is something else.
    """
    if not items or set(map(type, items)) != {str} or not all(items):
        return None
    joined = "\0".join(items)
    if not joined.isascii() or joined.count("\0") != len(items) - 1:
        return None  # a cell holds NUL itself: the split below would not give the cells back
    if not joined.replace("\0", "").isalnum():
        return None
    return joined.upper().split("\0")  # ASCII upper-casing keeps every length, so the cells too


def _resolve(columns: dict[str, Column], names: Sequence[str]) -> list[str]:
    """The actual column names matching ``names`` (case-insensitive, blanks ignored), in order."""
    by_key: dict[str, str] = {}
    for actual in columns:
        by_key.setdefault(actual.strip().lower(), actual)
    found: list[str] = []
    for name in names:
        match = by_key.get(name.strip().lower())
        if match is not None and match not in found:
            found.append(match)
    return found


@dataclass(slots=True)
class _Mapper:
    """Per-chunk state: columns, row numbers, the problems found and which cells targets consumed."""

    chunk: SourceChunk
    profile: Profile
    rows: npt.NDArray[np.int64]
    problems: list[RowProblem]
    consumed: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)

    def problem(self, i: int, target: str, reason: str, raw: Any) -> None:
        """Record a problem for the i-th row of the chunk."""
        shown = None if raw is None else str(raw)[:200]
        self.problems.append(RowProblem(int(self.rows[i]), target, reason, shown))

    def values(self, target: str, function: Callable[[Any], Any]) -> ObjectArray:
        """First non-empty value among the target's fields, through ``function``; fixed/defaults applied."""
        n = len(self.rows)
        fixed = self.profile.fixed.get(target)  # type: ignore[call-overload]
        if fixed is not None:
            return np.full(n, self._profile_value("fixed", target, fixed, function), dtype=object)
        out = np.full(n, None, dtype=object)
        missing = np.ones(n, dtype=bool)
        for name in _resolve(self.chunk.columns, self.profile.fields.for_target(target)):
            mapped, errors = _memo_map(function, self.chunk.columns[name])
            for i, reason, raw in errors:
                self.problem(i, target, both("imp.cell", column=name, reason=reason), raw)
            column = _object_array(mapped)
            present = has_value(column)
            if missing.all():
                take, out = present, column  # nothing taken yet, and its empty cells are None
            else:
                take = missing & present
                out[take] = column[take]
            # Taken values leave the attribute bag; unreadable ones stay there, so nothing is lost.
            self.consume(name, take)
            missing &= ~take
            if not missing.any():
                break
        default = self.profile.defaults.get(target)  # type: ignore[call-overload]
        if default is not None and missing.any():
            out[missing] = self._profile_value("defaults", target, default, function)
        return out

    def _profile_value(self, table: str, target: str, value: str, function: Callable[[Any], Any]) -> Any:
        try:
            return function(value)
        except ValueError as exc:
            raise InvalidInput(
                f"mapping profile {self.profile.name}: {table}.{target}: {exc}", profile=self.profile.name
            ) from exc

    def consume(self, name: str, mask: npt.NDArray[np.bool_]) -> None:
        """Mark cells of column ``name`` as taken by a target (kept out of the attribute bag)."""
        previous = self.consumed.get(name)
        self.consumed[name] = mask if previous is None else previous | mask


def has_value(values: ObjectArray) -> npt.NDArray[np.bool_]:
    """True where a cell of an object array holds a value, False where it holds None."""
    # Compared element-wise in C: a third of a list comprehension's time.
    return np.asarray(values != None, dtype=bool)  # noqa: E711 - elementwise comparison, not identity


def _object_array(values: list[Any]) -> ObjectArray:
    # fromiter never looks into the items (lists stay list cells) and is twice as quick as
    # assigning a list to a slice of an empty object array.
    return np.fromiter(values, dtype=object, count=len(values))


def _state_function(profile: Profile) -> Callable[[Any], str | None]:
    table = {normalise_text(k): v for k, v in profile.values.state.items()}

    def state(value: Any) -> str | None:
        text = normalise_text(value)
        if text is None:
            return None
        mapped = table.get(text, text if text in ("完好", "破损", "丢失", "占用") else None)
        if mapped is None:
            raise ValueError(both("imp.state.unknown", value=text))
        return mapped

    return state


def _in_use_function(profile: Profile) -> Callable[[Any], bool | None]:
    table = {normalise_text(k): v for k, v in profile.values.in_use.items()}

    def in_use(value: Any) -> bool | None:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        text = normalise_text(value)
        if text is None:
            return None
        if text in table:
            return table[text]
        raise ValueError(both("imp.in_use.unknown", value=text))

    return in_use


def _unit_function(profile: Profile) -> Callable[[Any], str | None]:
    aliases = {normalise_text(k): normalise_text(v) for k, v in profile.units.items()}

    def unit(value: Any) -> str | None:
        text = normalise_text(value)
        return aliases.get(text, text) if text is not None else None

    return unit


def _code_function(value: Any) -> str | None:
    if isinstance(value, float | np.floating) and math.isfinite(value) and abs(float(value)) > 2**53:
        # Beyond 2^53 a float cannot hold every integer: the code's last digits are unreliable.
        raise ValueError(both("imp.code.float"))
    return normalise_code(value)


def _date_function(value: Any) -> date | None:
    return parse_date(value)


def _installed_function(value: Any) -> date | None:
    """An installation date, which cannot lie after today (local time): a future one would also
    open a responsibility period in the future that every later change of units runs into."""
    day = parse_date(value)
    if day is not None:
        today = datetime.now(LOCAL_TZ).date()
        if day > today:
            raise DateError(both("imp.date.future", day=day.isoformat(), today=today.isoformat()))
    return day


# Whole-column versions of per-value functions, tried before the memo; None means "use the memo".
_COLUMN_SHORTCUTS: dict[Callable[[Any], Any], Callable[[list[Any]], list[Any] | None]] = {
    normalise_code: _plain_codes,
    _code_function: _plain_codes,  # the same as normalise_code for texts
}


def map_chunk(chunk: SourceChunk, profile: Profile | None = None) -> DraftChunk:
    """Map one SourceChunk to registry fields with ``profile`` (default: the 数字城管 profile)."""
    profile = profile or default_profile()
    with gc_paused():
        return _map(chunk, profile)


def _map(chunk: SourceChunk, profile: Profile) -> DraftChunk:
    rows = chunk.rows()
    problems = list(chunk.problems)
    mapper = _Mapper(chunk, profile, rows, problems)
    unit = _unit_function(profile)
    out: dict[str, ObjectArray] = {
        "code": mapper.values("code", _code_function),
        "source_id": mapper.values("source_id", normalise_text),
        "class_code": mapper.values("class_code", normalise_class_code),
        "class_name": mapper.values("class_name", normalise_text),
        "grid": mapper.values("grid", normalise_code),
        "data_source": mapper.values("data_source", normalise_text),
        "note": mapper.values("note", normalise_text),
        "state": mapper.values("state", _state_function(profile)),
        "in_use": mapper.values("in_use", _in_use_function(profile)),
        "installed": mapper.values("installed", _installed_function),
        "changed": mapper.values("changed", _date_function),
    }
    for target in UNIT_TARGETS:
        out[target] = mapper.values(target, unit)
    out["class_code"] = _map_classes(profile, out["class_code"], out["class_name"])

    geometry, xs, ys = chunk.geometry, chunk.xs, chunk.ys
    if geometry is None and (xs is None or bool(np.isnan(xs).all())):
        # No geometry in the source (attribute table, null GeoJSON geometries): coordinate fields.
        field_xs, field_ys = _coordinates_from_fields(mapper)
        if field_xs is not None and field_ys is not None:
            xs, ys = field_xs, field_ys
            located = set(rows[~(np.isnan(xs) | np.isnan(ys))].tolist())
            problems[:] = [p for p in problems if not (p.field == "geometry" and p.row in located)]
    attributes = _attributes(mapper)
    problems.sort(key=lambda p: p.row)
    return DraftChunk(
        file=chunk.file,
        first_row=chunk.first_row,
        rows=rows,
        attributes=attributes,
        geometry=geometry,
        xs=xs,
        ys=ys,
        crs=profile.crs or chunk.declared_crs,
        problems=problems,
        **out,
    )


def _map_classes(profile: Profile, codes: ObjectArray, names: ObjectArray) -> ObjectArray:
    """Apply the profile's local class table: a mapped code wins, then a mapped name, then the code."""
    if not profile.classes:
        return codes
    table = {normalise_text(k): v for k, v in profile.classes.items()}
    out = codes.copy()
    for i, (code, name) in enumerate(zip(codes.tolist(), names.tolist(), strict=True)):
        if code is not None and code in table:
            out[i] = table[code]
        elif code is None and name is not None and name in table:
            out[i] = table[name]
    return out


def _coordinates_from_fields(
    mapper: _Mapper,
) -> tuple[npt.NDArray[np.float64] | None, npt.NDArray[np.float64] | None]:
    """x/y from the profile's coordinate fields when the source itself gave no geometry."""
    x_names = _resolve(mapper.chunk.columns, mapper.profile.fields.x)
    y_names = _resolve(mapper.chunk.columns, mapper.profile.fields.y)
    if not x_names or not y_names:
        return None, None
    x_name, y_name = x_names[0], y_names[0]
    xs = parse_coordinate_column(mapper.chunk.columns[x_name], x_name, mapper.rows, mapper.problems)
    ys = parse_coordinate_column(mapper.chunk.columns[y_name], y_name, mapper.rows, mapper.problems)
    n = len(mapper.rows)
    mapper.consume(x_name, np.ones(n, dtype=bool))
    mapper.consume(y_name, np.ones(n, dtype=bool))
    return xs, ys


def _attributes(mapper: _Mapper) -> dict[str, ObjectArray]:
    """The attribute bag, column-wise, following the profile's ``attributes.keep`` rule."""
    keep = mapper.profile.attributes.keep
    columns = mapper.chunk.columns
    if keep == "none":
        return {}
    names = _resolve(columns, keep) if isinstance(keep, list) else list(columns)
    out: dict[str, ObjectArray] = {}
    for name in names:
        consumed = mapper.consumed.get(name) if keep == "unmapped" else None
        if consumed is not None and consumed.all():
            continue  # every value went to a target
        values = _plain_values(columns[name])
        if consumed is not None:
            values[consumed] = None
        if has_value(values).any():
            out[name] = values
    return out


def _plain_values(column: Column) -> ObjectArray:
    """Source values as JSON-friendly Python objects: NaN and blank text become None."""
    if isinstance(column, np.ndarray) and column.dtype.kind in "iub":
        return _object_array(column.tolist())
    if isinstance(column, np.ndarray) and column.dtype.kind == "f":
        return _object_array([None if math.isnan(v) else v for v in column.tolist()])
    items = column.tolist() if isinstance(column, np.ndarray) else column
    return _object_array([None if v is None or v == "" or _blank_or_nan(v) else v for v in items])


def _blank_or_nan(value: Any) -> bool:
    if isinstance(value, str):
        return value.isspace()
    return isinstance(value, float) and not math.isfinite(value)
