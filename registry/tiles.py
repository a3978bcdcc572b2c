# ruff: noqa: E501  (SQL reads better unwrapped)
"""Vector tiles of the registry: every SQL statement behind ``GET /tiles/{z}/{x}/{y}.mvt`` (docs/tiles.md).

A tile is Web Mercator (``ST_TileEnvelope``), extent 4096, buffer 64, with the layers

* ``assets``: one feature per asset in use (code, class, state, owner), when the tile holds at most
  ``feature_budget`` assets;
* ``asset_cells``: otherwise, one point per aggregate cell (a square of ``cell_px`` pixels) with the
  number of assets anchored in it, the number per class and the biggest owners;
* ``zones``: the zones valid now (level, name, code, responsible unit);
* ``complaints``: the complaints received in the last ``complaint_days`` days (from the start of
  that day, UTC) with a location, one feature each when the tile holds at most ``feature_budget`` of
  them, else ``complaint_cells`` (a count per cell and per category), as for assets;
* ``hotspots``: the live hot-spot warnings (高频 / 热点预警, registry/hotspots.py), one point each.

Nothing is dropped: every asset in use is in exactly one tile of each zoom (the tile of its anchor, the
point itself or a point on the line or polygon), either as a feature or in one cell's count.

Counts come from ``asset_tile_counts`` (cells of zoom 16, and the same summed to zooms 14 and 12, kept
by triggers, migration 0014), so a tile of zoom 16 or lower never scans the assets under it; after a
bulk write (an import) the import recounts them when it has committed, or else the first tile
(``refresh_counts``). The ETag of a tile comes from
the rows of ``tile_changes`` whose box meets it (with its buffer): an edit changes exactly the tiles it
touches.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from common.errors import NotFound
from common.settings import TileSettings

# The zoom of the count cells, and the coarser zooms the counts are also kept at (migration 0014).
COUNT_ZOOM = 16
COUNT_LEVELS = (12, 14, 16)
EXTENT = 4096
BUFFER = 64
# Pixels of the tile a cell size is given in (MapLibre draws vector tiles 512 pixels wide).
TILE_PX = 512
# Part of the ETag: a change of the tile's layout or of the settings that shape it changes every ETag.
FORMAT_VERSION = 2
# A zone narrower than this many pixels (of a 512-pixel tile) in both directions is left out of the tile:
# a speck, at a zoom where a thousand of its siblings would cost more than the rest of the tile.
ZONE_MIN_PX = 8
# Half the side of the Web Mercator square, in metres.
HALF_WORLD = 20037508.342789244

ASSET_FIELDS = {
    "code": "智慧码 (17 digits)",
    "class": "部件小类 code (4 digits)",
    "state": "完好 / 破损 / 丢失 / 占用",
    "owner": "权属单位 name (absent: no owner, 无主)",
}
CELL_FIELDS = {
    "count": "assets anchored in the cell",
    "classes": 'JSON object, assets per class code, e.g. {"0101": 12}',
    "owners": "number of distinct owners (无主 counts as one)",
    "top_owners": 'JSON array of [owner name, assets], biggest first, e.g. [["供电局", 9]]',
}
COMPLAINT_FIELDS = {
    "reference": "诉求编号, e.g. SC-20261206-000123",
    "category": "诉求类别 (absent if none)",
    "status": "received / accepted / returned / closed",
    "received_at": "when it arrived (ISO 8601, UTC)",
    "asset_code": "the scanned 智慧码 (absent if none)",
}
COMPLAINT_CELL_FIELDS = {
    "count": "complaints located in the cell",
    "categories": 'JSON object, complaints per category, e.g. {"井盖缺失": 4} (无类别: none given)',
}
HOTSPOT_FIELDS = {
    "id": "warning id (GET /api/v1/hotspots)",
    "kind": "asset (高频: one asset) / place (热点: one category within radius_m)",
    "kind_label": "高频 / 热点",
    "asset_code": "the asset (高频)",
    "category": "the category (热点)",
    "count": "complaints gathered",
    "state": "active / acknowledged",
    "radius_m": "the radius of a 热点, metres",
    "last_at": "the last complaint (ISO 8601, UTC)",
}
ZONE_FIELDS = {
    "id": "zone id",
    "level": "street / community / grid / contract / pilot",
    "name": "zone name",
    "code": "zone code (absent if none)",
    "unit": "responsible unit name (absent if none)",
}

# The tile's envelope in Web Mercator, with the buffer (as a fraction of the tile), in WGS84, and the
# bounding box of the latter in the metric SRID, where the GiST index of assets.geom_m lives.
_ENV = f"""
env AS (
  SELECT e3857, m4326, smartcode_metric_envelope(m4326) AS mm
  FROM (SELECT ST_TileEnvelope(:z, :x, :y) AS e3857,
               ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => {BUFFER / EXTENT}), 4326) AS m4326) e
)"""

# The complaints the map shows begin at the start of a UTC day: the layer (and the ETag) moves by the
# clock once a day, not with every second.
_SINCE = "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(days => :days)"

# What the ETag depends on, and the number of assets anchored in the tile when it is a union of count
# cells (zoom <= 16; deeper, the count of the enclosing cell, an upper bound). The zones' term moves
# when a version begins or ends by the clock, without any write; the hot spots' when a warning's window
# passes (it leaves the layer). Complaints are counted live: their tile is that of their point.
STATE_SQL = f"""
WITH {_ENV}, since AS (SELECT {_SINCE} AS t)
SELECT (SELECT count(*) FROM tile_changes c, env WHERE c.box && env.m4326) AS changes,
       (SELECT coalesce(max(c.id), 0) FROM tile_changes c, env WHERE c.box && env.m4326) AS last_change,
       (SELECT count(*) FILTER (WHERE z.valid_from <= now()) + count(*) FILTER (WHERE z.valid_to <= now())
          FROM zones z, env WHERE z.geom && env.m4326) AS zone_clock,
       (SELECT coalesce(sum(n), 0) FROM asset_tile_counts
         WHERE z = :level AND cx >= :cx0 AND cx < :cx1 AND cy >= :cy0 AND cy < :cy1) AS anchored,
       (SELECT count(*) FROM complaints c, env, since
         WHERE c.geom && env.m4326 AND c.received_at >= since.t
           AND smartcode_tile_x(ST_X(c.geom), :z) = :x AND smartcode_tile_y(ST_Y(c.geom), :z) = :y)
         AS complaints,
       (SELECT count(*) FILTER (WHERE h.last_at + make_interval(days => h.window_days) <= now())
          FROM hotspot_warnings h, env WHERE h.centre && env.m4326) AS hotspot_clock,
       (SELECT t FROM since) AS since
