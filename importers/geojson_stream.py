"""Streaming GeoJSON: a FeatureCollection split into features without loading the file, and GeoJSONSeq.

GDAL's GeoJSON driver keeps per-feature bookkeeping (about 80 bytes a feature, so memory grows with
the file) and scans the file twice. Here the file is read in blocks; numpy finds the structural
characters outside strings and their nesting depth, which gives the byte span of every feature in
the ``features`` array; a batch of spans is then handed to orjson in one call. Memory is bounded by
the block size plus two batches (one is read ahead), whatever the file size.

A batch of plain point features (the usual inventory export) is parsed by Arrow's JSON reader
instead: it fills typed columns in C++, without a Python object per feature and without the GIL, in a
background thread while the caller works on the previous batch; only the distinct text values become
Python strings. Anything Arrow might read differently from orjson (other geometries, nested or
ambiguous numbers, invalid JSON...) goes to orjson as before, so the result is the same either way.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.json as pa_json
import shapely

from common.errors import InvalidInput
from importers._perf import gc_paused
from importers.source import RowProblem, points_from_xy
from registry.messages import both

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN_OBJ, _CLOSE_OBJ, _OPEN_ARR, _CLOSE_ARR = (ord(c) for c in "{}[]")
_DELTA = np.zeros(256, dtype=np.int64)
_DELTA[[_OPEN_OBJ, _OPEN_ARR]] = 1
_DELTA[[_CLOSE_OBJ, _CLOSE_ARR]] = -1

BLOCK_BYTES = 4 << 20
# Features parsed per orjson call. A chunk of 50,000 features is assembled from several of these so
# that only this many parsed feature dicts (~1.5 kB each) are alive at once, not a whole chunk's.
PARSE_UNIT = 10_000
# How far into the file the "features" member may start; beyond this the file is not treated as
# a streamable FeatureCollection (it is read whole if small, refused otherwise).
_HEADER_LIMIT = 64 << 20
_TAIL_BYTES = 64 << 10
GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}
)
_WS = b" \t\r\n"


_Structure = tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8], npt.NDArray[np.int64]]


def _structure(a: npt.NDArray[np.uint8]) -> _Structure:
    """Positions, characters and depth-after of brackets outside strings (``a`` starts outside one)."""
    quotes = np.flatnonzero(a == _QUOTE)
    # Most exports hold no backslash at all; looking for one is far cheaper than checking each quote.
    if quotes.size and _BACKSLASH in a:
        escaped = quotes[(quotes > 0) & (a[np.maximum(quotes - 1, 0)] == _BACKSLASH)]
        if escaped.size:
            # Rare (quotes inside text): count the backslash run before each candidate; an odd run
            # escapes the quote, an even one ("\\\\") is just escaped backslashes.
            keep = np.ones(quotes.size, dtype=bool)
            for pos in escaped.tolist():
                run = 0
                while pos - run - 1 >= 0 and a[pos - run - 1] == _BACKSLASH:
                    run += 1
                if run % 2:
                    keep[np.searchsorted(quotes, pos)] = False
            quotes = quotes[keep]
    # '{' '[' and '}' ']' differ only in bit 0x20: two compares beat a table lookup by 3x here.
    folded = a | 0x20
    positions = np.flatnonzero((folded == _OPEN_OBJ) | (folded == _CLOSE_OBJ))
    # A bracket is inside a string when an odd number of real quotes precede it.
    outside = np.searchsorted(quotes, positions) % 2 == 0
    positions = positions[outside]
    chars = a[positions]
    depth = np.cumsum(_DELTA[chars])
    return positions, chars, depth


@dataclass(slots=True)
class CollectionLayout:
    """Where the features array of a FeatureCollection starts, and its other top-level members."""

    features_offset: int  # byte offset just after the '[' of "features"
    members: dict[str, Any] = field(default_factory=dict)


def _skip_ws(buf: bytes, pos: int) -> int:
    while pos < len(buf) and buf[pos] in _WS:
        pos += 1
    return pos


def find_features_array(stream: BinaryIO) -> CollectionLayout | None:
    """Locate the ``features`` array of a top-level FeatureCollection; None if the file is not one."""
    stream.seek(0)
    buf = b""
    while len(buf) < _HEADER_LIMIT:
        block = stream.read(BLOCK_BYTES)
        if not block:
            break
        buf += block
        layout = _layout_in(buf)
        if layout is not None:
            layout.members.update(_tail_members(stream))
            return layout
    return None


def _layout_in(buf: bytes) -> CollectionLayout | None:
    bom = 3 if buf.startswith(b"\xef\xbb\xbf") else 0
    top = _skip_ws(buf, bom)
    if top >= len(buf) or buf[top] != _OPEN_OBJ:
        return None
    a = np.frombuffer(buf, dtype=np.uint8)[top:]
    positions, _chars, depth = _structure(a)
    needle = b'"features"'
    start = 0
    while (hit := buf.find(needle, top + start)) >= 0:
        start = hit - top + 1
        rel = hit - top
        # Depth just before the key: depth after the last bracket before it. 1 = top-level member.
        k = np.searchsorted(positions, rel) - 1
        if k < 0 or depth[k] != 1:
            continue
        colon = _skip_ws(buf, hit + len(needle))
        if colon >= len(buf) or buf[colon] != ord(":"):
            continue
        bracket = _skip_ws(buf, colon + 1)
        if bracket >= len(buf):
            return None  # need more bytes
        if buf[bracket] != _OPEN_ARR:
            continue
        head = buf[top:hit].rstrip(_WS).rstrip(b",") + b"}"
        try:
            members = orjson.loads(head)
        except orjson.JSONDecodeError:
            members = {}
        return CollectionLayout(bracket + 1, members if isinstance(members, dict) else {})
    return None


def _tail_members(stream: BinaryIO) -> dict[str, Any]:
    """Top-level members written after the features array (some tools put "crs" last)."""
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - _TAIL_BYTES))
    tail = stream.read()
    end = len(tail)
    for _ in range(8):
        end = tail.rfind(b"]", 0, end)
        if end < 0:
            break
        rest = tail[end + 1 :].strip(_WS)
        if rest == b"}":
            return {}
        if rest.startswith(b","):
            try:
                members = orjson.loads(b"{" + rest[1:])
            except orjson.JSONDecodeError:
                continue
            return members if isinstance(members, dict) else {}
    return {}


@dataclass(slots=True)
class _Run:
    """Consecutive complete features: their bytes and each feature's start/end offset inside them."""

    data: bytes
    starts: npt.NDArray[np.intp]
    ends: npt.NDArray[np.intp]


