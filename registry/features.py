"""OGC API - Features over the registry: the collections, their extents and pages of items as GeoJSON.

Two collections: ``assets`` (one feature per asset, id = its smart code) and ``zones`` (one feature
per boundary version, id = the version's number). Features are rendered to GeoJSON text by PostGIS,
so a page of 10,000 items never passes through Python objects. Pages are ordered by the primary key,
so ``offset`` walks a stable order.

Time (``datetime``): an asset's temporal extent is its service life as the registry knows it now,
from the start of its first responsibility period (its installation, a recorded hand-over date, or
"since ever" when unknown) until it was decommissioned. An asset whose life meets the instant or
interval is shown as of that instant (or the interval's end, or now if that lies ahead): the owner,
maintainer and supervisor of the responsibility period covering it (``asset_responsibility`` and the
asset row, as ``registry.assets.as_of`` reads them) and the description and geometry of the version
the registry held then (``asset_history`` and the asset row; the first recorded version when the
asset was registered later). A zone version's temporal extent is its ``[valid_from, valid_to)``.
Without ``datetime`` the answer is the registry as it is now: every asset (decommissioned ones with
``in_use`` false) and the zone versions in force.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from common.errors import InvalidInput, NotFound
from registry.codes import parse_code

COLLECTIONS = ("assets", "zones")
DEFAULT_LIMIT = 10
MAX_LIMIT = 10_000

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
_EPSG = "http://www.opengis.net/def/crs/EPSG/0/{}"


@dataclass(frozen=True)
class Crs:
    """A coordinate reference system the service reads and writes."""

    uri: str
    srid: int
    # EPSG:4490 is latitude first and EPSG:4547 northing first; OGC API Part 2 answers in the
    # authority's axis order, while PostGIS keeps x = longitude/easting.
    flipped: bool
    decimals: int  # degrees to about 1 cm; metres to the millimetre


CRS_LIST = (
    Crs(CRS84, 4326, False, 7),
    Crs(_EPSG.format(4490), 4490, True, 7),
    Crs(_EPSG.format(4547), 4547, True, 3),
)
STORAGE_CRS = CRS_LIST[0]  # assets.geom and zones.geom are WGS84 lon/lat (docs/design.md)
_BY_KEY = {
    **{c.uri: c for c in CRS_LIST},
    **{c.uri.replace("http://", "https://"): c for c in CRS_LIST},
    "crs84": CRS_LIST[0],
    "ogc:crs84": CRS_LIST[0],
    **{f"epsg:{c.srid}": c for c in CRS_LIST[1:]},
    **{f"urn:ogc:def:crs:epsg::{c.srid}": c for c in CRS_LIST[1:]},
    "urn:ogc:def:crs:ogc:1.3:crs84": CRS_LIST[0],
}


def parse_crs(value: str | None, field: str) -> Crs:
    """The CRS a ``crs`` or ``bbox-crs`` parameter names (CRS84 when absent), or ``InvalidInput``."""
    if value is None or value.strip() == "":
        return STORAGE_CRS
    key = value.strip()
    if key.startswith("[") and key.endswith("]"):  # a safe CURIE such as [EPSG:4547]
        key = key[1:-1]
    found = _BY_KEY.get(key) or _BY_KEY.get(key.lower())
    if found is None:
        supported = ", ".join(c.uri for c in CRS_LIST)
        raise InvalidInput(
            f"{field}: 不支持的坐标系 unsupported CRS {value!r}; use one of {supported}", field=field
        )
    return found


@dataclass(frozen=True)
class TimeWindow:
    """A closed time interval; None at either end means open."""

    start: dt.datetime | None
    end: dt.datetime | None


def _parse_instant(part: str, timezone: str, *, end: bool) -> dt.datetime:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", part):
        # A date is the whole local day: its first instant as a start, its last as an end.
        try:
            day = dt.date.fromisoformat(part)
        except ValueError as exc:
            raise InvalidInput(f"datetime: {part!r} is not a calendar date", field="datetime") from exc
        if end:
            return dt.datetime.combine(day, dt.time.max, zoneinfo.ZoneInfo(timezone))
        return dt.datetime.combine(day, dt.time(), zoneinfo.ZoneInfo(timezone))
    try:
        value = dt.datetime.fromisoformat(part)
    except ValueError as exc:
        raise InvalidInput(
            f"datetime: {part!r} 不是 RFC 3339 时间: give a date-time such as 2025-03-02T08:00:00Z",
            field="datetime",
        ) from exc
    if value.tzinfo is None:
        raise InvalidInput(
            f"datetime: {part!r} needs a time zone, e.g. 2025-03-02T08:00:00Z or +08:00", field="datetime"
        )
    return value


def parse_datetime(value: str | None, timezone: str) -> TimeWindow | None:
    """An OGC ``datetime`` value (instant, date, or interval with ``..`` for an open end), or None."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if "/" not in value:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return TimeWindow(
                _parse_instant(value, timezone, end=False), _parse_instant(value, timezone, end=True)
            )
        instant = _parse_instant(value, timezone, end=False)
        return TimeWindow(instant, instant)
    first, _, second = value.partition("/")
    if "/" in second:
        raise InvalidInput(f"datetime: {value!r} has more than one '/'", field="datetime")
    start = None if first in ("", "..") else _parse_instant(first, timezone, end=False)
    end = None if second in ("", "..") else _parse_instant(second, timezone, end=True)
    if start is None and end is None:
        raise InvalidInput(
            "datetime: an interval needs at least one end (../.. names no time)", field="datetime"
        )
    if start is not None and end is not None and start > end:
        raise InvalidInput(f"datetime: the interval {value!r} ends before it starts", field="datetime")
    return TimeWindow(start, end)


