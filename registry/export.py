"""Export assets as CSV, XLSX or GeoJSON: each asset's smart code beside the utility's own identifier.

A utility that imported its ledger gets it back with the 智慧码 each asset received, next to its own
编号 (``原编号``: the source id the import kept, without the import's scope prefix). The columns have
Chinese headers and are the same in every format (GeoJSON: the feature properties, geometry in WGS84).
The label printer reads the ``智慧码`` column (17 digits, no separators; ``印刷码`` is the grouped form).

Rows are read with a server-side cursor and written as they come, so memory stays flat however many
assets match. The caller's token decides the scope: a unit token exports its own unit's assets only.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, aliased

from common.errors import InvalidInput, NotFound
from registry.access import Action, Actor, authorize, require, require_role
from registry.assets import AssetFilter, filtered
from registry.models import Asset, ComponentClass, Unit

Format = Literal["csv", "xlsx", "geojson"]
FORMATS: tuple[Format, ...] = ("csv", "xlsx", "geojson")
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "geojson": "application/geo+json",
}

COLUMNS: tuple[str, ...] = (
    "智慧码",
    "印刷码",
    "原编号",
    "来源系统",
    "设施类型代码",
    "设施类型",
    "权属单位",
    "养护单位",
    "主管部门",
    "状态",
    "在用",
    "经度",
    "纬度",
    "地址",
    "网格编码",
    "安装日期",
    "导入批次",
    "更新时间",
)

# Source ids the importer derives when a row named none (position, or a rolled-back stand-in).
_DERIVED = ("geom:", "rolledback:")
_BATCH = 1000  # rows a server-side cursor fetch brings: memory is bounded by this, not the total


@dataclass(frozen=True)
class Export:
    """What to export: the asset filter after the caller's scope is applied, and the format."""

    filter: AssetFilter
    format: Format
    timezone: str


def check_format(value: str) -> Format:
    """``value`` as an export format, or ``InvalidInput`` listing the known ones."""
    lowered = value.strip().lower().lstrip(".")
    for known in FORMATS:
        if lowered == known or (known == "geojson" and lowered == "json"):
            return known
    raise InvalidInput(f"unknown export format {value!r}: use csv, xlsx or geojson", field="format")


def prepare(session: Session, actor: Actor, flt: AssetFilter, fmt: str, timezone: str) -> Export:
    """Check the caller and the filter before any byte is written; a unit token is held to its unit."""
    require_role(actor, Action.EXPORT)
    if not authorize(actor, Action.EXPORT):
        # A unit token: its own unit's assets (in any role), whichever unit it asked for.
        if flt.unit_id is not None:
            require(actor, Action.EXPORT, flt.unit_id, what=f"unit {flt.unit_id}")
        flt = replace(flt, unit_id=actor.unit_id)
    if flt.zone is not None:
        found = session.scalar(
            text(
                "SELECT count(*) FROM zones WHERE name = :n AND valid_from <= now() "
                "AND (valid_to IS NULL OR valid_to > now())"
            ),
            {"n": flt.zone},
        )
        if not found:
            raise NotFound(f"no zone named {flt.zone!r} is valid now", zone=flt.zone)
    if flt.bbox is not None:
        min_x, min_y, max_x, max_y = flt.bbox
        if min_x >= max_x or min_y >= max_y:
            raise InvalidInput("bbox must be min_lon,min_lat,max_lon,max_lat with min < max", field="bbox")
    return Export(filter=flt, format=check_format(fmt), timezone=timezone)


