"""Zone files: every polygon of a shapefile, GeoJSON or GeoPackage imported as zones of one level.

Reading goes through the importers' own readers (encodings, zipped shapefiles, layers); saving goes through
``registry.zones.save_zone`` like any zone edit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy.orm import Session

from common.errors import InvalidInput
from gis.area import ServiceArea
from gis.crs import WGS84, Crs, parse_crs, transform_geometry
from gis.detect import guess_crs
from importers.formats import open_source
from registry.access import Action, Actor, require
from registry.messages import Bilingual, both, in_lang
from registry.zones import ZoneInput, check_level, prepare_polygon, save_zone


@dataclass
class ZoneImportReport:
    """What a zone file import did, feature by feature where it matters."""

    file: str
    level: str
    crs: str
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    repaired: list[dict[str, Any]] = field(default_factory=list)
    units_created: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "file": self.file,
            "level": self.level,
            "crs": self.crs,
            "created": self.created,
            "replaced": self.replaced,
            "unchanged": self.unchanged,
            "repaired": self.repaired,
            "units_created": self.units_created,
        }


def _source_crs(declared: str | None, given: str | None, file: str, file_format: str) -> Crs | None:
    """The CRS to read the file in; None when it must be guessed from the coordinates."""
    if given:
        return parse_crs(given)
    if declared is None:
        # RFC 7946: GeoJSON without a "crs" member is WGS84 lon/lat.
        return WGS84 if file_format in ("geojson", "geojsonseq") else None
    try:
        return parse_crs(declared)
    except InvalidInput as exc:
        raise InvalidInput(both("file.crs_unknown", file=file, declared=declared[:80]), file=file) from exc


def _cell(columns: dict[str, Any], column: str | None, index: int) -> str | None:
    """A text cell, None when the column is not asked for or the cell is blank."""
    if not column:
        return None
    raw = columns[column][index]
    text_value = "" if raw is None else str(raw).strip()
    return None if text_value in ("", "nan", "None") else text_value


def read_polygon_file(
    path: Path,
    *,
    name_field: str,
    unit_field: str | None,
    code_field: str | None,
    crs: str | None,
    layer: str | None,
    area: ServiceArea | None = None,
) -> tuple[str, list[tuple[int, str | None, str | None, str | None, BaseGeometry | None]]]:
    """The features of a polygon file as (row, name, unit, code, WGS84 geometry); the CRS name used."""
    info, chunks = open_source(path, layer=layer)
    for wanted, flag in (
        (name_field, "--name-field"),
        (unit_field, "--unit-field"),
        (code_field, "--code-field"),
    ):
        if wanted and wanted not in info.fields:
            raise InvalidInput(
                f"{path.name}: no field {wanted!r} ({flag}); fields are: {', '.join(info.fields)}",
                file=path.name,
            )
    source_crs = _source_crs(info.declared_crs, crs, path.name, info.format)
    features: list[tuple[int, str | None, str | None, str | None, BaseGeometry | None]] = []
    try:
        for chunk in chunks:
            shapes = chunk.shapes()
            for i, row in enumerate(chunk.rows()):
                features.append(
                    (
                        int(row),
                        _cell(chunk.columns, name_field, i),
                        _cell(chunk.columns, unit_field, i),
                        _cell(chunk.columns, code_field, i),
                        shapes[i],
                    )
                )
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if source_crs is None:
        # No declaration (e.g. a shapefile without .prj): guess from the vertices, verified against
        # the service area, and say so in the report.
        vertices = shapely.get_coordinates([f[4] for f in features if f[4] is not None])
        if len(vertices) == 0:
            raise InvalidInput(both("file.no_geometries", file=path.name), file=path.name)
        guess = guess_crs(vertices[:, 0], vertices[:, 1], area or ServiceArea.from_settings())
        if guess.swapped:
            raise InvalidInput(both("file.swapped", file=path.name, reason=guess.reason), file=path.name)
        source_crs = guess.crs
        crs_label: str = both("zimp.crs_guessed", crs=guess.crs.name, reason=guess.reason)
    else:
        crs_label = source_crs.name
    if source_crs != WGS84:
        features = [
            (row, name, unit, code, transform_geometry(geom, source_crs) if geom is not None else None)
            for row, name, unit, code, geom in features
        ]
    return crs_label, features


def import_zones(
    session: Session,
    actor: Actor,
    path: Path,
    *,
    level: str,
    name_field: str,
    unit_field: str | None = None,
    code_field: str | None = None,
    crs: str | None = None,
    layer: str | None = None,
    valid_from: dt.datetime | None = None,
    area: ServiceArea,
    county: str,
    reason: str | None = None,
) -> ZoneImportReport:
    """Import every polygon of a file as zones of ``level``, all or nothing.

    Invalid polygons are repaired (make_valid) and reported; a feature without name or area is
    refused with its row number, and then nothing is imported.
    """
    require(actor, Action.MANAGE_ZONES)
    level = check_level(level)
    crs_name, features = read_polygon_file(
        path,
        name_field=name_field,
        unit_field=unit_field,
        code_field=code_field,
        crs=crs,
        layer=layer,
        area=area,
    )
    report = ZoneImportReport(file=path.name, level=level, crs=crs_name)
    problems: list[str] = []
    seen: dict[str, int] = {}
    prepared: list[ZoneInput] = []
    for row, name, unit, code, geom in features:
        if not name:
            problems.append(both("zimp.empty", row=row, field=name_field))
            continue
        if name in seen:
            problems.append(both("zimp.repeat", row=row, name=name, first=seen[name]))
            continue
        seen[name] = row
        what = both("zimp.what", row=row, name=name)
        try:
            polygon, note = prepare_polygon(geom, what)
            area.check_geometry(polygon)
        except InvalidInput as exc:
            known = exc.message.startswith(what.zh)  # prepare_polygon names the row itself
            problems.append(exc.message if known else both("zimp.row", what=what, message=exc.message))
            continue
        if note:
            report.repaired.append({"row": row, "name": name, "note": note})
        prepared.append(
            ZoneInput(
                level=level,
                name=name,
                geometry=polygon,
                unit=unit,
                code=code,
                valid_from=valid_from,
                source=f"{path.name}#{row}",
                repair_note=note,
            )
        )
    if not features:
        problems.append(both("zimp.none"))
    if problems:
        more = both("err.rule.more", count=len(problems) - 20) if len(problems) > 20 else Bilingual("", "")
        shown = Bilingual(
            "；".join(in_lang(p, "zh") for p in problems[:20]) + more.zh,
            "; ".join(in_lang(p, "en") for p in problems[:20]) + more.en,
        )
        message = both("zimp.nothing", file=path.name, shown=shown)
        raise InvalidInput(message, file=path.name, problems=problems)
    for item in prepared:
        _, outcome = save_zone(
            session,
            actor,
            item,
            area=area,
            county=county,
            reason=reason or f"imported from {path.name}",
            units_created=report.units_created,
        )
        getattr(report, outcome).append(item.name)
    return report