class FeatureArrayText(bytes):
    """The JSON array text of a batch of features, plus where each feature lies inside it.

    Still plain bytes to any caller. The spans let Arrow read the batch without another scan;
    ``arrow`` is that read, started in the background (None when the batch is left to orjson).
    """

    starts: npt.NDArray[np.intp]  # offset of each feature's '{'
    ends: npt.NDArray[np.intp]  # offset of each feature's '}'
    hints: ArrowHints | None = None
    arrow: Future[_ArrowRead | None] | None = None


@dataclass(slots=True)
class ArrowHints:
    """What earlier batches of one file taught the Arrow path."""

    # Properties read as text so far. Declaring them keeps Arrow from turning "2019-01-01" into a
    # timestamp, which would cost a second parse in every batch.
    text_fields: dict[str, None] = field(default_factory=dict)
    skip: int = 0  # batches still to leave to orjson after a failure
    backoff: int = 1


def iter_collection_batches(
    stream: BinaryIO, features_offset: int, batch_size: int, block_bytes: int = BLOCK_BYTES
) -> Iterator[list[Any]]:
    """Parsed features of the array starting at ``features_offset``, ``batch_size`` at a time."""
    for text in iter_collection_texts(stream, features_offset, batch_size, block_bytes, arrow=False):
        yield _loads_array(text)


