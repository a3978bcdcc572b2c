"""Map tiles: per-cell asset counts for the aggregated zooms, and a log of the regions that changed.

Revision ID: 0014_map_tiles
Revises: 0009_import_jobs
Create Date: 2026-12-06

Two tables kept by triggers, read by ``registry/tiles.py`` (docs/tiles.md):

* ``asset_tile_counts``: how many assets in use are anchored in each Web Mercator tile of zoom 16
  (about 600 m across here), per class and owner (0: no owner), and the same summed to tiles of zoom
  14 and 12 (column ``z``). An asset's anchor is the point itself, or a point on a line or polygon
  (``ST_PointOnSurface``). A tile at zoom 16 or lower is a
  union of such cells, so its count, and its aggregate cells' counts per class and owner, are sums
  over a few thousand rows at most instead of a scan of every asset under it.
* ``tile_changes``: one row per statement and region of zoom 14 (about 2.4 km) that it touched, with
  the box of the geometries before and after (separately, so a move invalidates where the asset was
  and where it is, not the stretch between). A tile's ETag is taken from the rows whose box meets
  it: their number and their largest id (the number as well, because ids are drawn before commit:
  a transaction that drew a smaller id and commits later still changes the count).

Writes to ``assets`` (insert, update of what a tile shows, truncate), ``zones`` and unit names feed
both. A statement of more than 10,000 assets (an import) records one box before and one after and
marks the counts stale (``asset_tile_counts_stale``) rather than counting row by row, which would add
about 3 s to a million-row import; the next tile recounts everything once (``registry/tiles.py``). A
bulk load that bypasses triggers (``session_replication_role = replica``) must call
``smartcode_tile_counts_rebuild()`` afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014_map_tiles"
down_revision: str | None = "0013_complaints"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The zoom of the count cells and of the change regions (also in registry/tiles.py). The counts are
# also kept summed to zooms 14 and 12 (shifts 2 and 4), so that a tile of low zoom sums a few hundred
# rows instead of every zoom-16 cell under it.
COUNT_ZOOM = 16
COUNT_SHIFTS = "(0), (2), (4)"
CHANGE_ZOOM = 14
# A statement writing more assets than this (an import) records one box and marks the counts stale
# instead of counting its rows one by one (docs/tiles.md: 3 s a million rows, a quarter of an import).
# The server setting smartcode.tile_bulk_rows overrides it (the tests use a handful).
BULK_ROWS = f"coalesce(nullif(current_setting('smartcode.tile_bulk_rows', true), '')::int, {10_000})"

_FUNCTIONS = f"""
-- The tile column / row of a longitude / latitude at zoom z (spherical Mercator, as ST_TileEnvelope).
-- Each argument is used once, so that the planner inlines them (a call per row costs microseconds).
CREATE FUNCTION smartcode_tile_x(lon float8, z int) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT least(greatest(floor((lon + 180.0) / 360.0 * (1 << z)), 0), (1 << z) - 1)::int
$$;
CREATE FUNCTION smartcode_tile_y(lat float8, z int) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT least(greatest(floor((1.0 - asinh(tan(radians(lat))) / pi()) / 2.0 * (1 << z)), 0),
               (1 << z) - 1)::int
$$;
-- Where an asset is counted: the point itself, or a point on the line or polygon.
CREATE FUNCTION smartcode_tile_anchor(g geometry) RETURNS geometry
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN GeometryType(g) = 'POINT' THEN g ELSE ST_PointOnSurface(g) END
$$;

CREATE TABLE asset_tile_counts (
  z smallint NOT NULL,
  cx int NOT NULL,
  cy int NOT NULL,
  class_code varchar(4) NOT NULL,
  owner_id bigint NOT NULL,
  n int NOT NULL,
  PRIMARY KEY (z, cx, cy, class_code, owner_id)
);
CREATE TABLE tile_changes (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  box geometry(Geometry, 4326) NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tile_changes_box_gist ON tile_changes USING gist (box);
-- A row here: a bulk write left asset_tile_counts behind; the next tile recounts (registry/tiles.py).
CREATE TABLE asset_tile_counts_stale (
  stale boolean PRIMARY KEY DEFAULT true CHECK (stale),
  since timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION smartcode_tiles_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT count(*) FROM new_rows) > {BULK_ROWS} THEN
    INSERT INTO tile_changes (box) SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326) FROM new_rows;
    INSERT INTO asset_tile_counts_stale DEFAULT VALUES ON CONFLICT DO NOTHING;
    RETURN NULL;
  END IF;
  INSERT INTO tile_changes (box)
  SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326)
  FROM (SELECT geom, ST_Centroid(ST_Envelope(geom)) AS p FROM new_rows) s
  GROUP BY smartcode_tile_x(ST_X(p), {CHANGE_ZOOM}), smartcode_tile_y(ST_Y(p), {CHANGE_ZOOM});

  INSERT INTO asset_tile_counts AS t (z, cx, cy, class_code, owner_id, n)
  SELECT {COUNT_ZOOM} - s.shift, cx >> s.shift, cy >> s.shift, class_code, owner_id, count(*)
  FROM (SELECT smartcode_tile_x(ST_X(p), {COUNT_ZOOM}) AS cx, smartcode_tile_y(ST_Y(p), {COUNT_ZOOM}) AS cy,
               class_code, coalesce(owner_id, 0) AS owner_id
        FROM (SELECT smartcode_tile_anchor(geom) AS p, class_code, owner_id FROM new_rows WHERE in_use) a) c
  CROSS JOIN (VALUES {COUNT_SHIFTS}) s(shift)
  GROUP BY 1, 2, 3, 4, 5
  ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (z, cx, cy, class_code, owner_id) DO UPDATE SET n = t.n + EXCLUDED.n;
  RETURN NULL;