"""


# Assets in use whose geometry may meet the tile (with its buffer), from the GiST on geom_m: the metric
# box is a little larger than the tile, and ST_AsMVTGeom drops what lies beyond the buffer (NULL).
_CANDIDATES = """
SELECT a.* FROM assets a, env WHERE a.geom_m && env.mm AND a.in_use
"""

# The assets anchored in the tile, counted live (deep zooms only: cells of zoom 16 are coarser).
LIVE_COUNT_SQL = f"""
WITH {_ENV}
SELECT count(*) FROM ({_CANDIDATES}) a
WHERE smartcode_tile_x(ST_X(smartcode_tile_anchor(a.geom)), :z) = :x
  AND smartcode_tile_y(ST_Y(smartcode_tile_anchor(a.geom)), :z) = :y
"""

# OFFSET 0 keeps the planner from pushing "geom IS NOT NULL" into the subquery, where it evaluated
# ST_AsMVTGeom a second time for every row (a third of a zoom-15 tile).
_ASSETS_LAYER = f"""
SELECT ST_AsMVT(t, 'assets', {EXTENT}, 'geom') FROM (
  SELECT ST_AsMVTGeom(ST_Transform(a.geom, 3857), env.e3857, {EXTENT}, {BUFFER}, true) AS geom,
         a.code, a.class_code AS class, a.state, u.name AS owner
  FROM ({_CANDIDATES}) a CROSS JOIN env LEFT JOIN units u ON u.id = a.owner_id
  OFFSET 0
) t WHERE t.geom IS NOT NULL
"""

_ZONES_LAYER = f"""
SELECT ST_AsMVT(t, 'zones', {EXTENT}, 'geom') FROM (
  SELECT ST_AsMVTGeom(ST_Transform(z.geom, 3857), env.e3857, {EXTENT}, {BUFFER}, true) AS geom,
         z.id, z.level, z.name, z.code, u.name AS unit
  FROM zones z CROSS JOIN env LEFT JOIN units u ON u.id = z.unit_id
  WHERE z.geom && env.m4326 AND z.valid_from <= now() AND (z.valid_to IS NULL OR z.valid_to > now())
    AND greatest(ST_XMax(z.geom) - ST_XMin(z.geom), ST_YMax(z.geom) - ST_YMin(z.geom)) >= :zone_min_deg
  OFFSET 0
) t WHERE t.geom IS NOT NULL
"""

# Aggregate cells from the count table: cells of zoom :c = z + log2(512 / cell_px) <= 16, each the union
# of 2^(level - c) x 2^(level - c) count cells of the coarsest level kept at zoom c or deeper.
_CELL_COUNTS_STORED = """
SELECT cx >> (:level - :c) AS gx, cy >> (:level - :c) AS gy, class_code, owner_id, sum(n) AS n
FROM asset_tile_counts
WHERE z = :level AND cx >= :cx0 AND cx < :cx1 AND cy >= :cy0 AND cy < :cy1 AND n <> 0
GROUP BY 1, 2, 3, 4
"""

# ... or counted live, when the cells are finer than the count table's (a crowded tile of zoom >= 14).
_CELL_COUNTS_LIVE = f"""
SELECT smartcode_tile_x(ST_X(p), :c) AS gx, smartcode_tile_y(ST_Y(p), :c) AS gy, class_code, owner_id,
       count(*) AS n
