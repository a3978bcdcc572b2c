"""Vector sources: Shapefile (also zipped), GeoPackage, GeoJSON and GeoJSON text sequences.

Shapefiles and GeoPackages stream through GDAL's Arrow interface (``pyogrio.raw.open_arrow``), which
hands over record batches without a Python object per feature. GeoJSON goes through the block
splitter of :mod:`importers.geojson_stream` instead: GDAL's GeoJSON driver scans the file twice and
its memory grows with the feature count.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyogrio
import shapely
from pyogrio.errors import DataSourceError, FieldError, GeometryError
from pyogrio.raw import open_arrow

from common.errors import InvalidInput
from importers._perf import gc_paused
from importers.encoding import EncodingChoice, dbf_encoding
from importers.geojson_stream import (
    GEOMETRY_TYPES,
    PARSE_UNIT,
    ArrowFeatures,
    find_features_array,
    iter_collection_texts,
    iter_feature_chunks,
    iter_seq_records,
    parse_array,
    parse_records,
)
from importers.source import ChunkStream, Column, RowProblem, SourceChunk, SourceInfo
from registry.messages import both

Opened = tuple[SourceInfo, Iterator[SourceChunk]]
_WHOLE_FILE_LIMIT = 64 << 20  # a GeoJSON that is not a FeatureCollection is read whole up to this size
_GDAL_ERRORS = (DataSourceError, FieldError, GeometryError, RuntimeError, OSError)


# --------------------------------------------------------------------------------------------------
# Shapefile and GeoPackage (GDAL)


@dataclass(frozen=True, slots=True)
class _Shapefile:
    """Where a shapefile's parts are: a GDAL path plus openers for the .dbf and .cpg bytes."""

    gdal_path: str
    display: str
    layers: tuple[str, ...]
    zip_path: Path | None
    members: dict[str, str]  # lower-case extension -> real file (or zip member) name


def _sibling_parts(shp: Path) -> dict[str, str]:
    """The files beside ``shp`` sharing its stem, by lower-cased extension (ROADS.DBF counts)."""
    stem = shp.stem.lower()
    parts: dict[str, str] = {}
    for entry in shp.parent.iterdir():
        if entry.stem.lower() == stem and entry.suffix:
            parts.setdefault(entry.suffix.lower(), entry.name)
    parts[".shp"] = shp.name
    return parts


def _locate_shapefile(path: Path, layer: str | None) -> _Shapefile:
    """Resolve a .shp path or a .zip holding shapefiles, checking that the mandatory parts exist."""
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                entries = [i for i in archive.infolist() if not i.is_dir() and "__MACOSX" not in i.filename]
        except zipfile.BadZipFile as exc:
            raise InvalidInput(both("file.zip", file=path.name, why=exc), file=path.name) from exc
        names = [entry.filename for entry in entries]
        readable = {entry.filename: _zip_member_name(entry) for entry in entries}
        shps = sorted((n for n in names if n.lower().endswith(".shp")), key=lambda n: readable[n])
        if not shps:
            raise InvalidInput(both("file.zip_no_shp", file=path.name), file=path.name)
        stems = tuple(PurePosixPath(readable[n]).stem for n in shps)
        chosen = (
            shps[0]
            if layer is None
            else next((n for n, st in zip(shps, stems, strict=True) if st == layer), None)
        )
        if chosen is None:
            raise InvalidInput(
                both("file.zip_no_layer", file=path.name, layer=layer, layers=", ".join(stems)),
                file=path.name,
            )
        base = chosen[:-4].lower()
        members: dict[str, str] = {}
        for name in names:
            ext = name[len(base) :].lower()
            # roads.shp -> roads.dbf, roads.DBF; but not roads_old.dbf or roads.shp.xml.
            if name[: len(base)].lower() == base and ext.startswith(".") and ext.count(".") == 1:
                members[ext] = name
        display = f"{path.name}!{readable[chosen]}"
        _check_parts(members, display, PurePosixPath(readable[chosen]).name)
        return _Shapefile(f"/vsizip/{path.resolve()}/{chosen}", display, stems, path, members)
    if not path.exists():
        raise InvalidInput(both("file.not_found", file=path.name), file=path.name)
    members = _sibling_parts(path)
    _check_parts(members, path.name, path.name)
    return _Shapefile(str(path), path.name, (path.stem,), None, members)


