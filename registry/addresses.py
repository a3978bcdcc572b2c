"""The standard address register (标准地址库): address ids with their text and point, per county.

GeoReport v2's ``address_id`` names an address of the jurisdiction's master address register; a
Chinese city's is the standard address register that 数字城管 and the 12345 case system share.
:func:`load_addresses` loads it (all rows or none; migration 0025's table), :func:`find_address`
looks one up for an Open311 post, which is then placed and resolved at the address's point.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import text
from sqlalchemy.orm import Session

from common.bilingual import Bilingual
from common.errors import InvalidInput
from common.settings import Settings
from gis.area import ServiceArea
from gis.crs import WGS84, parse_crs, to_wgs84
from registry import audit
from registry.access import Action, Actor, require

ID_MAX = 200
NAME_MAX = 500
# Points are kept to 7 decimals (about 1 cm): a re-import of the same file then finds them unchanged.
_DECIMALS = 7
# The field names of a row when the file's own headers are not given.
FIELDS = {"address_id": "id", "name": "address", "x": "lon", "y": "lat"}


@dataclass(frozen=True)
class AddressRow:
    """One row of an address file as read: its row number in the file and its cells as text."""

    row: int
    address_id: str
    name: str
    x: str
    y: str


@dataclass(frozen=True)
class Address:
    """A registered address: its id, its text and its point (WGS84)."""

    address_id: str
    name: str
    lon: float
    lat: float


def _problem(file: str, row: int, field: str, zh: str, en: str) -> InvalidInput:
    return InvalidInput(
        Bilingual(
            f"{file} 第 {row} 行，{field}：{zh}；地址库未作任何修改",
            f"{file} row {row}, {field}: {en}; the address register was not changed",
        ),
        file=file,
        row=row,
        field=field,
    )


def _number(file: str, row: int, field: str, value: str) -> float:
    if not value.strip():
        raise _problem(file, row, field, "缺少坐标", "the coordinate is missing")
    try:
        number = float(value.strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise _problem(file, row, field, f"坐标须为数字，读到 {value!r}", f"not a number: {value!r}")
    return number


def check_rows(
    rows: Sequence[AddressRow],
    *,
    file: str,
    crs: str | None,
    area: ServiceArea,
    fields: Mapping[str, str] = FIELDS,
) -> dict[str, Address]:
    """Every row checked and placed in WGS84, by address id; ``InvalidInput`` naming the first bad row.

    A row needs an id, a text and two numbers in ``crs`` that land in the service area; an id may
    appear once per file.
    """
    source = parse_crs(crs)
    seen: dict[str, int] = {}
    out: dict[str, Address] = {}
    for r in rows:
        address_id, name = r.address_id.strip(), " ".join(r.name.split())
        if not address_id:
            raise _problem(file, r.row, fields["address_id"], "缺少地址编码", "the address id is missing")
        if len(address_id) > ID_MAX:
            raise _problem(
                file,
                r.row,
                fields["address_id"],
                f"地址编码超过 {ID_MAX} 字",
                f"longer than {ID_MAX} characters",
            )
        if address_id in seen:
            raise _problem(
                file,
                r.row,
                fields["address_id"],
                f"地址编码 {address_id} 与第 {seen[address_id]} 行重复",
                f"address id {address_id} repeats row {seen[address_id]}",
            )
        if not name:
            raise _problem(file, r.row, fields["name"], "缺少标准地址", "the address text is missing")
        if len(name) > NAME_MAX:
            raise _problem(
                file, r.row, fields["name"], f"地址超过 {NAME_MAX} 字", f"longer than {NAME_MAX} characters"
            )
        x = _number(file, r.row, fields["x"], r.x)
        y = _number(file, r.row, fields["y"], r.y)
        lon, lat = (x, y) if source == WGS84 else to_wgs84(x, y, source)
        where = f"{fields['x']}/{fields['y']}"
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise _problem(file, r.row, where, f"无法从 {source} 换算", f"cannot be converted from {source}")
        try:
            area.check_point(lon, lat)
        except InvalidInput as exc:
            reason = exc.message
            zh, en = (reason.zh, reason.en) if isinstance(reason, Bilingual) else (reason, reason)
            raise _problem(file, r.row, where, zh, en) from exc
        seen[address_id] = r.row
        out[address_id] = Address(address_id, name, round(lon, _DECIMALS), round(lat, _DECIMALS))
    return out


def load_addresses(
    session: Session,
    actor: Actor,
    rows: Sequence[AddressRow],
    *,
    file: str,
    settings: Settings,
    crs: str | None = None,
    replace: bool = False,
    fields: Mapping[str, str] = FIELDS,
) -> dict[str, Any]:
    """Load an address file into the county's register in the caller's transaction; the summary.

    All or nothing: a bad row raises before anything is written. Every row is counted as added,
    updated (its text or point changed) or unchanged; with ``replace`` the county's addresses the
    file does not list are removed. Administrators only; audited as one entry.
    """
    require(actor, Action.MANAGE_ADDRESSES)
    county = settings.area.county_code
    checked = check_rows(rows, file=file, crs=crs, area=ServiceArea.from_settings(settings), fields=fields)
    # One load per county at a time: two concurrent loads would count against a register in flux.
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('smartcode.addresses:' || :c))"), {"c": county}
    )
    existing = {
        address_id: (name, lon, lat)
        for address_id, name, lon, lat in session.execute(
            text(
                "SELECT address_id, name, round(ST_X(geom)::numeric, 7)::float8, "
                "round(ST_Y(geom)::numeric, 7)::float8 FROM addresses WHERE county_code = :c"
            ),
            {"c": county},
        )
    }
    batch = uuid.uuid4().hex
    added: list[dict[str, Any]] = []
    updated: list[dict[str, Any]] = []
    for a in checked.values():
        values = {"c": county, "id": a.address_id, "name": a.name, "lon": a.lon, "lat": a.lat}
        before = existing.get(a.address_id)
        if before is None:
            added.append(values)
        elif before != (a.name, a.lon, a.lat):
            updated.append(values)
    stamp = {"by": actor.name, "batch": batch}
    if added:
        session.execute(
            text(
                "INSERT INTO addresses (county_code, address_id, name, geom, loaded_by, batch) "
                "VALUES (:c, :id, :name, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :by, :batch)"
            ),
            [{**v, **stamp} for v in added],
        )
    if updated:
        session.execute(
            text(
                "UPDATE addresses SET name = :name, geom = ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), "
                "loaded_at = now(), loaded_by = :by, batch = :batch "
                "WHERE county_code = :c AND address_id = :id"
            ),
            [{**v, **stamp} for v in updated],
        )
    gone = [address_id for address_id in existing if address_id not in checked] if replace else []
    if gone:
        session.execute(
            text("DELETE FROM addresses WHERE county_code = :c AND address_id = ANY(:ids)"),
            {"c": county, "ids": gone},
        )
    summary = {
        "file": file,
        "county_code": county,
        "batch": batch,
        "rows": len(rows),
        "added": len(added),
        "updated": len(updated),
        "unchanged": len(checked) - len(added) - len(updated),
        "removed": len(gone),
        "replace": replace,
        "crs": str(parse_crs(crs)),
    }
    audit.record(session, actor, "import", "addresses", batch, details=summary)
    return summary


async def find_address(conn: AsyncConnection[Any], county_code: str, address_id: str) -> Address | None:
    """The county's address with this id (as the jurisdiction writes it), or None."""
    cur = await conn.execute(
        "SELECT address_id, name, ST_X(geom), ST_Y(geom) FROM addresses "
        "WHERE county_code = %s AND address_id = %s",
        (county_code, address_id.strip()),
        prepare=True,
    )
    row = await cur.fetchone()
    return Address(row[0], row[1], float(row[2]), float(row[3])) if row else None
