"""Imports: one row per import batch, and history triggers that stay fast on million-row batches.

Revision ID: 0003_imports
Revises: 0002_resolution
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision: str = "0003_imports"
down_revision: str | None = "0002_resolution"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH_STATUSES = ("running", "committed", "refused", "failed", "rolled_back")

# The history triggers of 0001 build each version's JSON with ``to_jsonb(n) - 'geom' - 'geom_m'``.
# to_jsonb renders the two geometry columns through PostGIS's geometry->json cast (ST_AsGeoJSON,
# with a spatial_ref_sys lookup for the metric SRID) only to drop them again: measured at about
# 50 microseconds a row, 50 s of a million-row import. These versions build the same object from
# the non-geometry columns directly. The column list is read from the catalogue once per
# statement, so a column added to assets later is recorded without touching the triggers.
_DATA_EXPRESSION = """
CREATE FUNCTION assets_history_data_sql() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT 'jsonb_build_object('
         || string_agg(format('%L, n.%I', attname, attname), ', ' ORDER BY attnum) || ')'
  FROM pg_attribute
  WHERE attrelid = 'assets'::regclass AND attnum > 0 AND NOT attisdropped
    AND atttypid <> 'geometry'::regtype
$$
"""

_AFTER_INSERT = """
CREATE OR REPLACE FUNCTION assets_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format($q$
    INSERT INTO asset_history
           (asset_id, version, recorded_at, actor, reason, action, batch_id, data, geom)
    SELECT n.id, n.version, now(), coalesce(smartcode_ctx('actor'), session_user),
           smartcode_ctx('reason'), coalesce(smartcode_ctx('action'), 'create'),
           smartcode_ctx('batch_id')::bigint, %s, n.geom
    FROM new_rows n $q$, assets_history_data_sql());
  INSERT INTO asset_responsibility
         (asset_id, owner_id, maintainer_id, supervisor_id, valid_from, recorded_at, actor, reason)
  SELECT n.id, n.owner_id, n.maintainer_id, n.supervisor_id,
         coalesce(smartcode_ctx('effective_at')::timestamptz,
                  (n.installed_on::timestamp AT TIME ZONE 'Asia/Shanghai'),
                  '-infinity'::timestamptz),
         now(), coalesce(smartcode_ctx('actor'), session_user), smartcode_ctx('reason')
  FROM new_rows n;
  RETURN NULL;
END $$
"""

_AFTER_UPDATE = """
CREATE OR REPLACE FUNCTION assets_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  effective timestamptz := coalesce(smartcode_ctx('effective_at')::timestamptz, now());
  who text := coalesce(smartcode_ctx('actor'), session_user);
BEGIN
  EXECUTE format($q$
    INSERT INTO asset_history
           (asset_id, version, recorded_at, actor, reason, action, batch_id, data, geom)
    SELECT n.id, n.version, now(), $1, smartcode_ctx('reason'),
           coalesce(smartcode_ctx('action'), 'update'), smartcode_ctx('batch_id')::bigint,
           %s, n.geom
    FROM new_rows n $q$, assets_history_data_sql()) USING who;

  -- Close the open responsibility period of every asset whose units changed, open the next.
  -- A period that starts after the change (a legacy future installation date) is closed just
  -- after its start, and the next one opens there, so the periods stay ordered and never overlap.
  UPDATE asset_responsibility r SET valid_to = greatest(effective, r.valid_from + interval '1 microsecond')
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE r.asset_id = n.id AND r.valid_to IS NULL
    AND (n.owner_id, n.maintainer_id, n.supervisor_id)
        IS DISTINCT FROM (o.owner_id, o.maintainer_id, o.supervisor_id);
  INSERT INTO asset_responsibility
         (asset_id, owner_id, maintainer_id, supervisor_id, valid_from, recorded_at, actor, reason)
  SELECT n.id, n.owner_id, n.maintainer_id, n.supervisor_id,
         greatest(effective, (SELECT max(p.valid_to) FROM asset_responsibility p WHERE p.asset_id = n.id)),
         now(), who, smartcode_ctx('reason')
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE (n.owner_id, n.maintainer_id, n.supervisor_id)
        IS DISTINCT FROM (o.owner_id, o.maintainer_id, o.supervisor_id);
  RETURN NULL;