FROM (SELECT smartcode_tile_anchor(a.geom) AS p, a.class_code, coalesce(a.owner_id, 0) AS owner_id
      FROM ({_CANDIDATES}) a) s
WHERE smartcode_tile_x(ST_X(p), :z) = :x AND smartcode_tile_y(ST_Y(p), :z) = :y
GROUP BY 1, 2, 3, 4
"""


# One point per cell, at its centre: the count, the count per class, the biggest owners. Both sums are
# materialised, so that each is computed once and then joined by hash.
_CELLS = """
cls AS MATERIALIZED (
  SELECT gx, gy, sum(n)::int AS count, jsonb_object_agg(class_code, n)::text AS classes
  FROM (SELECT gx, gy, class_code, sum(n)::int AS n FROM g GROUP BY 1, 2, 3) k GROUP BY 1, 2
), own AS MATERIALIZED (
  SELECT gx, gy, count(*)::int AS owners,
         (jsonb_agg(jsonb_build_array(coalesce(u.name, '无主'), n) ORDER BY rank)
            FILTER (WHERE rank <= :top))::text AS top_owners
  FROM (SELECT gx, gy, owner_id, sum(n)::int AS n,
               row_number() OVER (PARTITION BY gx, gy ORDER BY sum(n) DESC, owner_id) AS rank
        FROM g GROUP BY 1, 2, 3) w
  LEFT JOIN units u ON u.id = nullif(w.owner_id, 0)
  GROUP BY 1, 2
)"""

_CELLS_LAYER = f"""
SELECT ST_AsMVT(t, 'asset_cells', {EXTENT}, 'geom') FROM (
  SELECT ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(-{HALF_WORLD} + (cls.gx + 0.5) * :cell_m,
                                              {HALF_WORLD} - (cls.gy + 0.5) * :cell_m), 3857),
                      env.e3857, {EXTENT}, {BUFFER}, true) AS geom,
         cls.count, cls.classes, own.owners, own.top_owners
  FROM cls JOIN own USING (gx, gy) CROSS JOIN env
) t
"""


# Complaints of the window whose point may show in the tile (with its buffer), from the GiST on geom.
_COMPLAINT_CANDIDATES = """
SELECT c.* FROM complaints c, env WHERE c.geom && env.m4326 AND c.received_at >= :since
"""

_COMPLAINTS_LAYER = f"""
SELECT ST_AsMVT(t, 'complaints', {EXTENT}, 'geom') FROM (
  SELECT ST_AsMVTGeom(ST_Transform(c.geom, 3857), env.e3857, {EXTENT}, {BUFFER}, true) AS geom,
         c.reference, c.category, c.status,
         to_char(c.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS received_at, c.asset_code
  FROM ({_COMPLAINT_CANDIDATES}) c CROSS JOIN env
  OFFSET 0
) t WHERE t.geom IS NOT NULL
"""

# Over the budget: the complaints whose point is in the tile, counted per cell of zoom :c and category.
_COMPLAINT_CELLS_LAYER = f"""
SELECT ST_AsMVT(t, 'complaint_cells', {EXTENT}, 'geom') FROM (
  SELECT ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(-{HALF_WORLD} + (k.gx + 0.5) * :cell_m,
                                              {HALF_WORLD} - (k.gy + 0.5) * :cell_m), 3857),
                      env.e3857, {EXTENT}, {BUFFER}, true) AS geom,
         k.count, k.categories
  FROM (SELECT gx, gy, sum(n)::int AS count, jsonb_object_agg(category, n)::text AS categories
        FROM (SELECT smartcode_tile_x(ST_X(c.geom), :c) AS gx, smartcode_tile_y(ST_Y(c.geom), :c) AS gy,
                     coalesce(c.category, '无类别') AS category, count(*)::int AS n
              FROM ({_COMPLAINT_CANDIDATES}) c
              WHERE smartcode_tile_x(ST_X(c.geom), :z) = :x AND smartcode_tile_y(ST_Y(c.geom), :z) = :y
              GROUP BY 1, 2, 3) g
        GROUP BY 1, 2) k
  CROSS JOIN env
) t
"""

# Live warnings (not expired, last complaint within their window); few, so always one feature each.
_HOTSPOTS_LAYER = f"""
SELECT ST_AsMVT(t, 'hotspots', {EXTENT}, 'geom') FROM (
  SELECT ST_AsMVTGeom(ST_Transform(h.centre, 3857), env.e3857, {EXTENT}, {BUFFER}, true) AS geom,
         h.id, h.kind, CASE h.kind WHEN 'asset' THEN '高频' ELSE '热点' END AS kind_label, h.asset_code,
         h.category, h.count, h.state, h.radius_m,
         to_char(h.last_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_at
  FROM hotspot_warnings h CROSS JOIN env
  WHERE h.centre && env.m4326 AND h.state <> 'expired'
    AND h.last_at + make_interval(days => h.window_days) > now()
  OFFSET 0
) t WHERE t.geom IS NOT NULL
"""

COMPLAINTS_SQL = f"WITH {_ENV} SELECT ({_COMPLAINTS_LAYER}) || ({_HOTSPOTS_LAYER})"
COMPLAINT_CELLS_SQL = f"WITH {_ENV} SELECT ({_COMPLAINT_CELLS_LAYER}) || ({_HOTSPOTS_LAYER})"

FEATURES_SQL = f"WITH {_ENV} SELECT ({_ASSETS_LAYER}) || ({_ZONES_LAYER})"
CELLS_STORED_SQL = (
    f"WITH {_ENV}, g AS ({_CELL_COUNTS_STORED}), {_CELLS} SELECT ({_CELLS_LAYER}) || ({_ZONES_LAYER})"
)
CELLS_LIVE_SQL = (
    f"WITH {_ENV}, g AS ({_CELL_COUNTS_LIVE}), {_CELLS} SELECT ({_CELLS_LAYER}) || ({_ZONES_LAYER})"
)


@dataclass(frozen=True)
class TileState:
    """What a tile's content depends on, read before building it: its ETag and how many assets it holds."""

    etag: str
    anchored: int
    exact: bool  # False when ``anchored`` is the enclosing count cell's (an upper bound, zoom > 16)
    complaints: int = 0  # complaints of the window located in the tile
    since: dt.datetime | None = None  # the complaints layer shows those received since then


def check_tile(z: int, x: int, y: int, settings: TileSettings) -> None:
    """``NotFound`` unless z/x/y names a tile of the served zooms."""
    if not (0 <= z <= settings.max_zoom and 0 <= x < (1 << z) and 0 <= y < (1 << z)):
        raise NotFound(
            f"瓦片 {z}/{x}/{y} 不存在 / no such tile: zoom 0-{settings.max_zoom}, x and y 0 to 2^zoom - 1",
            tile=f"{z}/{x}/{y}",
        )


def _count_range(z: int, x: int, y: int, finest: int) -> dict[str, int]:
    """The count cells covering the tile, of the coarsest level at zoom ``finest`` or deeper; deeper than
    zoom 16, the zoom-16 cell enclosing the tile."""
    level = next((level for level in COUNT_LEVELS if level >= finest), COUNT_ZOOM)
    if z <= level:
        shift = level - z
        cells = {"cx0": x << shift, "cx1": (x + 1) << shift, "cy0": y << shift, "cy1": (y + 1) << shift}
    else:
        shift = z - level
        cells = {"cx0": x >> shift, "cx1": (x >> shift) + 1, "cy0": y >> shift, "cy1": (y >> shift) + 1}
    return {"level": level, **cells}


def tile_state(session: Session, z: int, x: int, y: int, settings: TileSettings) -> TileState:
    """The tile's ETag (from the changes meeting it and the settings) and its asset count, in one query."""
    check_tile(z, x, y, settings)
    params = {"z": z, "x": x, "y": y, "days": settings.complaint_days, **_count_range(z, x, y, z)}
    row = session.execute(text(STATE_SQL), params).one()
    shape = f"{FORMAT_VERSION}:{settings.feature_budget}:{settings.cell_px}:{settings.top_owners}"
    clocks = f"{row.zone_clock}:{row.hotspot_clock}:{row.since.isoformat()}"
    digest = hashlib.blake2b(
        f"{shape}:{z}/{x}/{y}:{row.changes}:{row.last_change}:{clocks}".encode(), digest_size=12
    ).hexdigest()
    return TileState(
        etag=f'"{digest}"',
        anchored=int(row.anchored),
        exact=z <= COUNT_ZOOM,
        complaints=int(row.complaints),
        since=row.since,
    )


def counts_stale(session: Session) -> bool:
    """Whether a bulk write left the tile counts to be recounted (a replica cannot: the primary must)."""
    return bool(session.execute(text("SELECT EXISTS (SELECT FROM asset_tile_counts_stale)")).scalar_one())


def refresh_counts(session: Session) -> bool:
    """Count every asset again if a bulk write (an import) left the counts stale; True if it did.

    An import calls it when it has committed (``importers.pipeline``), and a tile first of all, in case
    the import's call failed or a write bypassed the importer. It must come before the transaction
    reads ``asset_tile_counts``: the recount truncates the table, which waits for every transaction
    that read it. Concurrent callers queue on an advisory lock and find the counts fresh. 1-2 s for
    1,200,000 assets, once after an import; tiles wait meanwhile.
    """
    if counts_stale(session):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('smartcode.asset_tile_counts'))"))
        done = session.execute(text("SELECT smartcode_tile_counts_recount() FROM asset_tile_counts_stale"))
        return len(done.all()) > 0
    return False


