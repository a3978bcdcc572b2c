"""Streaming GeoJSON: a FeatureCollection split into features without loading the file, and GeoJSONSeq.

GDAL's GeoJSON driver keeps per-feature bookkeeping (about 80 bytes a feature, so memory grows with
the file) and scans the file twice. Here the file is read in blocks; numpy finds the structural
characters outside strings and their nesting depth, which gives the byte span of every feature in
the ``features`` array; a batch of spans is then handed to orjson in one call. Memory is bounded by
the block size plus one batch, whatever the file size.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import orjson
import shapely

from importers._perf import gc_paused
from importers.source import RowProblem, points_from_xy
from registry.errors import InvalidInput

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
    if quotes.size:
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


def iter_collection_batches(
    stream: BinaryIO, features_offset: int, batch_size: int, block_bytes: int = BLOCK_BYTES
) -> Iterator[list[Any]]:
    """Parsed features of the array starting at ``features_offset``, ``batch_size`` at a time."""
    for text in iter_collection_texts(stream, features_offset, batch_size, block_bytes):
        yield parse_array(text)


def iter_collection_texts(
    stream: BinaryIO, features_offset: int, batch_size: int, block_bytes: int = BLOCK_BYTES
) -> Iterator[bytes]:
    """JSON array texts of ``batch_size`` features each, from the array at ``features_offset``.

    Parsing is left to the caller so that it can parse, convert and free a batch in one go.
    """
    stream.seek(features_offset)
    carry = b""  # bytes after the last complete feature; always starts outside any string
    runs: list[_Run] = []
    pending = 0
    closed = False
    while not closed:
        block = stream.read(block_bytes)
        if not block:
            if carry.strip(_WS):
                raise InvalidInput("the file ends inside the features array: is it truncated?")
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


def _take(runs: list[_Run], count: int) -> bytes:
    """Remove the first ``count`` features from ``runs``, as the text of one JSON array."""
    parts: list[bytes] = []
    while count:
        run = runs[0]
        if run.ends.size <= count:
            parts.append(run.data)
            count -= run.ends.size
            runs.pop(0)
            continue
        parts.append(run.data[: int(run.ends[count - 1]) + 1])
        offset = int(run.starts[count])
        runs[0] = _Run(run.data[offset:], run.starts[count:] - offset, run.ends[count:] - offset)
        count = 0
    return b"[" + b",".join(parts) + b"]"


def parse_array(text: bytes) -> list[Any]:
    """Parse the JSON array text of a batch of features."""
    try:
        parsed: list[Any] = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"invalid JSON in the features array: {exc}") from exc
    return parsed


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
            out.append(_BadRecord(f"invalid JSON: {exc}"))
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


def features_to_columns(features: list[Any], first_row: int, known_keys: dict[str, None]) -> FeatureColumns:
    """Turn parsed GeoJSON features into property columns and vectorised geometry.

    ``known_keys`` (insertion-ordered) gathers property names across batches so that every batch has
    every column seen so far, in first-seen order; it is updated in place.
    """
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
        reason = feature.reason if isinstance(feature, _BadRecord) else "not a GeoJSON feature"
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
            reason = "no geometry" if texts[i] is None else "invalid or empty GeoJSON geometry"
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
            reason = "no geometry" if c is None or c == [] else "invalid point coordinates"
            problems.append(RowProblem(first_row + i, "geometry", reason, None if c is None else str(c)))
    return xs, ys


def iter_feature_chunks(
    batches: Iterator[Callable[[], list[Any]]], chunk_size: int, known_keys: dict[str, None]
) -> Iterator[tuple[int, FeatureColumns]]:
    """Parse and convert units of features, regrouped into chunks of exactly ``chunk_size`` rows.

    ``batches`` yields parse functions (one per unit); yields (first_row, columns). Each unit is
    parsed, converted and its dicts freed while the garbage collector is paused, so the collector
    never scans them (re-enabling it with a million young dicts alive costs as much as parsing).
    """
    parts: list[FeatureColumns] = []
    pending = 0
    row = 1
    for parse in batches:
        with gc_paused():
            features = parse()
            part = features_to_columns(features, row + pending, known_keys)
            del features
        parts.append(part)
        pending += len(part)
        while pending >= chunk_size:
            merged, parts = _merge(parts, chunk_size, known_keys)
            yield row, merged
            row += chunk_size
            pending -= chunk_size
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