END $$;

CREATE FUNCTION smartcode_tiles_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Only rows whose tile features change (place, code, class, state, owner, in use), each as it was
  -- (sign -1) and as it is (sign 1); the counters are taken in key order, so that concurrent writers
  -- lock them in the same order.
  IF (SELECT count(*) FROM new_rows) > {BULK_ROWS} THEN
    INSERT INTO tile_changes (box) SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326) FROM old_rows;
    INSERT INTO tile_changes (box) SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326) FROM new_rows;
    INSERT INTO asset_tile_counts_stale DEFAULT VALUES ON CONFLICT DO NOTHING;
    RETURN NULL;
  END IF;
  WITH moved AS (
    SELECT x.*
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    CROSS JOIN LATERAL (VALUES (o.geom, o.in_use, o.class_code, o.owner_id, -1),
                               (n.geom, n.in_use, n.class_code, n.owner_id, 1))
          AS x(geom, in_use, class_code, owner_id, sign)
    WHERE o.geom IS DISTINCT FROM n.geom OR o.code IS DISTINCT FROM n.code
       OR o.class_code IS DISTINCT FROM n.class_code OR o.state IS DISTINCT FROM n.state
       OR o.owner_id IS DISTINCT FROM n.owner_id OR o.in_use IS DISTINCT FROM n.in_use
  ), boxes AS (
    INSERT INTO tile_changes (box)
    SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326)
    FROM (SELECT geom, sign, ST_Centroid(ST_Envelope(geom)) AS p FROM moved) s
    GROUP BY sign, smartcode_tile_x(ST_X(p), {CHANGE_ZOOM}), smartcode_tile_y(ST_Y(p), {CHANGE_ZOOM})
  )
  INSERT INTO asset_tile_counts AS t (z, cx, cy, class_code, owner_id, n)
  SELECT {COUNT_ZOOM} - s.shift, cx >> s.shift, cy >> s.shift, class_code, owner_id, sum(sign)
  FROM (SELECT smartcode_tile_x(ST_X(p), {COUNT_ZOOM}) AS cx, smartcode_tile_y(ST_Y(p), {COUNT_ZOOM}) AS cy,
               class_code, coalesce(owner_id, 0) AS owner_id, sign
        FROM (SELECT smartcode_tile_anchor(geom) AS p, class_code, owner_id, sign
              FROM moved WHERE in_use) a) c
  CROSS JOIN (VALUES {COUNT_SHIFTS}) s(shift)
  GROUP BY 1, 2, 3, 4, 5
  HAVING sum(sign) <> 0
  ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (z, cx, cy, class_code, owner_id) DO UPDATE SET n = t.n + EXCLUDED.n;
  RETURN NULL;
END $$;

CREATE FUNCTION smartcode_tiles_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- DELETE, not TRUNCATE: the counts may be truncated by the same statement (TRUNCATE assets, ...).
  DELETE FROM asset_tile_counts;
  INSERT INTO tile_changes (box) VALUES (ST_MakeEnvelope(-180, -90, 180, 90, 4326));
  RETURN NULL;
END $$;

-- Zones: every version written or removed, before and after.
CREATE FUNCTION smartcode_tiles_zones_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    INSERT INTO tile_changes (box) SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326) FROM old_rows
    HAVING count(*) > 0;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    INSERT INTO tile_changes (box) SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326) FROM new_rows
    HAVING count(*) > 0;
  END IF;
  RETURN NULL;
END $$;