def _zip_member_name(entry: zipfile.ZipInfo) -> str:
    """A member name as its author wrote it, for display and layer names.

    Zips made on Chinese Windows store names in GBK without the UTF-8 flag; Python (and GDAL's
    /vsizip, which is addressed with the raw name) decode those as CP437, giving mojibake.
    """
    if entry.flag_bits & 0x800:
        return entry.filename
    try:
        raw = entry.filename.encode("cp437")
    except UnicodeEncodeError:
        return entry.filename
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return entry.filename


def _check_parts(members: dict[str, str], display: str, shp_name: str) -> None:
    for ext in (".dbf", ".shx"):
        if ext not in members:
            raise InvalidInput(both("file.missing_part", file=display, ext=ext, shp=shp_name), file=display)


def _open_part(shp: _Shapefile, ext: str, stack: ExitStack) -> IO[bytes] | None:
    name = shp.members.get(ext)
    if name is None:
        return None
    if shp.zip_path is None:
        return stack.enter_context((_parent(shp) / name).open("rb"))
    archive = stack.enter_context(zipfile.ZipFile(shp.zip_path))
    return stack.enter_context(archive.open(name))


def _parent(shp: _Shapefile) -> Path:
    return Path(shp.gdal_path).parent


def _shapefile_encoding(shp: _Shapefile, override: str | None) -> EncodingChoice:
    """Encoding of the shapefile's DBF: argument, .cpg, LDID byte or detection."""
    with ExitStack() as stack:
        cpg = _open_part(shp, ".cpg", stack)
        cpg_text = cpg.read(200).decode("ascii", errors="replace") if cpg is not None else None
        dbf = _open_part(shp, ".dbf", stack)
        assert dbf is not None  # checked by _check_parts
        # Zip members are seekable (backwards by re-inflating), which is all detection needs.
        return dbf_encoding(dbf, cpg_text, override)


def open_shapefile(path: Path, *, layer: str | None, encoding: str | None, chunk_size: int) -> Opened:
    """Open a .shp (or a .zip of shapefiles): SourceInfo plus a stream of chunks."""
    shp = _locate_shapefile(path, layer)
    choice = _shapefile_encoding(shp, encoding)
    info = _gdal_info(shp.gdal_path, shp.display, "shapefile", None, shp.layers, choice)
    notes: list[str] = [both("note.encoding", encoding=choice.encoding, detail=choice.detail)]
    if ".prj" not in shp.members and info.declared_crs is None:
        notes.append(both("note.no_prj"))
    info = replace(info, layer=shp.layers[0] if layer is None else layer, notes=tuple(notes))
    chunks = _gdal_chunks(shp.gdal_path, shp.display, None, choice.encoding, chunk_size, info.declared_crs)
    return info, chunks


def open_geopackage(path: Path, *, layer: str | None, chunk_size: int) -> Opened:
    """Open a GeoPackage layer (default: the first one with geometry)."""
    if not path.exists():
        raise InvalidInput(both("file.not_found", file=path.name), file=path.name)
    try:
        listed = pyogrio.list_layers(path)
    except _GDAL_ERRORS as exc:
        raise InvalidInput(both("file.gpkg", file=path.name, why=exc), file=path.name) from exc
    names = tuple(str(name) for name, _ in listed)
    if not names:
        raise InvalidInput(both("file.gpkg_empty", file=path.name), file=path.name)
    if layer is None:
        with_geometry = [str(name) for name, gtype in listed if gtype is not None]
        layer = with_geometry[0] if with_geometry else names[0]
    elif layer not in names:
        raise InvalidInput(
            both("file.no_layer", file=path.name, layer=layer, layers=", ".join(names)),
            file=path.name,
            layer=layer,
        )
    choice = EncodingChoice("UTF-8", "format", both("enc.gpkg"))
    info = _gdal_info(str(path), path.name, "gpkg", layer, names, choice)
    return info, _gdal_chunks(str(path), path.name, layer, None, chunk_size, info.declared_crs)


