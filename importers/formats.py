"""One entry point for every supported inventory file: pick the reader from the file name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from common.errors import InvalidInput
from importers.source import SourceChunk, SourceInfo
from importers.tabular import open_csv, open_xlsx
from importers.vector import open_geojson, open_geojsonseq, open_geopackage, open_shapefile

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
_ADVICE: dict[str, str] = {
    ".xls": "old binary Excel (.xls) is not supported: save it as .xlsx",
    ".dbf": "a .dbf alone has no geometry: send the whole shapefile (.shp, .shx, .dbf, .prj, .cpg)",
    ".shx": "open the .shp file of this shapefile instead",
    ".prj": "open the .shp file of this shapefile instead",
    ".kml": "KML is not supported: export GeoJSON or a shapefile",
    ".kmz": "KMZ is not supported: export GeoJSON or a shapefile",
    ".dwg": "CAD drawings are not supported: export the layer as a shapefile",
    ".dxf": "CAD drawings are not supported: export the layer as a shapefile",
    ".mdb": "personal geodatabases are not supported: export each layer as a shapefile or GeoPackage",
    ".gdb": "file geodatabases are not supported: export each layer as a GeoPackage",
    ".rar": "RAR archives are not supported: send a .zip",
    ".7z": "7z archives are not supported: send a .zip",
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
        raise InvalidInput(f"chunk_size must be at least 1, got {chunk_size}")
    suffix = path.suffix.lower()
    if suffix in _ADVICE:
        raise InvalidInput(f"{path.name}: {_ADVICE[suffix]}", file=path.name)
    if suffix not in SUPPORTED_EXTENSIONS:
        kinds = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise InvalidInput(
            f"{path.name}: unsupported file type {suffix or '(no extension)'!r}; supported: {kinds}",
            file=path.name,
        )
    if not path.is_file():
        raise InvalidInput(f"{path.name}: file not found", file=path.name)
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