def iter_collection_texts(
    stream: BinaryIO,
    features_offset: int,
    batch_size: int,
    block_bytes: int = BLOCK_BYTES,
    *,
    arrow: bool = True,
) -> Iterator[FeatureArrayText]:
    """JSON array texts of ``batch_size`` features each, from the array at ``features_offset``.

    Parsing is left to the caller so that it can parse, convert and free a batch in one go. With
    ``arrow``, batches are cut one ahead and Arrow starts reading each in a background thread, so
    that it parses the next batch (without the GIL) while the caller works on this one.
    """
    texts = _cut_texts(stream, features_offset, batch_size, block_bytes)
    if not arrow:
        yield from texts
        return
    hints = ArrowHints()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geojson-arrow")
    # The cutting (the structural scan, numpy that lets go of the GIL) runs one batch ahead on its
    # own thread too: 1.3 s a million features that the caller's thread no longer spends.
    cutter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geojson-cut")
    try:
        ahead: FeatureArrayText | None = None
        cut = cutter.submit(next, texts, None)
        while True:
            try:
                text = cut.result()
            except Exception:
                # A truncated file, say: the batch cut before the error still goes out first, as it
                # did without the read-ahead.
                if ahead is not None:
                    yield ahead
                raise
            if text is None:
                break
            cut = cutter.submit(next, texts, None)
            _start_arrow(pool, text, hints)
            if ahead is not None:
                yield ahead
            ahead = text
        if ahead is not None:
            yield ahead
    finally:
        cutter.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)


def _cut_texts(
    stream: BinaryIO, features_offset: int, batch_size: int, block_bytes: int
) -> Iterator[FeatureArrayText]:
    """The batches of the features array, cut where the structural scan finds features end."""
    stream.seek(features_offset)
    carry = b""  # bytes after the last complete feature; always starts outside any string
    runs: list[_Run] = []
    pending = 0
    closed = False
    while not closed:
        block = stream.read(block_bytes)
        if not block:
            if carry.strip(_WS):
                raise InvalidInput(both("file.truncated"))
            break
        buf = carry + block
        positions, chars, depth = _structure(np.frombuffer(buf, dtype=np.uint8))
        starts = positions[(chars == _OPEN_OBJ) & (depth == 1)]
        ends = positions[(chars == _CLOSE_OBJ) & (depth == 0)]
        close = positions[depth < 0]
        if close.size:
            closed = True
            starts, ends = starts[starts < close[0]], ends[ends < close[0]]
        if ends.size:
            first, last = int(starts[0]), int(ends[-1])
            runs.append(_Run(buf[first : last + 1], starts[: ends.size] - first, ends - first))
            pending += ends.size
            carry = buf[last + 1 :]
        else:
            carry = buf
        while pending >= batch_size:
            yield _take(runs, batch_size)
            pending -= batch_size
    if pending:
        yield _take(runs, pending)


def _take(runs: list[_Run], count: int) -> FeatureArrayText:
    """Remove the first ``count`` features from ``runs``, as the text of one JSON array."""
    parts: list[bytes] = []
    starts: list[npt.NDArray[np.intp]] = []
    ends: list[npt.NDArray[np.intp]] = []
    offset = 1  # after the opening '['
    while count:
        run = runs[0]
        if run.ends.size <= count:
            part, run_starts, run_ends = run.data, run.starts, run.ends
            runs.pop(0)
        else:
            part = run.data[: int(run.ends[count - 1]) + 1]
            run_starts, run_ends = run.starts[:count], run.ends[:count]
            rest = int(run.starts[count])
            runs[0] = _Run(run.data[rest:], run.starts[count:] - rest, run.ends[count:] - rest)
        parts.append(part)
        starts.append(run_starts + offset)
        ends.append(run_ends + offset)
        offset += len(part) + 1  # the part and the comma joining it to the next
        count -= run_ends.size
    text = FeatureArrayText(b"".join((b"[", b",".join(parts), b"]")))
    text.starts = np.concatenate(starts)
    text.ends = np.concatenate(ends)
    return text


def parse_array(text: bytes) -> list[Any] | ArrowFeatures:
    """Parse the JSON array text of a batch of features: as columns when Arrow could, else as dicts."""
    if isinstance(text, FeatureArrayText):
        parsed = _arrow_features(text)
        if parsed is not None:
            return parsed
    return _loads_array(text)


def _loads_array(text: bytes) -> list[Any]:
    """The features of a JSON array text as Python objects."""
    try:
        # A view, because orjson refuses bytes subclasses such as FeatureArrayText.
        parsed: list[Any] = orjson.loads(memoryview(text))
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(both("file.features_json", why=exc)) from exc
    return parsed


# --------------------------------------------------------------------------------------------------
# The Arrow path for batches of points


