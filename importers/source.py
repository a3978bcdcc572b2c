"""What every reader yields: a description of the source file and a stream of column-oriented chunks.

Row numbers are the ones a person sees when opening the file:

* vector formats (Shapefile, GeoJSON, GeoJSONSeq, GeoPackage): the 1-based feature number in file
  order (the first feature is 1), which is also the FID + 1 of a shapefile;
* CSV and Excel: the 1-based spreadsheet row, header included, so the first data row under a header
  in row 1 is row 2, and a row skipped because it is blank keeps its number for the rows after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import shapely

SourceFormat = Literal["shapefile", "geojson", "geojsonseq", "gpkg", "csv", "xlsx"]
# "argument": the caller said so; "declared": the file said so (.cpg, LDID, BOM);
# "detected": guessed from the bytes; "format": fixed by the format's specification (GeoJSON, GPKG, xlsx).
EncodingOrigin = Literal["argument", "declared", "detected", "format"]

Column = list[Any] | npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One problem with one row: which row, which field (None for the whole row) and why."""

    row: int
    field: str | None
    reason: str
    value: str | None = None

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", field {self.field}" if self.field else "")
        shown = f" ({self.value!r})" if self.value is not None else ""
        return f"{where}: {self.reason}{shown}"


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What is known about a source before (or without) reading all of it."""

    file: str
    format: SourceFormat
    layer: str | None
    layers: tuple[str, ...]
    feature_count: int | None  # None when only a full scan could tell (GeoJSON, CSV)
    declared_crs: str | None  # "EPSG:4547", a WKT string GDAL could not identify, or None
    encoding: str | None
    encoding_origin: EncodingOrigin | None
    fields: tuple[str, ...]
    geometry_type: str | None = None  # "Point", "LineString"..., or None for coordinate columns
    x_field: str | None = None  # coordinate columns of a CSV/Excel source
    y_field: str | None = None
    notes: tuple[str, ...] = ()  # facts worth showing the user (encoding detail, CRS caveats...)


@dataclass(slots=True)
class SourceChunk:
    """A run of consecutive records of one source, column-oriented.

    Geometry comes one of two ways, and a reader fills at least one of them:

    * ``geometry``: object array of shapely geometries (None where the record has none);
    * ``xs``/``ys``: float arrays (NaN where missing), set whenever every record of the chunk is a
      point: coordinate columns of CSV/Excel, or point-only vector chunks. ``geometry`` may then be
      None to spare building a million shapely objects the next stage would reproject anyway; use
      :meth:`shapes` when shapely objects are wanted.

    Row numbers run ``first_row, first_row + 1, ...`` unless ``row_numbers`` is given (tabular
    sources skip blank rows, and the rows after them keep their spreadsheet numbers).
    """

    file: str
    first_row: int
    columns: dict[str, Column]
    geometry: npt.NDArray[np.object_] | None = None
    xs: npt.NDArray[np.float64] | None = None
    ys: npt.NDArray[np.float64] | None = None
    declared_crs: str | None = None
    problems: list[RowProblem] = field(default_factory=list)
    row_numbers: npt.NDArray[np.int64] | None = None

    def __len__(self) -> int:
        if self.row_numbers is not None:
            return len(self.row_numbers)
        if self.xs is not None:
            return len(self.xs)
        if self.geometry is not None:
            return len(self.geometry)
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def rows(self) -> npt.NDArray[np.int64]:
        """The row number of every record, as the user sees it in the file."""
        if self.row_numbers is not None:
            return self.row_numbers
        return np.arange(self.first_row, self.first_row + len(self), dtype=np.int64)

    def shapes(self) -> npt.NDArray[np.object_]:
        """Shapely geometries of all records, building points from xs/ys when needed."""
        if self.geometry is not None:
            return self.geometry
        if self.xs is None or self.ys is None:
            return np.full(len(self), None, dtype=object)
        return points_from_xy(self.xs, self.ys)


class ChunkStream:
    """A reader's chunks: the first (read early, so SourceInfo could describe the file), then the rest.

    ``close()`` closes the reader behind it, releasing its file and any read-ahead thread at once
    instead of whenever the garbage collector gets to them (an import that failed half-way keeps
    its frames alive as long as anything holds the exception).
    """

    def __init__(self, first: SourceChunk | None, rest: Iterator[SourceChunk]) -> None:
        self._first = first
        self._rest = rest

    def __iter__(self) -> ChunkStream:
        return self

    def __next__(self) -> SourceChunk:
        if self._first is not None:
            chunk, self._first = self._first, None
            return chunk
        return next(self._rest)

    def close(self) -> None:
        """Close the reader (a no-op for readers without ``close``)."""
        self._first = None
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()


def points_from_xy(xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64]) -> npt.NDArray[np.object_]:
    """Shapely points from coordinate arrays, None where either coordinate is NaN."""
    out = shapely.points(xs, ys)
    missing = np.isnan(xs) | np.isnan(ys)
    if missing.any():
        # shapely would give POINT EMPTY; None says "no geometry" unambiguously downstream.
        out = out.astype(object)
        out[missing] = None
    return out


def iter_records(chunk: SourceChunk) -> Iterator[dict[str, Any]]:
    """Row-at-a-time view of a chunk (tests, previews): attribute values plus ``_row`` and ``_geometry``."""
    names = list(chunk.columns)
    geoms = chunk.shapes()
    for i, row in enumerate(chunk.rows()):
        record = {name: _plain(chunk.columns[name][i]) for name in names}
        record["_row"] = int(row)
        record["_geometry"] = geoms[i]
        yield record


def _plain(value: Any) -> Any:
    """numpy scalars to Python values so a record compares and prints naturally."""
    return value.item() if isinstance(value, np.generic) else value
