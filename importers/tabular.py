"""Tabular sources: CSV and Excel (.xlsx) with coordinate columns, streamed in chunks.

Spreadsheets from field surveys put coordinates in two columns, as decimal degrees, projected metres
or DMS text (``114°21'30.5"``), sometimes under a title row or two. The header row is found among
the first rows; coordinate columns are found by their usual names unless given. A cell that cannot
be read becomes a row problem (row, field, reason) and the rest of the file is still read.

Row numbers are spreadsheet rows: the header's row counts, so under a header in row 1 the first data
row is row 2; blank rows are skipped but keep their numbers (``SourceChunk.row_numbers``).
"""

from __future__ import annotations

import csv
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import shapely

from common.errors import InvalidInput
from gis.dms import parse_coordinate
from importers._perf import gc_paused
from importers.encoding import text_file_encoding
from importers.source import Column, RowProblem, SourceChunk, SourceInfo
from registry.messages import both

# Header names (normalised: NFKC, lower case, no blanks, no "(unit)" suffix) of coordinate columns.
X_NAMES = (
    "x",
    "lon",
    "lng",
    "long",
    "longitude",
    "经度",
    "x坐标",
    "坐标x",
    "point_x",
    "pointx",
    "东坐标",
    "东经",
    "横坐标",
    "easting",
    "gps经度",
)
Y_NAMES = (
    "y",
    "lat",
    "latitude",
    "纬度",
    "y坐标",
    "坐标y",
    "point_y",
    "pointy",
    "北坐标",
    "北纬",
    "纵坐标",
    "northing",
    "gps纬度",
)
# A column of WKT geometries is accepted when there are no coordinate columns.
WKT_NAMES = ("wkt", "geometry", "geom", "shape", "几何", "空间信息")
_HEADER_SCAN_ROWS = 20
_UNIT_SUFFIX = re.compile(r"[(（\[【].*?[)）\]】]$")