@dataclass(slots=True)
class ArrowFeatures:
    """A batch of point features parsed by Arrow: property columns and coordinates."""

    keys: list[str]  # property names in first-seen order
    columns: dict[str, list[Any]]
    xs: npt.NDArray[np.float64]
    ys: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.xs)


@dataclass(slots=True)
class _ArrowRead:
    """What the background thread made of a batch: the features one per line, and Arrow's table."""

    ndjson: pa.Buffer
    table: pa.Table


# Arrow errors (ArrowInvalid is also a ValueError); invalid UTF-8 surfaces as UnicodeDecodeError.
_ARROW_ERRORS = (pa.ArrowException, ValueError, UnicodeDecodeError)
_COMMA, _SPACE, _NEWLINE = ord(","), ord(" "), ord("\n")
_MAX_BLOCK = (1 << 31) - 2  # Arrow's block size is a 32-bit int; a batch this big is left to orjson
_GAP_BYTES = np.zeros(256, dtype=bool)
_GAP_BYTES[[*_WS, _COMMA]] = True


def _start_arrow(pool: ThreadPoolExecutor, text: FeatureArrayText, hints: ArrowHints) -> None:
    """Start Arrow on a batch in the background, unless the batch is left to orjson."""
    text.hints = hints
    if hints.skip:
        hints.skip -= 1
        return
    if b'"Point"' not in text:
        return  # no point at all (a file of polygons, say): not worth trying
    text.arrow = pool.submit(_arrow_read, text, _schema(hints.text_fields))


def _arrow_read(text: FeatureArrayText, schema: pa.Schema) -> _ArrowRead | None:
    """Arrow's reading of a batch, None if it refuses; runs in the background, touching only its arguments."""
    if len(text) >= _MAX_BLOCK:
        return None
    ndjson = _as_ndjson(text)
    if ndjson is None or not _valid_utf8(ndjson):
        return None
    try:
        return _ArrowRead(ndjson, _read_json(ndjson, schema))
    except _ARROW_ERRORS:
        return None


def _arrow_features(text: FeatureArrayText) -> ArrowFeatures | None:
    """The batch as Arrow read it, in columns; None when orjson must read it."""
    if text.arrow is None or text.hints is None:
        return None
    hints = text.hints
    read = text.arrow.result()
    text.arrow = None  # the table is not needed once converted
    parsed = _convert(read, hints) if read is not None else None
    if parsed is None:
        # Probably a file (or a stretch of one) Arrow cannot take: try again later, less often.
        hints.skip, hints.backoff = hints.backoff, min(hints.backoff * 2, 64)
        hints.text_fields.clear()  # a declared text field may hold numbers further on
        return None
    hints.backoff = 1
    return parsed


def _as_ndjson(text: FeatureArrayText) -> pa.Buffer | None:
    """The features one per line, as Arrow's JSON reader wants them; None if the array holds
    anything but objects separated by commas (orjson then reports or handles it)."""
    a = np.frombuffer(text, dtype=np.uint8)
    starts, ends = text.starts, text.ends
    # The gaps are the bytes between features (and between the brackets and the first/last one).
    gap_from = np.concatenate(([1], ends + 1))
    gap_to = np.concatenate((starts, [len(a) - 1]))
    lengths = gap_to - gap_from
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    where = np.arange(bounds[-1]) + np.repeat(gap_from - bounds[:-1], lengths)
    gaps = a[where]
    commas = np.concatenate(([0], np.cumsum(gaps == _COMMA)))
    per_gap = commas[bounds[1:]] - commas[bounds[:-1]]
    if not (_GAP_BYTES[gaps].all() and per_gap[0] == per_gap[-1] == 0 and (per_gap[1:-1] == 1).all()):
        return None
    out = a.copy()
    out[where] = _SPACE
    out[[0, len(a) - 1]] = _SPACE
    out[ends[:-1] + 1] = _NEWLINE  # every inner gap has at least its comma
    return pa.py_buffer(out)


def _valid_utf8(data: pa.Buffer) -> bool:
    """Whether ``data`` is valid UTF-8: Arrow's JSON reader does not check, orjson does."""
    offsets = pa.py_buffer(np.array([0, data.size], dtype=np.int32))
    try:
        pa.Array.from_buffers(pa.string(), 1, [None, offsets, data]).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _schema(text_fields: dict[str, None]) -> pa.Schema:
    """What Arrow is told in advance: these properties are text."""
    return pa.schema([("properties", pa.struct([(name, pa.string()) for name in text_fields]))])