def _gdal_info(
    gdal_path: str,
    display: str,
    fmt: Any,
    layer: str | None,
    layers: tuple[str, ...],
    choice: EncodingChoice,
) -> SourceInfo:
    try:
        raw = pyogrio.read_info(gdal_path, layer=layer, encoding=_gdal_encoding(choice, fmt))
    except _GDAL_ERRORS as exc:
        raise InvalidInput(both("file.unreadable", file=display, why=exc), file=display) from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            both("file.field_names", file=display, encoding=choice.encoding, why=exc), file=display
        ) from exc
    count = raw.get("features")
    return SourceInfo(
        file=display,
        format=fmt,
        layer=layer if layer is not None else raw.get("layer_name"),
        layers=layers,
        feature_count=int(count) if count is not None and count >= 0 else None,
        declared_crs=raw.get("crs") or None,
        encoding=choice.encoding,
        encoding_origin=choice.origin,
        fields=tuple(str(f) for f in raw["fields"]),
        geometry_type=raw.get("geometry_type"),
    )


def _gdal_encoding(choice: EncodingChoice, fmt: str) -> str | None:
    # Only the DBF needs telling; GPKG is UTF-8 by definition and GDAL knows it.
    return choice.encoding if fmt == "shapefile" else None


def _gdal_chunks(
    gdal_path: str,
    display: str,
    layer: str | None,
    encoding: str | None,
    chunk_size: int,
    declared_crs: str | None,
) -> Iterator[SourceChunk]:
    first_row = 1
    try:
        with open_arrow(
            gdal_path, layer=layer, encoding=encoding, batch_size=chunk_size, use_pyarrow=True
        ) as (meta, reader):
            geometry_name = meta.get("geometry_name") or "wkb_geometry"
            fid_name = meta.get("fid_column")
            for batch in reader:
                with gc_paused():
                    chunk = _batch_to_chunk(batch, geometry_name, fid_name, display, first_row, declared_crs)
                first_row += batch.num_rows
                yield chunk
    except _GDAL_ERRORS as exc:
        raise InvalidInput(
            both("file.unreadable_near", file=display, row=first_row, why=exc), file=display
        ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            both("file.not_encoding_near", file=display, encoding=encoding, row=first_row), file=display
        ) from exc


def _batch_to_chunk(
    batch: pa.RecordBatch,
    geometry_name: str,
    fid_name: str | None,
    display: str,
    first_row: int,
    declared_crs: str | None,
) -> SourceChunk:
    columns: dict[str, Column] = {}
    wkb: pa.Array | None = None
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name == geometry_name:
            wkb = column
        elif name != fid_name:
            columns[name] = arrow_to_column(column)
    problems: list[RowProblem] = []
    n = batch.num_rows
    if wkb is None:
        # An attribute-only table: no geometry at all (the mapping may find coordinate fields).
        rows = np.arange(first_row, first_row + n, dtype=np.int64)
        return SourceChunk(display, first_row, columns, None, None, None, declared_crs, problems, rows)
    xy = wkb_points_xy(wkb)
    if xy is not None:
        xs, ys = xy
        for i in np.flatnonzero(np.isnan(xs) | np.isnan(ys)).tolist():
            problems.append(RowProblem(first_row + i, "geometry", both("imp.geom.none")))
        return SourceChunk(display, first_row, columns, None, xs, ys, declared_crs, problems)
    geometry = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False), on_invalid="ignore")
    geometry, xs_opt, ys_opt = _finish_geometry(geometry, first_row, problems)
    return SourceChunk(display, first_row, columns, geometry, xs_opt, ys_opt, declared_crs, problems)