def parse_bbox(value: str | None, crs: Crs) -> tuple[float, float, float, float] | None:
    """A ``bbox`` in ``crs``'s own axis order, as (min x, min y, max x, max y) in PostGIS order."""
    if value is None or value.strip() == "":
        return None
    try:
        numbers = [float(part) for part in value.split(",")]
    except ValueError as exc:
        raise InvalidInput(f"bbox: {value!r} is not a comma-separated list of numbers", field="bbox") from exc
    if len(numbers) == 6:  # a 3-D box: heights are not stored, so they select nothing
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        raise InvalidInput(f"bbox: {value!r} must be four finite numbers (or six with heights)", field="bbox")
    a1, b1, a2, b2 = numbers
    x1, y1, x2, y2 = (b1, a1, b2, a2) if crs.flipped else (a1, b1, a2, b2)
    order = "lat,lon" if crs.srid == 4490 else "northing,easting" if crs.flipped else "lon,lat"
    if x1 >= x2 or y1 >= y2:
        raise InvalidInput(
            f"bbox: {value!r} 范围无效: give the lower corner first, in {order} order for {crs.uri}",
            field="bbox",
        )
    if crs.srid != 4547 and (x1 < -180 or x2 > 180 or y1 < -90 or y2 > 90):
        raise InvalidInput(
            f"bbox: {value!r} lies outside the globe; the order for {crs.uri} is {order}", field="bbox"
        )
    if crs.srid == 4547:
        # PROJ cannot take a Gauss-Krüger box far beyond the zone (a billion metres fails the
        # transformation): the part outside the zone's area of use (112.5-115.5E, where every asset
        # of the deployment lies) holds nothing, so the box is cut to it.
        min_e, min_n, max_e, max_n = _GK_114E_BOUNDS
        x1, x2 = min(max(x1, min_e), max_e), min(max(x2, min_e), max_e)
        y1, y2 = min(max(y1, min_n), max_n), min(max(y2, min_n), max_n)
    return x1, y1, x2, y2


# EPSG:4547's area of use (China onshore 112.5-115.5E) in its own metres, with a margin.
_GK_114E_BOUNDS = (300_000.0, 2_300_000.0, 700_000.0, 5_100_000.0)