-- A unit renamed: the tiles showing its assets (as owner) and its zones.
CREATE FUNCTION smartcode_tiles_units_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO tile_changes (box)
  SELECT ST_SetSRID(ST_Extent(a.geom)::geometry, 4326)
  FROM old_rows o JOIN new_rows n ON n.id = o.id AND n.name IS DISTINCT FROM o.name
  -- The GIN over the units an asset names finds them; the owner is the one shown.
  JOIN assets a ON smartcode_asset_units(a.owner_id, a.maintainer_id, a.supervisor_id) @> ARRAY[n.id]
              AND a.owner_id = n.id
  GROUP BY smartcode_tile_x(ST_X(ST_Centroid(ST_Envelope(a.geom))), {CHANGE_ZOOM}),
           smartcode_tile_y(ST_Y(ST_Centroid(ST_Envelope(a.geom))), {CHANGE_ZOOM});
  INSERT INTO tile_changes (box)
  SELECT ST_SetSRID(ST_Extent(z.geom)::geometry, 4326)
  FROM old_rows o JOIN new_rows n ON n.id = o.id AND n.name IS DISTINCT FROM o.name
  JOIN zones z ON z.unit_id = n.id
  HAVING count(*) > 0;
  RETURN NULL;
END $$;

-- Count every asset again (after a bulk write); the caller holds the lock that makes it single-flight.
CREATE FUNCTION smartcode_tile_counts_recount() RETURNS void LANGUAGE sql AS $$
  DELETE FROM asset_tile_counts_stale;
  TRUNCATE asset_tile_counts;
  INSERT INTO asset_tile_counts (z, cx, cy, class_code, owner_id, n)
  SELECT {COUNT_ZOOM}, smartcode_tile_x(ST_X(p), {COUNT_ZOOM}), smartcode_tile_y(ST_Y(p), {COUNT_ZOOM}),
         class_code, coalesce(owner_id, 0), count(*)
  FROM (SELECT smartcode_tile_anchor(geom) AS p, class_code, owner_id FROM assets WHERE in_use) a
  GROUP BY 2, 3, 4, 5;
  INSERT INTO asset_tile_counts (z, cx, cy, class_code, owner_id, n)
  SELECT {COUNT_ZOOM} - s.shift, cx >> s.shift, cy >> s.shift, class_code, owner_id, sum(n)
  FROM asset_tile_counts CROSS JOIN (VALUES {COUNT_SHIFTS}) s(shift)
  WHERE z = {COUNT_ZOOM} AND s.shift > 0
  GROUP BY 1, 2, 3, 4, 5;
$$;
-- After a load that bypassed the triggers: count again, and every tile has changed.
CREATE FUNCTION smartcode_tile_counts_rebuild() RETURNS void LANGUAGE sql AS $$
  SELECT smartcode_tile_counts_recount();
  INSERT INTO tile_changes (box) VALUES (ST_MakeEnvelope(-180, -90, 180, 90, 4326));
$$;
-- The service role (smartcode_app, 0011) may not TRUNCATE; the recount runs with the owner's rights.
ALTER FUNCTION smartcode_tile_counts_recount() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION smartcode_tile_counts_rebuild() SECURITY DEFINER SET search_path = public, pg_temp;
"""

_TRIGGERS = """
CREATE TRIGGER assets_tiles_after_insert AFTER INSERT ON assets REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION smartcode_tiles_after_insert();
CREATE TRIGGER assets_tiles_after_update AFTER UPDATE ON assets
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION smartcode_tiles_after_update();
CREATE TRIGGER assets_tiles_after_truncate AFTER TRUNCATE ON assets
  FOR EACH STATEMENT EXECUTE FUNCTION smartcode_tiles_after_truncate();
CREATE TRIGGER zones_tiles_after_insert AFTER INSERT ON zones REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION smartcode_tiles_zones_changed();
CREATE TRIGGER zones_tiles_after_update AFTER UPDATE ON zones
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION smartcode_tiles_zones_changed();
CREATE TRIGGER zones_tiles_after_delete AFTER DELETE ON zones REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION smartcode_tiles_zones_changed();
CREATE TRIGGER units_tiles_after_update AFTER UPDATE ON units
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION smartcode_tiles_units_renamed();
"""


def upgrade() -> None:
    op.execute(_FUNCTIONS)
    op.execute(_TRIGGERS)
    op.execute("SELECT smartcode_tile_counts_rebuild()")


def downgrade() -> None:
    for trigger, table in (
        ("units_tiles_after_update", "units"),
        ("zones_tiles_after_delete", "zones"),
        ("zones_tiles_after_update", "zones"),
        ("zones_tiles_after_insert", "zones"),
        ("assets_tiles_after_truncate", "assets"),
        ("assets_tiles_after_update", "assets"),
        ("assets_tiles_after_insert", "assets"),
    ):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    op.execute("DROP TABLE tile_changes, asset_tile_counts, asset_tile_counts_stale")
    op.execute(
        "DROP FUNCTION smartcode_tile_counts_rebuild(), smartcode_tile_counts_recount(), "
        "smartcode_tiles_units_renamed(), "
        "smartcode_tiles_zones_changed(), smartcode_tiles_after_truncate(), smartcode_tiles_after_update(), "
        "smartcode_tiles_after_insert(), smartcode_tile_anchor(geometry), smartcode_tile_y(float8, int), "
        "smartcode_tile_x(float8, int)"
    )