def normalise_header(name: object) -> str:
    """A header cell as compared with known names: NFKC, lower case, no blanks or "(unit)" suffix."""
    text = unicodedata.normalize("NFKC", str(name)).strip().lower()
    text = _UNIT_SUFFIX.sub("", text)
    return re.sub(r"\s+", "", text)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _find_column(names: Sequence[str], wanted: Sequence[str]) -> int | None:
    """Index of the first header matching one of ``wanted`` (in the order of ``wanted``)."""
    normalised = [normalise_header(n) for n in names]
    for candidate in wanted:
        key = normalise_header(candidate)
        if key in normalised:
            return normalised.index(key)
    return None


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the header is and which columns hold the geometry."""

    header_row: int  # spreadsheet row number of the header
    names: tuple[str, ...]
    x: int | None
    y: int | None
    wkt: int | None


def _header_names(cells: Sequence[Any]) -> tuple[str, ...]:
    """Header cells as unique, non-empty column names (blank -> column_3, repeats -> name_2)."""
    names: list[str] = []
    seen: set[str] = set()
    for i, cell in enumerate(cells, start=1):
        base = str(cell).strip() if not _is_blank(cell) else f"column_{i}"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        names.append(name)
    while names and names[-1].startswith("column_") and _is_blank(cells[len(names) - 1]):
        names.pop()  # trailing empty header cells are formatting, not columns
    return tuple(names)


def _as_candidates(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _find_layout(
    head: list[tuple[int, Sequence[Any]]],
    display: str,
    x_field: str | Sequence[str] | None,
    y_field: str | Sequence[str] | None,
) -> _Layout:
    """Choose the header row among the first rows and locate the geometry columns in it."""
    xs_wanted = _as_candidates(x_field)
    ys_wanted = _as_candidates(y_field)
    fallback: _Layout | None = None
    for row_number, cells in head:
        if sum(not _is_blank(c) for c in cells) < 2:
            continue  # a title row ("坪山区井盖台账") or blank
        names = _header_names(cells)
        x = _find_column(names, xs_wanted or X_NAMES)
        y = _find_column(names, ys_wanted or Y_NAMES)
        if x is not None and y is not None and x != y:
            return _Layout(row_number, names, x, y, None)
        wkt = _find_column(names, WKT_NAMES)
        if wkt is not None and not (xs_wanted or ys_wanted):
            return _Layout(row_number, names, None, None, wkt)
        if fallback is None:
            fallback = _Layout(row_number, names, None, None, None)
    if fallback is None:
        raise InvalidInput(both("file.no_header", file=display, rows=_HEADER_SCAN_ROWS), file=display)
    if xs_wanted or ys_wanted:
        missing = [
            repr(f) for f in (*xs_wanted[:1], *ys_wanted[:1]) if _find_column(fallback.names, [f]) is None
        ]
        raise InvalidInput(
            f"{display}: coordinate column {' / '.join(missing)} not found; "
            f"columns: {', '.join(fallback.names)}",
            file=display,
        )
    raise InvalidInput(
        f"{display}: no coordinate columns found (looked for x/y, lon/lat, 经度/纬度, X坐标/Y坐标, "
        f"POINT_X/POINT_Y, 东坐标/北坐标); name them with x_field/y_field. "
        f"Columns: {', '.join(fallback.names)}",
        file=display,
    )


def parse_coordinate_column(
    values: Column,
    field: str,
    rows: npt.NDArray[np.int64],
    problems: list[RowProblem],
    axis: Literal["lon", "lat"] | None = None,
) -> npt.NDArray[np.float64]:
    """Floats from a column of numbers, numeric text or DMS text; bad cells are NaN plus a problem.

    Plain numbers are not range-checked here: projected metres (X坐标 = 512345.6) are as valid as
    degrees. DMS text is read by :func:`gis.dms.parse_coordinate`; by default without an axis,
    because files with swapped columns (latitude under "X") are common and the CRS guess of the
    next stage detects and undoes the swap, which it could not if the latitudes became errors.
    """
    try:
        # Vectorised fast path: every cell a number or numeric text.
        out = np.array(values, dtype=np.float64)
        if out.ndim == 1 and np.isfinite(out).all():
            return out
    except (TypeError, ValueError):
        pass
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if _is_blank(value):
            problems.append(RowProblem(int(rows[i]), field, both("imp.coord.empty")))
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                out[i] = float(value)
            else:
                problems.append(RowProblem(int(rows[i]), field, both("imp.coord.not_finite"), str(value)))
            continue
        if not isinstance(value, str):
            # An Excel date or time in a coordinate cell: auto-formatting ate the number.
            problems.append(
                RowProblem(int(rows[i]), field, both("imp.coord.type", type=type(value).__name__), str(value))
            )
            continue
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                out[i] = parse_coordinate(text, axis)
            except InvalidInput as exc:
                problems.append(RowProblem(int(rows[i]), field, exc.message, text))
            continue
        if math.isfinite(number):
            out[i] = number
        else:
            problems.append(RowProblem(int(rows[i]), field, both("imp.coord.not_finite"), text))
    return out


def _chunks(
    rows: Iterator[tuple[int, Sequence[Any]]],
    layout: _Layout,
    display: str,
    chunk_size: int,
    text_cells: bool,
) -> Iterator[SourceChunk]:
    """Group data rows into column-oriented chunks and read their geometry columns."""
    width = len(layout.names)
    while True:
        with gc_paused():
            batch = [(n, cells) for n, cells in islice(rows, chunk_size)]
            if not batch:
                return
            chunk = _build_chunk(batch, layout, display, width, text_cells)
        yield chunk


def _build_chunk(
    batch: list[tuple[int, Sequence[Any]]], layout: _Layout, display: str, width: int, text_cells: bool
) -> SourceChunk:
    problems: list[RowProblem] = []
    numbers = np.fromiter((n for n, _ in batch), dtype=np.int64, count=len(batch))
    padded: list[Sequence[Any]] = []
    for n, cells in batch:
        if type(cells) is _Flagged:
            problems.append(RowProblem(n, None, cells.problem))
        if len(cells) == width:
            padded.append(cells)
        elif len(cells) < width:
            if text_cells and type(cells) is not _Flagged:
                # A CSV row with cells missing: the ones it has may have moved to other columns.
                problems.append(RowProblem(n, None, both("imp.row.short", cells=len(cells), width=width)))
            padded.append((*cells, *([None] * (width - len(cells)))))
        else:
            if any(not _is_blank(c) for c in cells[width:]):
                problems.append(RowProblem(n, None, both("imp.row.long", cells=len(cells), width=width)))
            padded.append(cells[:width])
    columns: dict[str, Column] = {}
    for name, values in zip(layout.names, zip(*padded, strict=True), strict=True):
        # CSV cells are all text: an empty one means "no value", as in Excel.
        columns[name] = [v or None for v in values] if text_cells else list(values)
    if not text_cells:
        _check_long_numbers(columns, numbers, problems)
    xs = ys = geometry = None
    if layout.x is not None and layout.y is not None:
        x_name, y_name = layout.names[layout.x], layout.names[layout.y]
        xs = parse_coordinate_column(columns[x_name], x_name, numbers, problems)
        ys = parse_coordinate_column(columns[y_name], y_name, numbers, problems)
    elif layout.wkt is not None:
        geometry = _wkt_column(columns[layout.names[layout.wkt]], layout.names[layout.wkt], numbers, problems)
    problems.sort(key=lambda p: p.row)
    return SourceChunk(display, int(numbers[0]), columns, geometry, xs, ys, None, problems, numbers)


def _check_long_numbers(
    columns: dict[str, Column], rows: npt.NDArray[np.int64], problems: list[RowProblem]
) -> None:
    """Flag numbers of 16+ digits in a workbook: Excel keeps 15 significant digits, so a 16-digit
    smart code typed as a number has already lost its last digit (4403100101000001 -> ...000000)."""
    for name, values in columns.items():
        for i, value in enumerate(values):
            if type(value) in (int, float) and abs(value) >= 1e15:
                problems.append(
                    RowProblem(
                        int(rows[i]),
                        name,
                        both("imp.number.long"),
                        str(value),
                    )
                )


def _wkt_column(
    values: Column, field: str, rows: npt.NDArray[np.int64], problems: list[RowProblem]
) -> npt.NDArray[np.object_]:
    texts = np.array([v.strip() if isinstance(v, str) and v.strip() else None for v in values], dtype=object)
    geometry = shapely.from_wkt(texts, on_invalid="ignore")
    for i in np.flatnonzero(shapely.is_missing(geometry)).tolist():
        reason = both("imp.geom.none") if texts[i] is None else both("imp.wkt.bad")
        problems.append(
            RowProblem(int(rows[i]), field, reason, None if texts[i] is None else str(texts[i])[:80])
        )
    return geometry


def _non_blank(rows: Iterable[tuple[int, Sequence[Any]]]) -> Iterator[tuple[int, Sequence[Any]]]:
    for n, cells in rows:
        for cell in cells:
            if not _is_blank(cell):
                yield n, cells
                break


def _open_rows(
    display: str,
    fmt: Any,
    rows: Iterator[tuple[int, Sequence[Any]]],
    x_field: str | Sequence[str] | None,
    y_field: str | Sequence[str] | None,
    chunk_size: int,
    info_fields: dict[str, Any],
    text_cells: bool,
    close: Callable[[], None],
) -> tuple[SourceInfo, Iterator[SourceChunk]]:
    """What the CSV and XLSX openers share once their rows can be read: the header and coordinate
    columns found, the source described; the file is closed when that fails."""
    try:
        data = _non_blank(rows)
        head = list(islice(data, _HEADER_SCAN_ROWS))
        layout = _find_layout(head, display, x_field, y_field)
        after_header = [(n, c) for n, c in head if n > layout.header_row]

        def all_rows() -> Iterator[tuple[int, Sequence[Any]]]:
            yield from after_header
            yield from data

        info = SourceInfo(
            file=display,
            format=fmt,
            fields=layout.names,
            feature_count=None,
            declared_crs=None,
            geometry_type=None if layout.wkt is None else "WKT",
            x_field=layout.names[layout.x] if layout.x is not None else None,
            y_field=layout.names[layout.y] if layout.y is not None else None,
            **info_fields,
        )
        return info, _chunks(all_rows(), layout, display, chunk_size, text_cells)
    except BaseException:
        close()
        raise


def _require_file(path: Path) -> None:
    if not path.exists():
        raise InvalidInput(both("file.not_found", file=path.name), file=path.name)


def _sniff_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


class _Flagged(tuple[Any, ...]):
    """A row's cells with the structural problem met reading it (bad quote, bad bytes)."""

    problem: str

    def __new__(cls, cells: Sequence[Any], problem: str) -> _Flagged:
        row = super().__new__(cls, cells)
        row.problem = problem
        return row


