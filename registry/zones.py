"""Zones: street, community, grid, maintenance-contract and pilot areas, versioned like MapIt generations.

A zone is identified by (county, level, name); each boundary version has a validity period
[valid_from, valid_to). A new version closes the open one, so "which zones contained this point at
time t" always has one answer per zone. Rules (``registry.rules``) name zones by level and name and
therefore follow them across generations.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import orjson
import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.errors import InvalidInput, NotFound
from gis.area import ServiceArea
from registry import audit, validity
from registry import units as unit_service
from registry.access import Action, Actor, require
from registry.messages import both

ZONE_LEVELS = ("street", "community", "grid", "contract", "pilot")
LEVEL_NAMES = {
    "street": "街道",
    "community": "社区",
    "grid": "单元网格",
    "contract": "养护合同片区",
    "pilot": "试点区域",
}
_NEG_INFINITY = "-infinity"
# A zone smaller than this is a digitising accident (a collapsed or flat ring), not an area.
_MIN_AREA_M2 = 1.0
_M_PER_DEG = 111_320.0

_ZONE_COLUMNS = (
    "z.id, z.county_code, z.level, z.name, z.code, z.unit_id, "
    "nullif(z.valid_from, '-infinity') AS valid_from, z.valid_to, z.source, "
    "z.repair_note, z.attributes, z.created_at, z.actor, z.reason, u.name AS unit_name"
)


@dataclass
class ZoneInput:
    """One zone version to save: geometry in WGS84, unit named or given by id."""

    level: str
    name: str
    geometry: BaseGeometry
    unit: str | None = None
    unit_id: int | None = None
    code: str | None = None
    valid_from: dt.datetime | None = None
    source: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    repair_note: str | None = None  # set when the caller already repaired the polygon


def check_level(level: str) -> str:
    """The level, lower-cased, or ``InvalidInput`` listing the accepted ones."""
    value = (level or "").strip().lower()
    if value not in ZONE_LEVELS:
        raise InvalidInput(both("err.zone.level", level=level, levels=", ".join(ZONE_LEVELS)), field="level")
    return value


def prepare_polygon(geom: BaseGeometry | None, what: str) -> tuple[shapely.MultiPolygon, str | None]:
    """A valid 2D MultiPolygon from ``geom`` and a note on any repair, or ``InvalidInput`` with the reason."""
    if geom is None or geom.is_empty:
        raise InvalidInput(both("err.zone.no_geometry", what=what))
    if shapely.get_coordinate_dimension(geom) > 2:
        geom = shapely.force_2d(geom)
    if not isinstance(geom, shapely.Polygon | shapely.MultiPolygon):
        raise InvalidInput(both("err.zone.type", what=what, kind=geom.geom_type))
    note = None
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        repaired = shapely.make_valid(geom)
        # make_valid may return lines or points beside the polygons (e.g. a collapsed spike): only
        # the areal parts bound a zone.
        parts = [
            g for g in shapely.get_parts(repaired) if isinstance(g, shapely.Polygon | shapely.MultiPolygon)
        ]
        polygons = [p for g in parts for p in shapely.get_parts(g)]
        if not polygons:
            raise InvalidInput(both("err.zone.no_area_left", what=what, why=reason))
        fixed = shapely.MultiPolygon(polygons)
        if not fixed.is_valid:
            fixed = shapely.make_valid(fixed)
        lost = 1.0 - fixed.area / geom.buffer(0).area if geom.buffer(0).area else 0.0
        note = f"repaired with make_valid: {reason}" + (
            f" ({lost:.1%} of the area dropped)" if lost > 0.001 else ""
        )
        geom = fixed
    if isinstance(geom, shapely.Polygon):
        geom = shapely.MultiPolygon([geom])
    # Degrees squared to square metres near the zone (good to a few percent: only a sanity bound).
    lat = geom.centroid.y if not geom.is_empty else 0.0
    area_m2 = geom.area * _M_PER_DEG**2 * math.cos(math.radians(lat))
    if not isinstance(geom, shapely.MultiPolygon) or area_m2 < _MIN_AREA_M2:
        raise InvalidInput(both("err.zone.no_area", what=what, area=area_m2))
    return geom, note


def zone_view(row: Any, *, geometry: BaseGeometry | None = None) -> dict[str, Any]:
    """The JSON form of a zone version (geometry as GeoJSON when given)."""
    view = {
        "id": row.id,
        "level": row.level,
        "name": row.name,
        "code": row.code,
        "unit": {"id": row.unit_id, "name": row.unit_name} if row.unit_id else None,
        "valid_from": validity.bound(row.valid_from),
        "valid_to": validity.bound(row.valid_to),
        "source": row.source,
        "repair_note": row.repair_note,
        "attributes": row.attributes,
        "created_at": row.created_at.isoformat(),
        "actor": row.actor,
        "reason": row.reason,
    }
    if geometry is not None:
        view["geometry"] = mapping(geometry)
    return view


def _now(session: Session) -> dt.datetime:
    now = session.execute(text("SELECT now()")).scalar()
    assert isinstance(now, dt.datetime)
    return now


def _unit_id(session: Session, actor: Actor, data: ZoneInput, county: str, created: list[str]) -> int | None:
    if data.unit_id is not None:
        unit_service.get_unit(session, data.unit_id)
        return data.unit_id
    if data.unit and data.unit.strip():
        unit, new = unit_service.ensure_unit(session, data.unit, actor, county)
        if new:
            created.append(unit.name)
        return unit.id
    return None


def save_zone(
    session: Session,
    actor: Actor,
    data: ZoneInput,
    *,
    area: ServiceArea,
    county: str,
    reason: str | None = None,
    units_created: list[str] | None = None,
) -> tuple[dict[str, Any], str]:
    """Save a zone version; returns its view and 'created', 'replaced' (new generation) or 'unchanged'."""
    require(actor, Action.MANAGE_ZONES)
    level = check_level(data.level)
    name = " ".join((data.name or "").split())
    if not name:
        raise InvalidInput(both("err.zone.name"), field="name")
    geom, note = prepare_polygon(data.geometry, both("err.zone.what", name=name))
    note = note or data.repair_note
    area.check_geometry(geom)
    created = units_created if units_created is not None else []
    unit_id = _unit_id(session, actor, data, county, created)
    current = session.execute(
        text(
            "SELECT id, unit_id, code, nullif(valid_from, '-infinity') AS valid_from, "
            "ST_Equals(geom, ST_GeomFromWKB(:wkb, 4326)) AS same_geom "
            "FROM zones WHERE county_code = :c AND level = :l AND name = :n AND valid_to IS NULL FOR UPDATE"
        ),
        {"c": county, "l": level, "n": name, "wkb": shapely.to_wkb(geom)},
    ).first()
    if current is not None and current.same_geom and current.unit_id == unit_id and current.code == data.code:
        return get_zone(session, current.id), "unchanged"
    valid_from: dt.datetime | str
    if data.valid_from is not None:
        if data.valid_from.tzinfo is None:
            raise InvalidInput(
                "valid_from needs a time zone, e.g. 2025-01-01T00:00:00+08:00", field="valid_from"
            )
        valid_from = data.valid_from
    else:
        # The first boundary of a zone holds "since ever", so complaints older than the registry still
        # find their street; a later generation starts now.
        valid_from = _now(session) if current is not None else _NEG_INFINITY
    if current is not None:
        if (
            isinstance(valid_from, dt.datetime)
            and current.valid_from is not None
            and valid_from <= current.valid_from
        ):
            raise InvalidInput(
                both("err.zone.start", level=level, name=name, start=current.valid_from.isoformat()),
                field="valid_from",
            )
        session.execute(
            text("UPDATE zones SET valid_to = :t WHERE id = :id"), {"t": valid_from, "id": current.id}
        )
    try:
        zone_id = session.execute(
            text(
                "INSERT INTO zones (county_code, level, name, code, unit_id, valid_from, source, "
                "repair_note, "
                "attributes, actor, reason, geom) VALUES (:c, :l, :n, :code, :u, :vf, :src, :note, "
                "CAST(:attrs AS jsonb), :actor, :reason, ST_GeomFromWKB(:wkb, 4326)) RETURNING id"
            ),
            {
                "c": county,
                "l": level,
                "n": name,
                "code": data.code,
                "u": unit_id,
                "vf": valid_from,
                "src": data.source,
                "note": note,
                "attrs": orjson.dumps(data.attributes, default=str).decode(),
                "actor": actor.name,
                "reason": reason,
                "wkb": shapely.to_wkb(geom),
            },
        ).scalar_one()
    except IntegrityError as exc:
        raise InvalidInput(both("err.zone.save", level=level, name=name, why=exc.orig)) from exc
    outcome = "replaced" if current is not None else "created"
    audit.record(
        session,
        actor,
        "create" if outcome == "created" else "new_generation",
        "zone",
        zone_id,
        reason=reason,
        details={
            "level": level,
            "name": name,
            "unit_id": unit_id,
            "previous_id": current.id if current else None,
            "repair_note": note,
            "source": data.source,
        },
    )
    return get_zone(session, zone_id), outcome


def get_zone(session: Session, zone_id: int, *, with_geometry: bool = False) -> dict[str, Any]:
    """One zone version by id, or ``NotFound``."""
    row = session.execute(
        text(
            f"SELECT {_ZONE_COLUMNS}, ST_AsBinary(z.geom) AS wkb FROM zones z "
            "LEFT JOIN units u ON u.id = z.unit_id WHERE z.id = :id"
        ),
        {"id": zone_id},
    ).first()
    if row is None:
        raise NotFound(both("err.zone.none", id=zone_id), zone_id=zone_id)
    return zone_view(row, geometry=shapely.from_wkb(bytes(row.wkb)) if with_geometry else None)


def list_zones(
    session: Session,
    *,
    level: str | None = None,
    name: str | None = None,
    versions: validity.Versions = validity.Versions(),
) -> tuple[list[dict[str, Any]], int]:
    """The zone ``versions`` asked for (default: those valid now, first page), filtered by level and name."""
    where: dict[str, tuple[str, Any]] = {}
    if level:
        where["level"] = ("z.level = :level", check_level(level))
    if name:
        where["name"] = ("z.name = :name", name.strip())
    rows, total = validity.list_versions(
        session,
        columns=_ZONE_COLUMNS,
        source="zones z LEFT JOIN units u ON u.id = z.unit_id",
        alias="z",
        where=where,
        order="z.level, z.name, z.valid_from",
        versions=versions,
    )
    return [zone_view(row) for row in rows], total


def close_zone(
    session: Session, actor: Actor, zone_id: int, *, at: dt.datetime | None = None, reason: str | None = None
) -> dict[str, Any]:
    """End a zone version's validity at ``at`` (default now): the area no longer applies."""
    require(actor, Action.MANAGE_ZONES)
    current = get_zone(session, zone_id)
    validity.close_version(session, actor, kind="zone", table="zones", current=current, at=at, reason=reason)
    return get_zone(session, zone_id)


def zone_exists(session: Session, level: str, name: str, county: str) -> bool:
    """True when some version of the zone (level, name) was ever recorded."""
    return (
        session.execute(
            text("SELECT 1 FROM zones WHERE county_code = :c AND level = :l AND name = :n LIMIT 1"),
            {"c": county, "l": level, "n": name},
        ).first()
        is not None
    )


def zone_levels_named(session: Session, name: str, county: str) -> list[str]:
    """The levels at which a zone of this name exists (to complete a rule that names only the zone)."""
    rows = session.execute(
        text("SELECT DISTINCT level FROM zones WHERE county_code = :c AND name = :n ORDER BY level"),
        {"c": county, "n": name},
    ).scalars()
    return list(rows)