@dataclass(frozen=True)
class ItemQuery:
    """What a client asked of a collection's items."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    bbox: tuple[float, float, float, float] | None = None  # PostGIS axis order, in bbox_crs
    bbox_crs: Crs = STORAGE_CRS
    crs: Crs = STORAGE_CRS
    window: TimeWindow | None = None
    class_codes: tuple[str, ...] = ()  # assets only
    unit_id: int | None = None  # assets: in any role at the time asked; zones: the zone's unit
    level: str | None = None  # zones only


@dataclass
class Page:
    """One page of features (GeoJSON text each) and how many match in all."""

    features: list[str] = field(default_factory=list)
    number_matched: int = 0


def check_collection(collection: str) -> str:
    """The collection id, or ``NotFound`` naming the ones there are."""
    if collection not in COLLECTIONS:
        raise NotFound(
            f"no collection {collection!r}; there are {', '.join(COLLECTIONS)}", collection=collection
        )
    return collection


def _geometry_json(column: str, crs: Crs) -> str:
    geom = column if crs.srid == STORAGE_CRS.srid else f"ST_Transform({column}, {crs.srid})"
    if crs.flipped:
        geom = f"ST_FlipCoordinates({geom})"
    # Options 0: no legacy "crs" member in the geometry; the CRS travels in Content-Crs (Part 2).
    return f"ST_AsGeoJSON({geom}, {crs.decimals}, 0)::json"


def _envelope(query: ItemQuery, params: dict[str, Any]) -> str | None:
    """SQL for the bbox as a WGS84 polygon, with its numbers put in ``params``."""
    if query.bbox is None:
        return None
    params.update(zip(("bx1", "by1", "bx2", "by2"), query.bbox, strict=True))
    box = f"ST_MakeEnvelope(:bx1, :by1, :bx2, :by2, {query.bbox_crs.srid})"
    if query.bbox_crs.srid == STORAGE_CRS.srid:
        return box
    # Straight edges of a projected box bend a little in lon/lat: densify before transforming.
    return f"ST_Transform(ST_Segmentize({box}, {10.0 if query.bbox_crs.srid == 4547 else 0.0001}), 4326)"


_UNIT_JOINS = """
LEFT JOIN units o ON o.id = v.owner_id
LEFT JOIN units m ON m.id = v.maintainer_id
LEFT JOIN units s ON s.id = v.supervisor_id
JOIN component_classes c ON c.code = v.class_code"""


def _asset_feature(crs: Crs) -> str:
    return f"""json_build_object(
  'type', 'Feature', 'id', v.code, 'geometry', {_geometry_json("v.geom", crs)},
  'properties', json_build_object(
    'code', v.code, 'class_code', v.class_code, 'class_name', c.name, 'state', v.state,
    'in_use', v.in_use, 'decommissioned_at', v.decommissioned_at,
    'owner_id', v.owner_id, 'owner', o.name, 'owner_phone', o.phone,
    'maintainer_id', v.maintainer_id, 'maintainer', m.name, 'maintainer_phone', m.phone,
    'supervisor_id', v.supervisor_id, 'supervisor', s.name,
    'address', v.address, 'grid_code', v.grid_code, 'installed_on', v.installed_on,
    'version', v.version, 'recorded_at', v.recorded_at))::text"""


_CURRENT_COLUMNS = (
    "a.id, a.code, a.class_code, a.state, a.in_use, a.decommissioned_at, a.owner_id, a.maintainer_id, "
    "a.supervisor_id, a.address, a.grid_code, a.installed_on, a.version, a.changed_at AS recorded_at, a.geom"
)

# The asset as of :at. Parties: the current units if their period had begun, else the closed period
# covering :at (periods never overlap). Description and geometry: the newest version recorded by :at,
# else the first one recorded. Same reading as registry.assets.as_of, set-based.
_AS_OF_SELECT = """
SELECT a.id, a.code, a.class_code, d.state, d.in_use, d.decommissioned_at, r.owner_id, r.maintainer_id,
       r.supervisor_id, d.address, d.grid_code, d.installed_on, d.version, d.recorded_at, d.geom
FROM assets a
LEFT JOIN LATERAL (
    SELECT a.owner_id, a.maintainer_id, a.supervisor_id
    WHERE smartcode_period_start(a.responsible_since, a.installed_on) <= :at
    UNION ALL
    SELECT p.owner_id, p.maintainer_id, p.supervisor_id FROM asset_responsibility p
    WHERE p.asset_id = a.id AND p.valid_from <= :at AND p.valid_to > :at
    LIMIT 1
) r ON true
CROSS JOIN LATERAL (
    SELECT * FROM (
        SELECT a.version, a.changed_at AS recorded_at, a.state, a.in_use, a.decommissioned_at, a.address,
               a.grid_code, a.installed_on, a.geom
        UNION ALL
        SELECT h.version, h.recorded_at, h.data->>'state', (h.data->>'in_use')::boolean,
               (h.data->>'decommissioned_at')::timestamptz, h.data->>'address', h.data->>'grid_code',
               (h.data->>'installed_on')::date, h.geom
        FROM asset_history h WHERE h.asset_id = a.id
    ) x
    ORDER BY x.recorded_at <= :at DESC, CASE WHEN x.recorded_at <= :at THEN -x.version ELSE x.version END
    LIMIT 1
) d
"""

# The asset was in service at some time in the window: its first period began by the window's end
# and it was not decommissioned before the window's start.
_IN_SERVICE = """
(smartcode_period_start(a.responsible_since, a.installed_on) <= CAST(:w_end_or_inf AS timestamptz)
   OR EXISTS (SELECT FROM asset_responsibility p
              WHERE p.asset_id = a.id AND p.valid_from <= CAST(:w_end_or_inf AS timestamptz)))
