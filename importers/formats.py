"""One entry point for every supported inventory file: pick the reader from the file name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from common.errors import InvalidInput
from importers.source import SourceChunk, SourceInfo
from importers.tabular import open_csv, open_xlsx
from importers.vector import open_geojson, open_geojsonseq, open_geopackage, open_shapefile
from registry.messages import both

DEFAULT_CHUNK_SIZE = 50_000

SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".shp": "Shapefile",
    ".zip": "zipped Shapefile",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".geojsonl": "GeoJSON text sequence",
    ".geojsons": "GeoJSON text sequence",
    ".geojsonseq": "GeoJSON text sequence",
    ".ndjson": "GeoJSON text sequence",
    ".jsonl": "GeoJSON text sequence",
    ".gpkg": "GeoPackage",
    ".csv": "CSV",
    ".txt": "CSV",
    ".xlsx": "Excel workbook",
    ".xlsm": "Excel workbook",
}

# Formats people send that cannot be read as they are, with what to do instead.
# The values are message keys (registry.messages).
_ADVICE: dict[str, str] = {
    ".xls": "file.advice.xls",
    ".dbf": "file.advice.dbf",
    ".shx": "file.advice.part",
    ".prj": "file.advice.part",
    ".kml": "file.advice.kml",
    ".kmz": "file.advice.kmz",
    ".dwg": "file.advice.cad",
    ".dxf": "file.advice.cad",
    ".mdb": "file.advice.mdb",
    ".gdb": "file.advice.gdb",
    ".rar": "file.advice.rar",
    ".7z": "file.advice.7z",
}


def open_source(
    path: str | Path,
    *,
    layer: str | None = None,
    encoding: str | None = None,
    x_field: str | Sequence[str] | None = None,
    y_field: str | Sequence[str] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[SourceInfo, Iterator[SourceChunk]]:
    """Open an inventory file: its SourceInfo now, and a lazy stream of SourceChunks.

    ``layer`` picks a GeoPackage layer, a shapefile inside a .zip (by stem) or an Excel sheet;
    ``encoding`` overrides detection for Shapefile DBFs and CSV; ``x_field``/``y_field`` name the
    coordinate columns of CSV/Excel (a name or candidate names). Raises InvalidInput naming the file
    and the reason when it cannot be read. Close the iterator if you stop early (it holds the file).
    """
    path = Path(path)
    if chunk_size < 1:
        raise InvalidInput(both("file.chunk_size", size=chunk_size))
    suffix = path.suffix.lower()
    if suffix in _ADVICE:
        raise InvalidInput(both("file.advice", file=path.name, advice=both(_ADVICE[suffix])), file=path.name)
    if suffix not in SUPPORTED_EXTENSIONS:
        kinds = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        shown = suffix or both("file.no_extension")
        raise InvalidInput(
            both("file.unsupported", file=path.name, suffix=shown, kinds=kinds), file=path.name
        )
    if not path.is_file():
        raise InvalidInput(both("file.not_found", file=path.name), file=path.name)
    if suffix in (".shp", ".zip"):
        return open_shapefile(path, layer=layer, encoding=encoding, chunk_size=chunk_size)
    if suffix == ".gpkg":
        return open_geopackage(path, layer=layer, chunk_size=chunk_size)
    if suffix in (".geojson", ".json"):
        return open_geojson(path, chunk_size=chunk_size)
    if suffix in (".csv", ".txt"):
        return open_csv(path, encoding=encoding, x_field=x_field, y_field=y_field, chunk_size=chunk_size)
    if suffix in (".xlsx", ".xlsm"):
        return open_xlsx(path, sheet=layer, x_field=x_field, y_field=y_field, chunk_size=chunk_size)
    return open_geojsonseq(path, chunk_size=chunk_size)