END $$
"""

# The 0001 bodies, restored on downgrade.
_AFTER_INSERT_0001 = """
CREATE OR REPLACE FUNCTION assets_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO asset_history
         (asset_id, version, recorded_at, actor, reason, action, batch_id, data, geom)
  SELECT n.id, n.version, now(), coalesce(smartcode_ctx('actor'), session_user),
         smartcode_ctx('reason'), coalesce(smartcode_ctx('action'), 'create'),
         smartcode_ctx('batch_id')::bigint, to_jsonb(n) - 'geom' - 'geom_m', n.geom
  FROM new_rows n;
  INSERT INTO asset_responsibility
         (asset_id, owner_id, maintainer_id, supervisor_id, valid_from, recorded_at, actor, reason)
  SELECT n.id, n.owner_id, n.maintainer_id, n.supervisor_id,
         coalesce(smartcode_ctx('effective_at')::timestamptz,
                  (n.installed_on::timestamp AT TIME ZONE 'Asia/Shanghai'),
                  '-infinity'::timestamptz),
         now(), coalesce(smartcode_ctx('actor'), session_user), smartcode_ctx('reason')
  FROM new_rows n;
  RETURN NULL;
END $$
"""

_AFTER_UPDATE_0001 = """
CREATE OR REPLACE FUNCTION assets_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  effective timestamptz := coalesce(smartcode_ctx('effective_at')::timestamptz, now());
  who text := coalesce(smartcode_ctx('actor'), session_user);
BEGIN
  INSERT INTO asset_history
         (asset_id, version, recorded_at, actor, reason, action, batch_id, data, geom)
  SELECT n.id, n.version, now(), who, smartcode_ctx('reason'),
         coalesce(smartcode_ctx('action'), 'update'), smartcode_ctx('batch_id')::bigint,
         to_jsonb(n) - 'geom' - 'geom_m', n.geom
  FROM new_rows n;

  -- Close the open responsibility period of every asset whose units changed, open the next.
  -- A period that starts after the change (a legacy future installation date) is closed just
  -- after its start, and the next one opens there, so the periods stay ordered and never overlap.
  UPDATE asset_responsibility r SET valid_to = greatest(effective, r.valid_from + interval '1 microsecond')
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE r.asset_id = n.id AND r.valid_to IS NULL
    AND (n.owner_id, n.maintainer_id, n.supervisor_id)
        IS DISTINCT FROM (o.owner_id, o.maintainer_id, o.supervisor_id);
  INSERT INTO asset_responsibility
         (asset_id, owner_id, maintainer_id, supervisor_id, valid_from, recorded_at, actor, reason)
  SELECT n.id, n.owner_id, n.maintainer_id, n.supervisor_id,
         greatest(effective, (SELECT max(p.valid_to) FROM asset_responsibility p WHERE p.asset_id = n.id)),
         now(), who, smartcode_ctx('reason')
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE (n.owner_id, n.maintainer_id, n.supervisor_id)
        IS DISTINCT FROM (o.owner_id, o.maintainer_id, o.supervisor_id);
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "import_batches",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("file_size", sa.BigInteger, nullable=False),
        sa.Column("format", sa.Text),
        sa.Column("profile", sa.Text, nullable=False),
        sa.Column("options", JSONB, nullable=False, server_default="{}"),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("unit_id", sa.BigInteger, sa.ForeignKey("units.id")),
        sa.Column("zone_id", sa.BigInteger, sa.ForeignKey("zones.id")),
        sa.Column("zone_name", sa.Text),
        sa.Column("status", sa.String(16), nullable=False, server_default="running"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("counts", JSONB, nullable=False, server_default="{}"),
        sa.Column("report", JSONB),
        sa.Column("error", sa.Text),
        sa.Column("rolled_back_at", sa.DateTime(timezone=True)),
        sa.Column("rolled_back_by", sa.Text),
        sa.CheckConstraint(f"status IN {BATCH_STATUSES}", name="import_batches_status_known"),
    )
    op.create_index("import_batches_sha256_idx", "import_batches", ["file_sha256"])
    op.create_index("import_batches_started_idx", "import_batches", ["started_at"])
    op.execute(_DATA_EXPRESSION)
    op.execute(_AFTER_INSERT)
    op.execute(_AFTER_UPDATE)


def downgrade() -> None:
    op.execute(_AFTER_UPDATE_0001)
    op.execute(_AFTER_INSERT_0001)
    op.execute("DROP FUNCTION IF EXISTS assets_history_data_sql()")
    op.drop_table("import_batches")