def _read_json(ndjson: pa.Buffer, schema: pa.Schema) -> pa.Table:
    """Arrow's reading of a batch, as one block on one thread.

    One block, because Arrow's threads add a property field when its block is done, not in file
    order, and the first-seen order of fields must be kept; it also spares joining the blocks.
    Threads gained nothing on batches this size anyway, and the read already runs beside the caller.
    """
    return pa_json.read_json(
        pa.BufferReader(ndjson),
        read_options=pa_json.ReadOptions(use_threads=False, block_size=ndjson.size + 1),
        # Pretty-printed features span lines; this mode reads one-line ones about as fast.
        parse_options=pa_json.ParseOptions(explicit_schema=schema, newlines_in_values=True),
    )


def _convert(read: _ArrowRead, hints: ArrowHints) -> ArrowFeatures | None:
    """Arrow's table as columns; None if any feature is not a point Feature or a value could differ."""
    table = read.table
    try:
        props = _struct_column(table, "properties")
        if props is None:
            return None
        keys = [f.name for f in props.type]  # first-seen order (a reread below changes it)
        dates = [f.name for f in props.type if pa.types.is_temporal(f.type)]
        if dates:
            # Arrow guessed timestamps from text; orjson keeps text: reread them as text.
            table = _read_json(read.ndjson, _schema(hints.text_fields | dict.fromkeys(dates)))
            props = _struct_column(table, "properties")
            if props is None:
                return None
    except _ARROW_ERRORS:
        return None
    if not _all_finite(table):
        return None  # Arrow reads NaN, Infinity and overflowing numbers; orjson refuses them
    xy = _point_xy(table)
    if xy is None:
        return None
    columns: dict[str, list[Any]] = {}
    for i, f in enumerate(props.type):
        values = _python_values(props.field(i))
        if values is None:
            return None
        columns[f.name] = values
        if pa.types.is_string(f.type):
            hints.text_fields[f.name] = None
    return ArrowFeatures(keys, columns, xy[0], xy[1])


def _struct_column(table: pa.Table, name: str) -> pa.StructArray | None:
    """A column of JSON objects present in every row, or None."""
    if name not in table.column_names:
        return None
    column = table.column(name).combine_chunks()
    if not pa.types.is_struct(column.type) or column.null_count:
        return None
    return column


