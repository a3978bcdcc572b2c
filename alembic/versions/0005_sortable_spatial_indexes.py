"""Spatial indexes PostgreSQL can build sorted: one per class plane, one over every class.

Revision ID: 0005_sortable_spatial_indexes
Revises: 0004_current_row_versions
Create Date: 2026-11-22

0004's one spatial index, a GiST on ``(class_code::smallint, geom_m)``, answers "the nearest
assets of class c" inside the index, but it cannot be built sorted on PostgreSQL 15 (btree_gist
has no sort support): 5.6 s of a million-asset load went into building it, and 7.5 microseconds a
row into filling it. It is replaced by two indexes on plain 2-D geometries, which PostGIS builds by
sorting the keys (about 3 s together for a million assets):

* **The class plane** (``assets_class_plane_gist``): each asset's metric geometry moved by its
  class, ``smartcode_class_plane(class_code, geom_m)``, a million metres east per class number
  (last two digits) and north per class group (first two). No county is a thousand kilometres
  across, so a class's assets never meet another class's, and "nearest of class c" is a KNN scan
  from the point moved the same way: distances are unchanged by the move. At those coordinates the
  index's single-precision boxes are rounded outwards by a few metres, which only adds candidates
  (each is rechecked on the exact geometry).
* **Every class** (``assets_geom_m_gist``): the metric geometry as it is, for searches over every
  class and bounding boxes (and the map tiles to come), which the composite index answered by
  walking every class's branch.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_sortable_spatial_indexes"
down_revision: str | None = "0004_current_row_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Inlined by the planner, so the index expression and the queries' expressions are the same tree.
_CLASS_PLANE = """
CREATE FUNCTION smartcode_class_plane(class_code text, geom geometry) RETURNS geometry
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ST_Translate(geom, (class_code::int % 100) * 1000000::float8,
                            (class_code::int / 100) * 1000000::float8)
$$
"""


def upgrade() -> None:
    op.execute(_CLASS_PLANE)
    op.execute("DROP INDEX assets_class_no_geom_m_gist")
    op.execute(
        "CREATE INDEX assets_class_plane_gist ON assets "
        "USING gist (smartcode_class_plane(class_code, geom_m))"
    )
    op.execute("CREATE INDEX assets_geom_m_gist ON assets USING gist (geom_m)")


def downgrade() -> None:
    op.execute("DROP INDEX assets_geom_m_gist")
    op.execute("DROP INDEX assets_class_plane_gist")
    op.execute("DROP FUNCTION smartcode_class_plane(text, geometry)")
    op.execute(
        "CREATE INDEX assets_class_no_geom_m_gist ON assets USING gist ((class_code::smallint), geom_m)"
    )