AND (a.decommissioned_at IS NULL OR a.decommissioned_at > CAST(:w_start_or_inf AS timestamptz))
"""


def _asset_source(query: ItemQuery, params: dict[str, Any]) -> tuple[str, str]:
    """SQL selecting the matching assets (columns as ``_CURRENT_COLUMNS``, unordered), and counting them."""
    envelope = _envelope(query, params)
    if query.class_codes:
        params["classes"] = list(query.class_codes)
    if query.unit_id is not None:
        params["unit"] = query.unit_id
    roles = (
        "smartcode_asset_units({t}.owner_id, {t}.maintainer_id, {t}.supervisor_id) @> ARRAY[:unit]::bigint[]"
    )
    if query.window is None:
        where = ["true"]
        if query.class_codes:
            where.append("a.class_code = ANY(:classes)")
        if query.unit_id is not None:
            # In any role: the roles' GIN index (migration 0007).
            where.append(roles.format(t="a"))
        if envelope is not None:
            # Candidates from the every-class GiST on the metric twin (migration 0005), then the exact test.
            near = f"a.geom_m && smartcode_metric_envelope(ST_Envelope({envelope}))"
            where.append(f"{near} AND ST_Intersects(a.geom, {envelope})")
        sql = f"SELECT {_CURRENT_COLUMNS} FROM assets a WHERE {' AND '.join(where)}"
        return sql, f"SELECT count(*) FROM ({sql}) n"

    params["w_start"], params["w_end"] = query.window.start, query.window.end
    # Open ends compare as -infinity / infinity (PostgreSQL timestamps; Python's datetime has none).
    params["w_start_or_inf"] = query.window.start or "-infinity"
    params["w_end_or_inf"] = query.window.end or "infinity"
    # Narrow the assets before the per-asset reading of the history: the class never changes, and an
    # asset can match the unit or the bbox at some time only if one of its periods or versions does.
    narrow = [_IN_SERVICE]
    if query.class_codes:
        narrow.append("a.class_code = ANY(:classes)")
    if query.unit_id is not None:
        narrow.append(
            f"a.id IN (SELECT c.id FROM assets c WHERE {roles.format(t='c')} UNION ALL SELECT p.asset_id"
            " FROM asset_responsibility p WHERE :unit IN (p.owner_id, p.maintainer_id, p.supervisor_id))"
        )
    if envelope is not None:
        near = f"c.geom_m && smartcode_metric_envelope(ST_Envelope({envelope}))"
        narrow.append(
            f"a.id IN (SELECT c.id FROM assets c WHERE {near} AND ST_Intersects(c.geom, {envelope})"
            f" UNION ALL SELECT h.asset_id FROM asset_history h WHERE h.geom && {envelope}"
            f" AND ST_Intersects(h.geom, {envelope}))"
        )
    condition = " AND ".join(f"({part.strip()})" for part in narrow)
    # Then the exact test, on the units and the version of the time asked.
    where = ["true"]
    if query.unit_id is not None:
        where.append(":unit IN (q.owner_id, q.maintainer_id, q.supervisor_id)")
    if envelope is not None:
        where.append(f"q.geom && {envelope} AND ST_Intersects(q.geom, {envelope})")
    sql = f"SELECT * FROM ({_AS_OF_SELECT} WHERE {condition}) q WHERE {' AND '.join(where)}"
    if query.unit_id is None and envelope is None:
        # Nothing depends on the time's units or version: count without reading the history.
        return sql, f"SELECT count(*) FROM assets a WHERE {condition}"
    return sql, f"SELECT count(*) FROM ({sql}) n"


_ZONE_COLUMNS = "z.id, z.level, z.name, z.code, z.unit_id, z.valid_from, z.valid_to, z.source, z.geom"


def _zone_feature(crs: Crs) -> str:
    return f"""json_build_object(
  'type', 'Feature', 'id', v.id, 'geometry', {_geometry_json("v.geom", crs)},
  'properties', json_build_object(
    'zone_id', v.id, 'level', v.level, 'name', v.name, 'code', v.code, 'unit_id', v.unit_id,
    'unit', u.name, 'valid_from', nullif(v.valid_from, '-infinity'), 'valid_to', v.valid_to,
    'source', v.source))::text"""


def _zone_source(query: ItemQuery, params: dict[str, Any]) -> str:
    envelope = _envelope(query, params)
    if query.window is None:
        where = ["z.valid_from <= now() AND (z.valid_to IS NULL OR z.valid_to > now())"]
    else:
        params["w_start"], params["w_end"] = query.window.start, query.window.end
        # Versions are [valid_from, valid_to); the window is closed at both ends.
        where = [
            "z.valid_from <= coalesce(CAST(:w_end AS timestamptz), 'infinity')",
            "(z.valid_to IS NULL OR z.valid_to > coalesce(CAST(:w_start AS timestamptz), '-infinity'))",
        ]
    if query.unit_id is not None:
        where.append("z.unit_id = :unit")
        params["unit"] = query.unit_id
    if query.level is not None:
        where.append("z.level = :level")
        params["level"] = query.level
    if envelope is not None:
        where.append(f"z.geom && {envelope} AND ST_Intersects(z.geom, {envelope})")
    return f"SELECT {_ZONE_COLUMNS} FROM zones z WHERE {' AND '.join(where)}"


def items(session: Session, collection: str, query: ItemQuery) -> Page:
    """One page of a collection's features matching ``query``, ordered by id, with the total count."""
    check_collection(collection)
    params: dict[str, Any] = {"limit": query.limit, "offset": query.offset}
    if collection == "assets":
        source, counting = _asset_source(query, params)
        feature, joins = _asset_feature(query.crs), _UNIT_JOINS
    else:
        source = _zone_source(query, params)
        counting = f"SELECT count(*) FROM ({source}) n"
        feature, joins = _zone_feature(query.crs), "LEFT JOIN units u ON u.id = v.unit_id"
    if query.window is not None:
        params["at"] = _display_time(session, query.window)
    total = session.execute(text(counting), params).scalar_one()
    rows = session.execute(
        text(
            f"SELECT {feature} FROM (SELECT * FROM ({source}) p ORDER BY p.id LIMIT :limit OFFSET :offset) v"
            f" {joins} ORDER BY v.id"
        ),
        params,
    ).scalars()
    return Page(list(rows), int(total))