class _BadBytes(str):
    """A line whose bytes were not valid in the file's encoding (decoded with U+FFFD in their place)."""


def _decoded_lines(handle: Any, encoding: str) -> Iterator[str]:
    """Text lines of a binary file; a line with bytes invalid in ``encoding`` is kept, flagged.

    Decoding line by line means one bad byte costs its row, not the rest of the file.
    """
    for raw in handle:
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError:
            yield _BadBytes(raw.decode(encoding, errors="replace"))


def _csv_records(lines: Iterable[str], dialect: Any) -> Iterator[tuple[int, Sequence[Any]]]:
    """Numbered CSV records; a stray quote costs its own row only, never the rows after it.

    csv.reader lets a quoted cell run over newlines, so one unbalanced quote swallows every line up
    to the next quote. A record that spans lines is accepted when it has the width of the widest
    record so far and none of its continuation lines looks like a row of its own; otherwise its
    first line is read alone without quoting, flagged, and reading resumes at its second line.
    """
    source = iter(lines)
    pending: list[str] = []  # lines given back, last first
    consumed: list[str] = []

    def feed() -> Iterator[str]:
        while True:
            if pending:
                line = pending.pop()
            else:
                fresh = next(source, None)
                if fresh is None:
                    return
                line = fresh
            consumed.append(line)
            yield line

    reader = csv.reader(feed(), dialect)
    delimiter = dialect.delimiter
    width = 0
    number = 0
    while True:
        consumed.clear()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            number += 1
            yield number, _Flagged([*consumed[:1]], both("imp.row.malformed", why=exc))
            reader = csv.reader(feed(), dialect)
            continue
        number += 1
        if len(consumed) > 1 and (
            len(cells) != width or any(line.count(delimiter) >= width - 1 for line in consumed[1:])
        ):
            first = consumed[0]
            pending.extend(reversed(consumed[1:]))
            cells = next(csv.reader([first], dialect, quoting=csv.QUOTE_NONE), [])
            reader = csv.reader(feed(), dialect)  # the old one may have reached the end of the file
            yield (
                number,
                _Flagged(
                    cells or [first],
                    both("imp.row.quote"),
                ),
            )
            continue
        if len(consumed) == 1:
            width = max(width, len(cells))
        if any(type(line) is _BadBytes for line in consumed):
            yield number, _Flagged(cells, both("imp.row.bytes"))
            continue
        yield number, cells