def _finish_geometry(
    geometry: npt.NDArray[np.object_], first_row: int, problems: list[RowProblem]
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float64] | None, npt.NDArray[np.float64] | None]:
    """Replace empty geometries by None (as row problems); add xs/ys when every geometry is a point."""
    missing = shapely.is_missing(geometry) | shapely.is_empty(geometry)
    for i in np.flatnonzero(missing).tolist():
        problems.append(RowProblem(first_row + i, "geometry", both("imp.geom.none")))
    if missing.any():
        geometry = geometry.astype(object)
        geometry[missing] = None
    type_ids = shapely.get_type_id(geometry)
    if np.all((type_ids == shapely.GeometryType.POINT) | missing):
        return geometry, shapely.get_x(geometry), shapely.get_y(geometry)
    return geometry, None, None


def wkb_points_xy(
    wkb: pa.Array | pa.ChunkedArray,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """x/y straight from a column of 2-D little-endian WKB points, or None if it holds anything else.

    Saves building a shapely object per point (0.8 s per million) when the next stage only needs
    coordinate arrays. Nulls and POINT EMPTY (NaN coordinates in WKB) come out as NaN.
    """
    if isinstance(wkb, pa.ChunkedArray):
        wkb = wkb.combine_chunks()
    if isinstance(wkb, pa.ExtensionArray):
        wkb = wkb.storage
    if not pa.types.is_binary(wkb.type) or len(wkb) == 0:
        return None
    offsets = np.frombuffer(wkb.buffers()[1], dtype=np.int32)[wkb.offset : wkb.offset + len(wkb) + 1]
    lengths = np.diff(offsets)
    valid = np.ones(len(wkb), dtype=bool) if wkb.null_count == 0 else ~np.asarray(wkb.is_null())
    if not np.all(lengths[valid] == 21):
        return None
    data = np.frombuffer(wkb.buffers()[2], dtype=np.uint8)
    if np.all(lengths[~valid] == 0):
        # The usual layout: valid points back to back, nulls taking no bytes.
        rows = data[offsets[0] : offsets[-1]].reshape(-1, 21)
    else:
        rows = data[offsets[:-1][valid][:, None] + np.arange(21)]
    # Byte order 1 (little endian) and geometry type 1 (Point) for every row, else fall back.
    if not (np.all(rows[:, 0] == 1) and np.all(rows[:, 1:5] == np.array([1, 0, 0, 0], dtype=np.uint8))):
        return None
    coords = rows[:, 5:21].copy().view("<f8")
    xs = np.full(len(wkb), np.nan)
    ys = np.full(len(wkb), np.nan)
    xs[valid], ys[valid] = coords[:, 0], coords[:, 1]
    return xs, ys


def arrow_to_column(column: pa.Array | pa.ChunkedArray) -> Column:
    """An Arrow column as numpy where that is lossless, else a list of Python values (None for null)."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.to_numpy(zero_copy_only=False)
    if pa.types.is_floating(kind):
        return column.to_numpy(zero_copy_only=False)  # nulls become NaN
    if pa.types.is_integer(kind) and column.null_count == 0:
        return column.to_numpy()
    # Integers with nulls, dates, timestamps, booleans: Python values keep None and the types.
    return column.to_pylist()


# --------------------------------------------------------------------------------------------------
# GeoJSON and GeoJSONSeq (own streaming reader)


def geojson_crs(members: dict[str, Any]) -> tuple[str | None, str | None]:
    """The CRS declared by a GeoJSON ``crs`` member as "EPSG:<code>" where possible; (crs, note)."""
    crs = members.get("crs")
    if not isinstance(crs, dict):
        return None, both("note.geojson_no_crs")
    given = crs.get("properties")
    props: dict[str, Any] = given if isinstance(given, dict) else {}
    name = props.get("name")
    code = props.get("code")
    if crs.get("type") == "EPSG" and code is not None:
        return f"EPSG:{code}", None
    if not isinstance(name, str) or not name.strip():
        return None, both("note.geojson_crs_unknown", crs=orjson.dumps(crs).decode())
    text = name.strip()
    upper = text.upper()
    if upper.endswith("CRS84") or upper.endswith("CRS:84"):
        return "EPSG:4326", None  # lon/lat WGS84, the axis order this project uses anyway
    if "EPSG" in upper:
        digits = upper.rsplit(":", 1)[-1]
        if digits.isdigit():
            return f"EPSG:{digits}", None
    return text, None


def open_geojson(path: Path, *, chunk_size: int) -> Opened:
    """Open a GeoJSON file; a FeatureCollection is streamed, anything else read whole (if small)."""
    if not path.exists():
        raise InvalidInput(both("file.not_found", file=path.name), file=path.name)
    with path.open("rb") as stream:
        layout = find_features_array(stream)
    if layout is not None:
        members = layout.members
        offset = layout.features_offset

        def batches() -> Iterator[_Batch]:
            with path.open("rb") as stream:
                try:
                    for text in iter_collection_texts(stream, offset, min(chunk_size, PARSE_UNIT)):
                        yield partial(parse_array, text)
                except InvalidInput as exc:
                    raise InvalidInput(
                        both("file.in_file", file=path.name, message=exc.message), file=path.name
                    ) from exc

    else:
        members, features = _read_small_geojson(path)

        def batches() -> Iterator[_Batch]:
            for start in range(0, len(features), PARSE_UNIT):
                yield partial(list, features[start : start + PARSE_UNIT])

    declared, note = geojson_crs(members)
    return _json_source(path, "geojson", batches(), chunk_size, declared, [note] if note else [])


def _read_small_geojson(path: Path) -> tuple[dict[str, Any], list[Any]]:
    """A single Feature, a bare geometry, or a FeatureCollection the splitter could not place."""
    if path.stat().st_size > _WHOLE_FILE_LIMIT:
        raise InvalidInput(both("file.not_collection", file=path.name), file=path.name)
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(both("file.json", file=path.name, why=exc), file=path.name) from exc
    if isinstance(doc, dict):
        kind = doc.get("type")
        if kind == "FeatureCollection" and isinstance(doc.get("features"), list):
            return doc, doc["features"]
        if kind == "Feature" or kind in GEOMETRY_TYPES:
            return doc, [doc]
    raise InvalidInput(both("file.not_geojson", file=path.name), file=path.name)


def open_geojsonseq(path: Path, *, chunk_size: int) -> Opened:
    """Open a GeoJSON text sequence (one feature per line, or RS-separated)."""
    if not path.exists():
        raise InvalidInput(both("file.not_found", file=path.name), file=path.name)

    def batches() -> Iterator[_Batch]:
        with path.open("rb") as stream:
            for records in iter_seq_records(stream, min(chunk_size, PARSE_UNIT)):
                yield partial(parse_records, records)

    note = both("note.geojsonseq_no_crs")
    return _json_source(path, "geojsonseq", batches(), chunk_size, None, [note])


# A batch of features, parsed when called: dicts (orjson) or columns (Arrow, for point batches).
_Batch = Callable[[], list[Any] | ArrowFeatures]


def _json_source(
    path: Path,
    fmt: Any,
    batches: Iterator[_Batch],
    chunk_size: int,
    declared: str | None,
    notes: list[str],
) -> Opened:
    keys: dict[str, None] = {}
    types: set[str] = set()

    def chunks() -> Iterator[SourceChunk]:
        # The first chunk is one parse unit: whatever follows (the database's writing, above all)
        # starts after 10,000 features instead of 50,000.
        grouped = iter_feature_chunks(batches, chunk_size, keys, first_chunk_size=PARSE_UNIT)
        try:
            for first_row, cols in grouped:
                types.update(cols.geometry_types)
                geometry, xs, ys = cols.geometry, cols.xs, cols.ys
                yield SourceChunk(
                    path.name, first_row, dict(cols.columns), geometry, xs, ys, declared, cols.problems
                )
        finally:
            # Closed in turn, so the file and the read-ahead thread go when the import stops.
            grouped.close()
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    # The first chunk is read now so that SourceInfo can list the fields and the geometry type.
    stream = chunks()
    first = next(stream, None)
    info = SourceInfo(
        file=path.name,
        format=fmt,
        layer=None,
        layers=(),
        feature_count=None,
        declared_crs=declared,
        encoding="UTF-8",
        encoding_origin="format",
        fields=tuple(keys),
        geometry_type=next(iter(types)) if len(types) == 1 else ("Mixed" if types else None),
        notes=tuple(notes),
    )
    return info, ChunkStream(first, stream)