def _all_finite(array: pa.Table | pa.Array) -> bool:
    """Whether every floating-point value anywhere in the table (nested ones too) is finite."""
    if isinstance(array, pa.Table):
        return all(_all_finite(column.combine_chunks()) for column in array.columns)
    kind = array.type
    if pa.types.is_floating(kind):
        values = array.to_numpy(zero_copy_only=False)
        return bool(np.isfinite(values[~np.asarray(array.is_null())]).all())
    if pa.types.is_struct(kind):
        return all(_all_finite(array.field(i)) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _all_finite(array.values)
    return True


def _point_xy(table: pa.Table) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """x/y of every feature if each has a Point geometry with at least two numbers, else None."""
    if "coordinates" in table.column_names or "geometries" in table.column_names:
        return None  # bare geometries among the records: orjson sorts them out
    geometry = _struct_column(table, "geometry")
    if geometry is None:
        return None
    kind_at = geometry.type.get_field_index("type")
    coordinates_at = geometry.type.get_field_index("coordinates")
    if kind_at < 0 or coordinates_at < 0:
        return None
    kinds, coordinates = geometry.field(kind_at), geometry.field(coordinates_at)
    if kinds.null_count or not pa.types.is_string(kinds.type) or kinds.unique().to_pylist() != ["Point"]:
        return None
    if not pa.types.is_list(coordinates.type) or coordinates.null_count:
        return None
    numbers = coordinates.values
    if numbers.null_count or not (pa.types.is_float64(numbers.type) or pa.types.is_int64(numbers.type)):
        return None
    offsets = coordinates.offsets.to_numpy()
    if (np.diff(offsets) < 2).any():
        return None
    flat = numbers.to_numpy().astype(np.float64, copy=False)
    return flat[offsets[:-1]], flat[offsets[:-1] + 1]


def _python_values(array: pa.Array) -> list[Any] | None:
    """A property column as the Python values orjson gives, or None when that cannot be told."""
    kind = array.type
    if pa.types.is_string(kind):
        # Decode each distinct text once; rows share the str objects, which also speeds up the
        # per-distinct-value memo of the mapping stage.
        encoded = array.dictionary_encode()
        words = encoded.dictionary.to_numpy(zero_copy_only=False)
        indices = encoded.indices
        if array.null_count:
            words = np.concatenate((words, np.array([None], dtype=object)))
            indices = indices.fill_null(len(words) - 1)
        shared: list[Any] = words[indices.to_numpy()].tolist()
        return shared
    if pa.types.is_null(kind):
        return [None] * len(array)
    if pa.types.is_int64(kind) or pa.types.is_boolean(kind):
        return array.to_pylist()
    if pa.types.is_float64(kind):
        # orjson gives int for 2 and float for 2.0; Arrow gives 2.0 for both. Only a column without
        # whole numbers is unambiguous.
        values = array.to_numpy(zero_copy_only=False)
        values = values[~np.isnan(values)]  # nulls (NaN itself was refused by _all_finite)
        if (values == np.trunc(values)).any():
            return None
        return array.to_pylist()
    return None  # nested objects and arrays keep their exact shape only through orjson


class _BadRecord:
    """Stands in for a GeoJSONSeq line that is not valid JSON, so row numbers stay aligned."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def iter_seq_batches(stream: BinaryIO, batch_size: int) -> Iterator[list[Any]]:
    """Parsed records of a GeoJSON text sequence, ``batch_size`` at a time."""
    for records in iter_seq_records(stream, batch_size):
        yield parse_records(records)


def iter_seq_records(stream: BinaryIO, batch_size: int) -> Iterator[list[bytes]]:
    """Raw records of a GeoJSON text sequence (one per line, or RS-separated per RFC 8142)."""
    stream.seek(0)
    first = stream.read(1)
    stream.seek(0)
    records = _rs_records(stream) if first == b"\x1e" else _line_records(stream)
    batch: list[bytes] = []
    for record in records:
        batch.append(record)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _line_records(stream: BinaryIO) -> Iterator[bytes]:
    for line in stream:
        record = line.strip(b"\x1e" + _WS)
        if record:
            yield record


def _rs_records(stream: BinaryIO) -> Iterator[bytes]:
    carry = b""
    while block := stream.read(BLOCK_BYTES):
        pieces = (carry + block).split(b"\x1e")
        carry = pieces.pop()
        for piece in pieces:
            if record := piece.strip(_WS):
                yield record
    if record := carry.strip(_WS):
        yield record


def parse_records(batch: list[bytes]) -> list[Any]:
    """Parse GeoJSONSeq records; a record that is not JSON becomes a placeholder (a row problem)."""
    try:
        parsed: list[Any] = orjson.loads(b"[" + b",".join(batch) + b"]")
        return parsed
    except orjson.JSONDecodeError:
        pass
    # Find the bad record(s) one by one; they become row problems, the rest is kept.
    out: list[Any] = []
    for record in batch:
        try:
            out.append(orjson.loads(record))
        except orjson.JSONDecodeError as exc:
            out.append(_BadRecord(both("imp.json.bad", why=exc)))
    return out


@dataclass(slots=True)
class FeatureColumns:
    """Features of one batch turned into columns."""

    columns: dict[str, list[Any]]
    geometry: npt.NDArray[np.object_] | None
    xs: npt.NDArray[np.float64] | None
    ys: npt.NDArray[np.float64] | None
    problems: list[RowProblem]
    geometry_types: set[str]
    first_row: int = 1
    length: int = 0

    def __len__(self) -> int:
        return self.length


def features_to_columns(
    features: list[Any] | ArrowFeatures, first_row: int, known_keys: dict[str, None]
) -> FeatureColumns:
    """Turn parsed GeoJSON features into property columns and vectorised geometry.

    ``known_keys`` (insertion-ordered) gathers property names across batches so that every batch has
    every column seen so far, in first-seen order; it is updated in place.
    """
    if isinstance(features, ArrowFeatures):
        return _arrow_columns(features, first_row, known_keys)
    problems: list[RowProblem] = []
    try:
        # Fast path, C-level iteration: every record is a Feature whose properties are an object.
        props: list[Any] = list(map(_PROPERTIES, features))
        geoms: list[Any] = list(map(_GEOMETRY, features))
        if set(map(type, props)) != {dict} or set(map(type, features)) != {dict}:
            raise TypeError
    except (KeyError, TypeError, AttributeError):
        props, geoms = _split_features(features, first_row, problems)
    # dict.fromkeys over chained key views runs in C: the union of keys in first-seen order.
    known_keys.update(dict.fromkeys(chain.from_iterable(props)))
    keys = list(known_keys)
    columns: dict[str, list[Any]]
    if len(keys) > 1 and set(map(len, props)) == {len(keys)}:
        # Every record has exactly the known keys: one C-level itemgetter pass, then transpose.
        transposed = zip(*map(itemgetter(*keys), props), strict=True)
        columns = {key: list(values) for key, values in zip(keys, transposed, strict=True)}
    else:
        columns = {key: [p.get(key) for p in props] for key in keys}
    geometry, xs, ys, types = _geometries(geoms, first_row, problems)
    return FeatureColumns(columns, geometry, xs, ys, problems, types, first_row, len(features))


def _arrow_columns(batch: ArrowFeatures, first_row: int, known_keys: dict[str, None]) -> FeatureColumns:
    """FeatureColumns of a batch Arrow already turned into columns (points, no problems)."""
    known_keys.update(dict.fromkeys(batch.keys))
    n = len(batch)
    columns: dict[str, list[Any]] = {}
    for key in known_keys:
        values = batch.columns.get(key)
        columns[key] = values if values is not None else [None] * n
    return FeatureColumns(columns, None, batch.xs, batch.ys, [], {"Point"}, first_row, n)


_PROPERTIES = itemgetter("properties")
_TYPE = itemgetter("type")
_COORDINATES = itemgetter("coordinates")
_GEOMETRY = itemgetter("geometry")


def _split_features(
    features: list[Any], first_row: int, problems: list[RowProblem]
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Properties and geometries of irregular records: bare geometries, null properties, junk."""
    props: list[dict[str, Any]] = []
    geoms: list[Any] = []
    for i, feature in enumerate(features):
        if isinstance(feature, dict):
            if feature.get("type") in GEOMETRY_TYPES and (
                "coordinates" in feature or "geometries" in feature
            ):
                props.append({})  # a bare geometry, as some GeoJSONSeq writers emit
                geoms.append(feature)
                continue
            p = feature.get("properties")
            props.append(p if isinstance(p, dict) else {})
            geoms.append(feature.get("geometry"))
            continue
        reason = feature.reason if isinstance(feature, _BadRecord) else both("imp.geojson.not_feature")
        problems.append(RowProblem(first_row + i, None, reason))
        props.append({})
        geoms.append(None)
    return props, geoms


def _geometries(
    geoms: list[Any], first_row: int, problems: list[RowProblem]
) -> tuple[
    npt.NDArray[np.object_] | None, npt.NDArray[np.float64] | None, npt.NDArray[np.float64] | None, set[str]
]:
    n = len(geoms)
    try:
        types = set(map(_TYPE, geoms))
    except (KeyError, TypeError):
        types = {g.get("type") if isinstance(g, dict) else None for g in geoms}
    present = {t for t in types if t is not None}
    if present <= {"Point"}:
        xs, ys = _point_coordinates(geoms, first_row, problems)
        return None, xs, ys, set(present)
    texts = np.array([orjson.dumps(g) if isinstance(g, dict) else None for g in geoms], dtype=object)
    geometry = shapely.from_geojson(texts, on_invalid="ignore")
    for i in range(n):
        if geometry[i] is None or shapely.is_empty(geometry[i]):
            reason = both("imp.geom.none") if texts[i] is None else both("imp.geojson.bad_geometry")
            problems.append(RowProblem(first_row + i, "geometry", reason))
            geometry[i] = None
    return geometry, None, None, set(present)


def _point_coordinates(
    geoms: list[Any], first_row: int, problems: list[RowProblem]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """x/y arrays of point geometries; fast when every point is a plain [x, y] pair."""
    try:
        coords = list(map(_COORDINATES, geoms))
    except (KeyError, TypeError):
        coords = [g.get("coordinates") if isinstance(g, dict) else None for g in geoms]
    try:
        arr = np.array(coords, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[1] >= 2:
            return arr[:, 0].copy(), arr[:, 1].copy()
    except (ValueError, TypeError):
        pass
    # Some rows are null, empty, 3-D or malformed: go row by row.
    n = len(coords)
    xs = np.full(n, np.nan)
    ys = np.full(n, np.nan)
    for i, c in enumerate(coords):
        try:
            xs[i], ys[i] = float(c[0]), float(c[1])
        except (TypeError, ValueError, IndexError):
            reason = both("imp.geom.none") if c is None or c == [] else both("imp.geojson.bad_point")
            problems.append(RowProblem(first_row + i, "geometry", reason, None if c is None else str(c)))
    return xs, ys


def iter_feature_chunks(
    batches: Iterator[Callable[[], list[Any] | ArrowFeatures]],
    chunk_size: int,
    known_keys: dict[str, None],
    first_chunk_size: int | None = None,
) -> Generator[tuple[int, FeatureColumns], None, None]:
    """Parse and convert units of features, regrouped into chunks of exactly ``chunk_size`` rows
    (the first one ``first_chunk_size``, when given).

    ``batches`` yields parse functions (one per unit); yields (first_row, columns). Each unit is
    parsed, converted and its dicts freed while the garbage collector is paused, so the collector
    never scans them (re-enabling it with a million young dicts alive costs as much as parsing).
    """
    parts: list[FeatureColumns] = []
    pending = 0
    row = 1
    size = min(first_chunk_size or chunk_size, chunk_size)
    for parse in batches:
        with gc_paused():
            features = parse()
            part = features_to_columns(features, row + pending, known_keys)
            del features
        parts.append(part)
        pending += len(part)
        while pending >= size:
            merged, parts = _merge(parts, size, known_keys)
            yield row, merged
            row += size
            pending -= size
            size = chunk_size
    if pending:
        merged, _ = _merge(parts, pending, known_keys)
        yield row, merged


def _merge(
    parts: list[FeatureColumns], count: int, known_keys: dict[str, None]
) -> tuple[FeatureColumns, list[FeatureColumns]]:
    """The first ``count`` rows of ``parts`` as one FeatureColumns, and the parts left over."""
    taken: list[FeatureColumns] = []
    rest = list(parts)
    need = count
    while need:
        part = rest.pop(0)
        if len(part) <= need:
            taken.append(part)
            need -= len(part)
        else:
            head, tail = _split(part, need)
            taken.append(head)
            rest.insert(0, tail)
            need = 0
    if len(taken) == 1 and set(taken[0].columns) == set(known_keys):
        return taken[0], rest
    columns: dict[str, list[Any]] = {}
    for key in known_keys:
        values: list[Any] = []
        for part in taken:
            values.extend(part.columns.get(key) or [None] * len(part))
        columns[key] = values
    problems = [p for part in taken for p in part.problems]
    types = set().union(*(part.geometry_types for part in taken))
    if all(part.geometry is None for part in taken):
        xs = np.concatenate([part.xs for part in taken if part.xs is not None])
        ys = np.concatenate([part.ys for part in taken if part.ys is not None])
        return FeatureColumns(columns, None, xs, ys, problems, types, taken[0].first_row, count), rest
    geometry = np.concatenate(
        [part.geometry if part.geometry is not None else points_from_xy(part.xs, part.ys) for part in taken]  # type: ignore[arg-type]
    )
    return FeatureColumns(columns, geometry, None, None, problems, types, taken[0].first_row, count), rest


def _split(part: FeatureColumns, k: int) -> tuple[FeatureColumns, FeatureColumns]:
    """Cut a FeatureColumns after its first ``k`` rows."""
    boundary = part.first_row + k

    def cut(array: Any, head: bool) -> Any:
        if array is None:
            return None
        return array[:k] if head else array[k:]

    def piece(head: bool) -> FeatureColumns:
        return FeatureColumns(
            {key: cut(values, head) for key, values in part.columns.items()},
            cut(part.geometry, head),
            cut(part.xs, head),
            cut(part.ys, head),
            [p for p in part.problems if (p.row < boundary) == head],
            part.geometry_types,
            part.first_row if head else boundary,
            k if head else len(part) - k,
        )

    return piece(True), piece(False)