def open_csv(
    path: Path,
    *,
    encoding: str | None = None,
    x_field: str | Sequence[str] | None = None,
    y_field: str | Sequence[str] | None = None,
    chunk_size: int = 50_000,
) -> tuple[SourceInfo, Iterator[SourceChunk]]:
    """Open a CSV file with coordinate columns (encoding detected unless given)."""
    _require_file(path)
    choice = text_file_encoding(path, encoding)
    try:
        # Only for sniffing the delimiter: a bad byte is reported on its own row when read.
        with path.open("r", encoding=choice.encoding, newline="", errors="replace") as probe:
            sample = probe.read(64 << 10)
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            both("file.not_encoding", file=path.name, encoding=choice.encoding, why=exc), file=path.name
        ) from exc
    dialect = _sniff_dialect(sample)
    wide = "16" in choice.encoding or "32" in choice.encoding  # UTF-16/32: lines are not bytes lines
    stream: Any = (
        path.open("r", encoding=choice.encoding, newline="", errors="strict") if wide else path.open("rb")
    )

    def rows() -> Iterator[tuple[int, Sequence[Any]]]:
        with stream:
            try:
                lines = stream if wide else _decoded_lines(stream, choice.encoding)
                # Records are spreadsheet rows (a quoted newline stays in its cell).
                yield from _csv_records(lines, dialect)
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    both("file.not_encoding_row", file=path.name, encoding=choice.encoding, why=exc),
                    file=path.name,
                ) from exc

    delimiter = {
        "\t": both("delim.tab"),
        ",": both("delim.comma"),
        ";": both("delim.semicolon"),
        "|": both("delim.pipe"),
    }.get(dialect.delimiter, dialect.delimiter)
    info_fields = {
        "layer": None,
        "layers": (),
        "encoding": choice.encoding,
        "encoding_origin": choice.origin,
        "notes": (
            both("note.encoding", encoding=choice.encoding, detail=choice.detail),
            both("note.delimiter", delimiter=delimiter),
        ),
    }
    return _open_rows(path.name, "csv", rows(), x_field, y_field, chunk_size, info_fields, True, stream.close)