def rows(session: Session, export: Export) -> Iterator[tuple[Sequence[Any], str | None]]:
    """Each matching asset's cells (in ``COLUMNS`` order) and, for GeoJSON, its geometry as JSON text."""
    owner, maintainer, supervisor = aliased(Unit), aliased(Unit), aliased(Unit)
    surface = func.ST_PointOnSurface(Asset.geom)
    columns: list[Any] = [
        Asset.code,
        Asset.source_id,
        Asset.class_code,
        ComponentClass.name,
        owner.name,
        maintainer.name,
        supervisor.name,
        Asset.state,
        Asset.in_use,
        func.ST_X(surface),
        func.ST_Y(surface),
        Asset.address,
        Asset.grid_code,
        Asset.installed_on,
        Asset.batch_id,
        Asset.changed_at,
    ]
    if export.format == "geojson":
        columns.append(func.ST_AsGeoJSON(Asset.geom, 7))
    stmt = (
        select(*columns)
        .select_from(Asset)
        .join(ComponentClass, ComponentClass.code == Asset.class_code)
        .outerjoin(owner, owner.id == Asset.owner_id)
        .outerjoin(maintainer, maintainer.id == Asset.maintainer_id)
        .outerjoin(supervisor, supervisor.id == Asset.supervisor_id)
    )
    stmt = filtered(stmt, export.filter).order_by(Asset.code)
    zone = zoneinfo.ZoneInfo(export.timezone)
    result = session.execute(stmt.execution_options(yield_per=_BATCH))
    for row in result:
        code, source_id, class_code, class_name, own, maint, sup, state, in_use, lon, lat, *rest = row
        address, grid, installed, batch_id, changed = rest[:5]
        scope, given = split_source_id(source_id)
        cells = (
            code,
            f"{code[:6]}-{code[6:10]}-{code[10:16]}-{code[16:]}",
            given,
            scope,
            class_code,
            class_name,
            own,
            maint,
            sup,
            state,
            "是" if in_use else "否",
            round(lon, 7) if lon is not None else None,
            round(lat, 7) if lat is not None else None,
            address,
            grid,
            installed.isoformat() if installed else None,
            batch_id,
            _local(changed, zone),
        )
        yield cells, (rest[5] if len(rest) > 5 else None)


def split_source_id(source_id: str | None) -> tuple[str | None, str | None]:
    """(source system, the utility's own identifier) of a stored source id; derived ids give none."""
    if not source_id or source_id.startswith(_DERIVED):
        return None, None
    scope, sep, given = source_id.partition(":")
    return (scope, given) if sep else (None, source_id)


def _local(value: dt.datetime | None, zone: zoneinfo.ZoneInfo) -> str | None:
    return value.astimezone(zone).isoformat(sep=" ", timespec="seconds") if value else None


def csv_chunks(items: Iterator[tuple[Sequence[Any], str | None]]) -> Iterator[bytes]:
    """CSV in UTF-8 with a byte-order mark (so Excel reads the Chinese right), 500 rows a chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(COLUMNS)
    for n, (cells, _) in enumerate(items, start=1):
        writer.writerow(["" if c is None else c for c in cells])
        if n % 500 == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def geojson_chunks(items: Iterator[tuple[Sequence[Any], str | None]]) -> Iterator[bytes]:
    """A GeoJSON FeatureCollection (WGS84), one feature a line, a few hundred features a chunk."""
    parts: list[bytes] = [b'{"type":"FeatureCollection","features":[\n']
    for n, (cells, geometry) in enumerate(items):
        properties = orjson.dumps(dict(zip(COLUMNS, cells, strict=True)))
        geom = (geometry or "null").encode()
        parts.append(
            (b",\n" if n else b"")
            + b'{"type":"Feature","geometry":'
            + geom
            + b',"properties":'
            + properties
            + b"}"
        )
        if len(parts) >= 500:
            yield b"".join(parts)
            parts = []
    parts.append(b"\n]}\n")
    yield b"".join(parts)


def write_xlsx(items: Iterator[tuple[Sequence[Any], str | None]], target: IO[bytes] | Path) -> None:
    """An Excel workbook of one sheet, written row by row (openpyxl's write-only mode keeps memory flat)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("设施")
    sheet.append(list(COLUMNS))
    for cells, _ in items:
        sheet.append(list(cells))
    book.save(target)


def write(session: Session, export: Export, out: IO[bytes]) -> int:
    """Write the export to ``out``; the number of assets written."""
    count = 0

    def counted() -> Iterator[tuple[Sequence[Any], str | None]]:
        nonlocal count
        for item in rows(session, export):
            count += 1
            yield item

    if export.format == "xlsx":
        write_xlsx(counted(), out)
    else:
        chunks = csv_chunks if export.format == "csv" else geojson_chunks
        for chunk in chunks(counted()):
            out.write(chunk)
    return count


def stream(session: Session, export: Export) -> Iterator[bytes]:
    """The export as byte chunks (an XLSX is built in a temporary file first, then read out)."""
    if export.format != "xlsx":
        chunks = csv_chunks if export.format == "csv" else geojson_chunks
        yield from chunks(rows(session, export))
        return
    with tempfile.TemporaryFile() as spool:
        write_xlsx(rows(session, export), spool)
        spool.seek(0)
        while block := spool.read(1 << 16):
            yield block