def _display_time(session: Session, window: TimeWindow) -> dt.datetime:
    """The instant a window's features are shown as of: its end, or now if that lies ahead."""
    now = session.execute(text("SELECT now()")).scalar_one()
    return now if window.end is None or window.end > now else window.end


def item(session: Session, collection: str, feature_id: str, crs: Crs) -> str:
    """One feature as GeoJSON text: an asset by its smart code (as it is now), a zone version by its id."""
    check_collection(collection)
    key: str | int
    if collection == "assets":
        try:
            code = str(parse_code(feature_id))
        except InvalidInput as exc:
            raise NotFound(f"no asset {feature_id!r} in collection assets: {exc.message}") from exc
        source = f"SELECT {_CURRENT_COLUMNS} FROM assets a WHERE a.code = :key"
        feature, joins, key = _asset_feature(crs), _UNIT_JOINS, code
    else:
        if not feature_id.isdigit() or int(feature_id) >= 2**63:
            raise NotFound(f"no zone {feature_id!r} in collection zones (zone ids are numbers)")
        source = f"SELECT {_ZONE_COLUMNS} FROM zones z WHERE z.id = :key"
        feature, joins, key = _zone_feature(crs), "LEFT JOIN units u ON u.id = v.unit_id", int(feature_id)
    found = session.execute(text(f"SELECT {feature} FROM ({source}) v {joins}"), {"key": key}).scalar()
    if found is None:
        raise NotFound(f"no feature {feature_id!r} in collection {collection}", collection=collection)
    return str(found)


@dataclass(frozen=True)
class Extent:
    """A collection's spatial extent in CRS84 (None when it holds nothing)."""

    bbox: tuple[float, float, float, float] | None


def extent(session: Session, collection: str) -> Extent:
    """The CRS84 bounding box of what the collection holds now."""
    check_collection(collection)
    table = "assets" if collection == "assets" else "zones"
    row = session.execute(
        text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)"
            f" FROM (SELECT ST_Extent(geom) e FROM {table}) s"
        )
    ).one()
    if row[0] is None:
        return Extent(None)
    return Extent((float(row[0]), float(row[1]), float(row[2]), float(row[3])))