def open_xlsx(
    path: Path,
    *,
    sheet: str | None = None,
    x_field: str | Sequence[str] | None = None,
    y_field: str | Sequence[str] | None = None,
    chunk_size: int = 50_000,
) -> tuple[SourceInfo, Iterator[SourceChunk]]:
    """Open an .xlsx sheet (default: the first visible one) in openpyxl's streaming read-only mode."""
    from openpyxl import load_workbook  # imported here: openpyxl is slow to import
    from openpyxl.utils.exceptions import InvalidFileException

    _require_file(path)
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, OSError, KeyError, ValueError) as exc:
        raise InvalidInput(both("file.xlsx", file=path.name, why=exc), file=path.name) from exc
    except Exception as exc:  # zipfile.BadZipFile and friends from a corrupt file
        raise InvalidInput(both("file.xlsx", file=path.name, why=exc), file=path.name) from exc
    names = tuple(workbook.sheetnames)
    if sheet is None:
        visible = [ws.title for ws in workbook.worksheets if ws.sheet_state == "visible"]
        sheet = visible[0] if visible else names[0]
    elif sheet not in names:
        workbook.close()
        raise InvalidInput(
            both("file.no_sheet", file=path.name, sheet=sheet, sheets=", ".join(names)), file=path.name
        )
    worksheet = workbook[sheet]
    display = path.name

    def rows() -> Iterator[tuple[int, Sequence[Any]]]:
        try:
            # Read-only iter_rows starts at row 1 and yields empty rows for gaps, so counting
            # gives the spreadsheet row number.
            yield from enumerate(worksheet.iter_rows(values_only=True), start=1)
        finally:
            workbook.close()

    info_fields = {
        "layer": sheet,
        "layers": names,
        "encoding": "UTF-8",
        "encoding_origin": "format",
        "notes": (),
    }
    return _open_rows(
        display, "xlsx", rows(), x_field, y_field, chunk_size, info_fields, False, workbook.close
    )