# Folding old rows of tile_changes (``compact_changes``): the rows older than :after seconds, grouped by
# the zoom-14 region of their box's centre (as the triggers group an edit's rows), and each region with
# more than one such row replaced by one row: the extent of their boxes, at the latest of their times.
# The extent covers every box it replaces, so every tile that met a removed row meets the new one,
# whose id is larger than any drawn before: that tile's ETag moves to a value it never had (its largest
# id is new), never back to an older one, whatever the count. A region with a single old row is left
# alone, so a quiet registry's ETags stay put from one run to the next.
CHANGE_ZOOM = 14
COMPACT_SQL = f"""
WITH old AS (
  SELECT id, box, at,
         smartcode_tile_x(ST_X(ST_Centroid(box)), {CHANGE_ZOOM}) AS rx,
         smartcode_tile_y(ST_Y(ST_Centroid(box)), {CHANGE_ZOOM}) AS ry
  FROM tile_changes WHERE at < now() - make_interval(secs => :after)
), folded_regions AS (
  SELECT rx, ry FROM old GROUP BY rx, ry HAVING count(*) > 1
), gone AS (
  DELETE FROM tile_changes c USING old o JOIN folded_regions f USING (rx, ry)
  WHERE c.id = o.id
  RETURNING o.rx, o.ry, o.box, o.at
), written AS (
  INSERT INTO tile_changes (box, at)
  SELECT ST_SetSRID(ST_Extent(box)::geometry, 4326), max(at) FROM gone GROUP BY rx, ry
  RETURNING id
)
SELECT (SELECT count(*) FROM gone) AS removed, (SELECT count(*) FROM written) AS written
"""


