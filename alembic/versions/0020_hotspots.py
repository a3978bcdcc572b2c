"""Hot-spot warnings (高频 / 热点预警) and the map's complaints layer.

Revision ID: 0020_hotspots
Revises: 0019_webhooks
Create Date: 2026-12-06

A warning is raised when one asset gathers N complaints within D days (kind ``asset``, 高频), or when
complaints of one category within R metres of each other do (kind ``place``, 热点); registry/hotspots.py
decides, in the transaction of the complaint that tips the count (docs/hotspots.md). A warning is
raised once and then counts the further complaints that join it while it is live; it is acknowledged
by the responsible unit or an administrator, and expires D days after its last complaint.

For the check to stay cheap on the complaint write path:

* ``complaints.geom_m``: the location in the metric SRID (like ``assets.geom_m``), so that "within R
  metres" is a plain ``ST_DWithin`` on an indexed column;
* ``complaints_asset_received_idx`` (asset_code, received_at): the count per asset in the window is a
  range of one index (index-only scan);
* ``complaints_category_geom_m_gist`` (category, received_at, geom_m; btree_gist): the count per
  category, window and disc is answered by one index scan rather than by every complaint ever made
  near the place;
* a partial unique index: one live 高频 warning per asset, whatever the concurrency.

Tiles: a complaint recorded (or its status changed) and a warning raised or changed add their place
to ``tile_changes`` (migration 0014), so exactly the tiles showing them get a new ETag.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from geoalchemy2 import Geometry

from alembic import context, op

revision: str = "0020_hotspots"
down_revision: str | None = "0019_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("asset", "place")
STATES = ("active", "acknowledged", "expired")


def _metric_srid() -> int:
    srid = context.config.attributes.get("metric_srid")
    if srid is None:
        from common.settings import get_settings

        srid = get_settings().area.metric_srid
    return int(srid)


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


_TILE_TRIGGERS = """
CREATE FUNCTION smartcode_tiles_complaints_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO tile_changes (box)
    SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326) FROM new_rows WHERE geom IS NOT NULL
    HAVING count(*) > 0;
  ELSE
    -- Only a change the complaints layer shows (its status).
    INSERT INTO tile_changes (box)
    SELECT ST_SetSRID(ST_Extent(n.geom)::geometry, 4326)
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    WHERE n.geom IS NOT NULL AND n.status IS DISTINCT FROM o.status
    HAVING count(*) > 0;
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION smartcode_tiles_hotspots_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO tile_changes (box)
  SELECT ST_SetSRID(ST_Extent(centre)::geometry, 4326) FROM new_rows HAVING count(*) > 0;
  RETURN NULL;
END $$;

CREATE TRIGGER complaints_tiles_after_insert AFTER INSERT ON complaints REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION smartcode_tiles_complaints_changed();
CREATE TRIGGER complaints_tiles_after_update AFTER UPDATE ON complaints
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION smartcode_tiles_complaints_changed();
CREATE TRIGGER hotspot_warnings_tiles_after_insert AFTER INSERT ON hotspot_warnings
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION smartcode_tiles_hotspots_changed();
CREATE TRIGGER hotspot_warnings_tiles_after_update AFTER UPDATE ON hotspot_warnings
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION smartcode_tiles_hotspots_changed();
"""


def upgrade() -> None:
    srid = _metric_srid()
    op.execute(
        f"ALTER TABLE complaints ADD COLUMN geom_m geometry(Point, {srid}) "
        f"GENERATED ALWAYS AS (ST_Transform(geom, {srid})) STORED"
    )
    op.create_index("complaints_asset_received_idx", "complaints", ["asset_code", "received_at"])
    op.execute(
        "CREATE INDEX complaints_category_geom_m_gist ON complaints "
        "USING gist (category, received_at, geom_m) WHERE geom_m IS NOT NULL AND category IS NOT NULL"
    )

    op.create_table(
        "hotspot_warnings",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("asset_code", sa.String(17)),
        sa.Column("category", sa.Text),
        # Where the map shows it: the asset's anchor, or the complaint that raised a 热点 (its centre).
        sa.Column("centre", Geometry("POINT", srid=4326, spatial_index=False)),
        sa.Column("radius_m", sa.Float),
        sa.Column("unit_id", sa.BigInteger),  # the responsible unit named by the raising complaint
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("min_complaints", sa.Integer, nullable=False),
        sa.Column("window_days", sa.Integer, nullable=False),
        sa.Column("first_complaint_id", sa.BigInteger, sa.ForeignKey("complaints.id"), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_complaint_id", sa.BigInteger, sa.ForeignKey("complaints.id"), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raised_by_complaint_id", sa.BigInteger, sa.ForeignKey("complaints.id"), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True)),
        sa.Column("acknowledged_by", sa.Text),
        sa.Column("expired_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(f"kind IN {_in(KINDS)}", name="hotspot_warnings_kind_known"),
        sa.CheckConstraint(f"state IN {_in(STATES)}", name="hotspot_warnings_state_known"),
        sa.CheckConstraint(
            "(kind = 'asset' AND asset_code IS NOT NULL) "
            "OR (kind = 'place' AND category IS NOT NULL AND centre IS NOT NULL AND radius_m IS NOT NULL)",
            name="hotspot_warnings_kind_fields",
        ),
    )
    op.execute(
        f"ALTER TABLE hotspot_warnings ADD COLUMN centre_m geometry(Point, {srid}) "
        f"GENERATED ALWAYS AS (ST_Transform(centre, {srid})) STORED"
    )
    # One live 高频 warning per asset: a second concurrent raise becomes an update (ON CONFLICT).
    op.execute(
        "CREATE UNIQUE INDEX hotspot_warnings_asset_live_key ON hotspot_warnings (asset_code) "
        "WHERE kind = 'asset' AND state <> 'expired'"
    )
    op.execute(
        "CREATE INDEX hotspot_warnings_place_live_gist ON hotspot_warnings USING gist (category, centre_m) "
        "WHERE kind = 'place' AND state <> 'expired'"
    )
    op.execute("CREATE INDEX hotspot_warnings_centre_gist ON hotspot_warnings USING gist (centre)")
    op.create_index("hotspot_warnings_unit_idx", "hotspot_warnings", ["unit_id", "id"])
    op.execute(_TILE_TRIGGERS)


def downgrade() -> None:
    op.execute("DROP TRIGGER complaints_tiles_after_update ON complaints")
    op.execute("DROP TRIGGER complaints_tiles_after_insert ON complaints")
    op.drop_table("hotspot_warnings")
    op.execute("DROP FUNCTION smartcode_tiles_hotspots_changed(), smartcode_tiles_complaints_changed()")
    op.drop_index("complaints_asset_received_idx", table_name="complaints")
    op.execute("DROP INDEX complaints_category_geom_m_gist")
    op.execute("ALTER TABLE complaints DROP COLUMN geom_m")