def compact_changes(session: Session, older_than_s: int) -> tuple[int, int]:
    """Fold the ``tile_changes`` rows older than ``older_than_s`` into one per region; (removed, written).

    Keeps the table at about one row per region ever edited plus the recent rows, and invalidation
    exact: a tile whose rows were folded gets an ETag it never had (so a copy cached at any earlier
    time is fetched again, once); a tile meeting no folded row keeps its ETag. Single-flight across
    servers: a run finding another one under way does nothing.
    """
    if not session.execute(
        text("SELECT pg_try_advisory_xact_lock(hashtext('smartcode.tile_changes'))")
    ).scalar_one():
        return 0, 0
    row = session.execute(text(COMPACT_SQL), {"after": older_than_s}).one()
    return int(row.removed), int(row.written)


def cell_zoom(z: int, settings: TileSettings) -> int:
    """The zoom whose tiles are the aggregate cells of a tile of zoom ``z``.

    Cells are ``cell_px`` wide, but never finer than the count cells (zoom 16) while the tile itself is
    not: a crowded tile of zoom 14 gets 4 x 4 cells of 128 px from the count table rather than 8 x 8
    counted live (21,000 assets: 7 ms against 100 ms on the benchmark's registry).
    """
    finest = z + (TILE_PX // settings.cell_px).bit_length() - 1
    return finest if z > COUNT_ZOOM else min(finest, COUNT_ZOOM)


def render_tile(session: Session, z: int, x: int, y: int, state: TileState, settings: TileSettings) -> bytes:
    """The tile's MVT bytes: individual assets within the budget, aggregate cells beyond it; zones always;
    then the complaints (or their cells, by the same budget) and the hot spots."""
    # A degree of latitude spans more pixels than a degree of longitude: measured in the latter, the
    # threshold keeps every zone that is wide enough in either direction.
    zone_min_deg = ZONE_MIN_PX * 360.0 / ((1 << z) * TILE_PX)
    params: dict[str, Any] = {"z": z, "x": x, "y": y, "zone_min_deg": zone_min_deg}
    anchored = state.anchored
    if not state.exact and anchored > settings.feature_budget:
        anchored = int(session.execute(text(LIVE_COUNT_SQL), params).scalar_one())
    if anchored <= settings.feature_budget:
        sql = FEATURES_SQL
    else:
        c = cell_zoom(z, settings)
        params |= {"c": c, "cell_m": 2 * HALF_WORLD / (1 << c), "top": settings.top_owners}
        if c <= COUNT_ZOOM:
            sql = CELLS_STORED_SQL
            params |= _count_range(z, x, y, c)
        else:
            sql = CELLS_LIVE_SQL
    data = session.execute(text(sql), params).scalar_one()
    return (bytes(data) if data is not None else b"") + _complaint_layers(session, z, x, y, state, settings)


def _complaint_layers(
    session: Session, z: int, x: int, y: int, state: TileState, settings: TileSettings
) -> bytes:
    """The complaints (features within the budget, cells beyond) and hot-spot layers (MVT layers concatenate)."""
    params: dict[str, Any] = {"z": z, "x": x, "y": y, "since": state.since}
    if state.complaints <= settings.feature_budget:
        sql = COMPLAINTS_SQL
    else:
        # Counted live (no count table for complaints), so cells of cell_px at any zoom.
        c = z + (TILE_PX // settings.cell_px).bit_length() - 1
        params |= {"c": c, "cell_m": 2 * HALF_WORLD / (1 << c)}
        sql = COMPLAINT_CELLS_SQL
    data = session.execute(text(sql), params).scalar_one()
    return bytes(data) if data is not None else b""


def tilejson(
    tiles_url: str,
    settings: TileSettings,
    bounds: tuple[float, float, float, float],
    center: tuple[float, float],
) -> dict[str, Any]:
    """TileJSON 3.0.0 of the layers and their fields; ``tiles_url`` has {z}/{x}/{y}; the service area's box."""
    return {
        "tilejson": "3.0.0",
        "name": "smartcode",
        "description": "智慧码部件、区域、诉求与预警 / registry assets, zones, complaints and hot spots. "
        "A tile of more than "
        f"{settings.feature_budget} assets (or complaints) carries asset_cells (complaint_cells) instead.",
        "version": f"{FORMAT_VERSION}.0.0",
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": 0,
        "maxzoom": settings.max_zoom,
        "bounds": list(bounds),
        "center": [center[0], center[1], 12],
        "vector_layers": [
            {
                "id": "assets",
                "description": "部件 / assets in use, one feature each (tiles within the budget)",
                "fields": ASSET_FIELDS,
                "minzoom": 0,
                "maxzoom": settings.max_zoom,
            },
            {
                "id": "asset_cells",
                "description": f"部件聚合 / aggregate cells of {settings.cell_px} px (tiles over the "
                "budget): every asset of the tile is counted in exactly one cell",
                "fields": CELL_FIELDS,
                "minzoom": 0,
                "maxzoom": settings.max_zoom,
            },
            {
                "id": "complaints",
                "description": f"诉求 / complaints of the last {settings.complaint_days} days with a location, "
                "one feature each (tiles within the budget)",
                "fields": COMPLAINT_FIELDS,
                "minzoom": 0,
                "maxzoom": settings.max_zoom,
            },
            {
                "id": "complaint_cells",
                "description": f"诉求聚合 / complaint counts per cell of {settings.cell_px} px (tiles over the "
                "budget): every complaint of the tile is counted in exactly one cell",
                "fields": COMPLAINT_CELL_FIELDS,
                "minzoom": 0,
                "maxzoom": settings.max_zoom,
            },
            {
                "id": "hotspots",
                "description": "高频 / 热点预警 / live hot-spot warnings (not expired), one point each",
                "fields": HOTSPOT_FIELDS,
                "minzoom": 0,
                "maxzoom": settings.max_zoom,
            },
            {
                "id": "zones",
                "description": f"区域 / zones valid now; a zone under {ZONE_MIN_PX} px both ways at the "
                "tile's zoom is left out of that tile",
                "fields": ZONE_FIELDS,
                "minzoom": 0,
                "maxzoom": settings.max_zoom,
            },
        ],
    }
