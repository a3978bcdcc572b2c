"""Foundation: units, component classes, assets, history, responsibility periods, audit, serials.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from alembic import context, op

revision: str = "0001_foundation"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATA = Path(__file__).resolve().parents[2] / "registry" / "data"
UNIT_KINDS = (
    "government",
    "street_office",
    "community",
    "utility",
    "telecom",
    "property_manager",
    "contractor",
    "enterprise",
    "other",
)
# Expected geometry per class where it is not a point (the national list is mostly point features).
LINE_CLASSES = {"0211", "0216", "0408", "0604", "0606", "2105", "2106"}
POLYGON_CLASSES = {"0201", "0205", "0206", "0207", "0208", "0405", "0602"}


def _metric_srid() -> int:
    srid = context.config.attributes.get("metric_srid")
    if srid is None:
        from common.settings import get_settings

        srid = get_settings().area.metric_srid
    return int(srid)


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")

    op.create_table(
        "units",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("aliases", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("kind", sa.String(32), nullable=False, server_default="other"),
        sa.Column("credit_code", sa.String(18), unique=True),
        sa.Column("phone", sa.Text),
        sa.Column("parent_id", sa.BigInteger, sa.ForeignKey("units.id")),
        sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.CheckConstraint(f"kind IN {UNIT_KINDS}", name="units_kind_known"),
        sa.CheckConstraint("parent_id <> id", name="units_not_own_parent"),
    )
    op.create_index("units_aliases_gin", "units", ["aliases"], postgresql_using="gin")

    op.create_table(
        "component_classes",
        sa.Column("code", sa.String(4), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("big_code", sa.String(2), nullable=False),
        sa.Column("big_name", sa.Text, nullable=False),
        sa.Column("geometry_type", sa.String(8), nullable=False),
        sa.Column("scheme", sa.Text, nullable=False),
        sa.Column("scheme_version", sa.Text, nullable=False),
        sa.Column("aliases", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("note", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("retired_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("code ~ '^[0-9]{4}$' AND left(code, 2) = big_code", name="classes_code_shape"),
        sa.CheckConstraint("geometry_type IN ('point', 'line', 'polygon')", name="classes_geometry_known"),
    )

    op.create_table(
        "assets",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("code", sa.String(17), nullable=False, unique=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("class_code", sa.String(4), sa.ForeignKey("component_classes.code"), nullable=False),
        sa.Column("serial", sa.Integer, nullable=False),
        sa.Column("geom", Geometry(srid=4326, spatial_index=False), nullable=False),
        sa.Column("owner_id", sa.BigInteger, sa.ForeignKey("units.id")),
        sa.Column("maintainer_id", sa.BigInteger, sa.ForeignKey("units.id")),
        sa.Column("supervisor_id", sa.BigInteger, sa.ForeignKey("units.id")),
        sa.Column("state", sa.Text, nullable=False, server_default="完好"),
        sa.Column("in_use", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("decommissioned_at", sa.DateTime(timezone=True)),
        sa.Column("decommission_reason", sa.Text),
        sa.Column("grid_code", sa.Text),
        sa.Column("data_source", sa.Text),
        sa.Column("address", sa.Text),
        sa.Column("note", sa.Text),
        sa.Column("installed_on", sa.Date),
        sa.Column("attributes", JSONB, nullable=False, server_default="{}"),
        sa.Column("source_id", sa.Text),
        sa.Column("batch_id", sa.BigInteger),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.UniqueConstraint("county_code", "class_code", "serial", name="assets_county_class_serial_key"),
        sa.CheckConstraint("code ~ '^[0-9]{17}$'", name="assets_code_digits"),
        sa.CheckConstraint(
            "left(code, 16) = county_code || class_code || lpad(serial::text, 6, '0')",
            name="assets_code_matches_parts",
        ),
        sa.CheckConstraint("serial BETWEEN 0 AND 999999", name="assets_serial_range"),
        sa.CheckConstraint("state IN ('完好', '破损', '丢失', '占用')", name="assets_state_known"),
        sa.CheckConstraint("in_use = (decommissioned_at IS NULL)", name="assets_decommission_consistent"),
    )
    # The metric twin of geom: distances in metres with an index, and always in step with geom.
    srid = _metric_srid()
    op.execute(
        f"ALTER TABLE assets ADD COLUMN geom_m geometry(Geometry, {srid}) "
        f"GENERATED ALWAYS AS (ST_Transform(geom, {srid})) STORED"
    )
    op.execute("CREATE INDEX assets_geom_gist ON assets USING gist (geom)")
    op.execute("CREATE INDEX assets_geom_m_gist ON assets USING gist (geom_m)")
    op.create_index("assets_owner_idx", "assets", ["owner_id"])
    op.create_index("assets_maintainer_idx", "assets", ["maintainer_id"])
    op.create_index("assets_supervisor_idx", "assets", ["supervisor_id"])
    op.create_index("assets_source_id_idx", "assets", ["source_id"])
    op.create_index("assets_batch_idx", "assets", ["batch_id"])

    op.create_table(
        "asset_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("batch_id", sa.BigInteger),
        sa.Column("data", JSONB, nullable=False),
        sa.Column("geom", Geometry(srid=4326, spatial_index=False), nullable=False),
        sa.UniqueConstraint("asset_id", "version", name="asset_history_asset_version_key"),
    )
    op.create_index("asset_history_batch_idx", "asset_history", ["batch_id"])

    op.create_table(
        "asset_responsibility",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
        sa.Column("owner_id", sa.BigInteger, sa.ForeignKey("units.id")),
        sa.Column("maintainer_id", sa.BigInteger, sa.ForeignKey("units.id")),
        sa.Column("supervisor_id", sa.BigInteger, sa.ForeignKey("units.id")),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True)),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="responsibility_period_order"),
    )
    # Periods of one asset never overlap, so "who owned it at time t" has exactly one answer.
    op.execute(
        "ALTER TABLE asset_responsibility ADD CONSTRAINT asset_responsibility_no_overlap "
        "EXCLUDE USING gist (asset_id WITH =, tstzrange(valid_from, valid_to) WITH &&)"
    )
    op.execute(
        "CREATE UNIQUE INDEX asset_responsibility_open ON asset_responsibility (asset_id) "
        "WHERE valid_to IS NULL"
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("entity_id", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("details", JSONB, nullable=False, server_default="{}"),
    )
    op.create_index("audit_log_entity_idx", "audit_log", ["entity", "entity_id"])

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("unit_id", sa.BigInteger, sa.ForeignKey("units.id")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("role IN ('admin', 'unit', 'reader')", name="api_tokens_role_known"),
        sa.CheckConstraint("(role = 'unit') = (unit_id IS NOT NULL)", name="api_tokens_unit_scope"),
    )

    op.create_table(
        "code_serials",
        sa.Column("county_code", sa.String(6), primary_key=True),
        sa.Column("class_code", sa.String(4), primary_key=True),
        sa.Column("next_serial", sa.Integer, nullable=False),
    )

    _create_history_triggers()
    _seed_classes()


def _create_history_triggers() -> None:
    # The change context (who, why, which action, effective time, import batch) travels in
    # transaction-local settings so that every write path, including bulk SQL, is recorded alike.
    op.execute(
        """
        CREATE FUNCTION smartcode_ctx(key text) RETURNS text LANGUAGE sql STABLE AS
        $$ SELECT nullif(current_setting('smartcode.' || key, true), '') $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION assets_before_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.code <> OLD.code OR NEW.id <> OLD.id THEN
            RAISE EXCEPTION 'the smart code of asset % never changes', OLD.code
              USING ERRCODE = 'check_violation';
          END IF;
          NEW.version := OLD.version + 1;
          NEW.changed_at := now();
          RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION assets_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'assets are never deleted (asset %): decommission it instead', OLD.code
            USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION assets_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
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
    )
    op.execute(
        """
        CREATE FUNCTION assets_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
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
          UPDATE asset_responsibility r SET valid_to = effective
          FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE r.asset_id = n.id AND r.valid_to IS NULL
            AND (n.owner_id, n.maintainer_id, n.supervisor_id)
                IS DISTINCT FROM (o.owner_id, o.maintainer_id, o.supervisor_id);
          INSERT INTO asset_responsibility
                 (asset_id, owner_id, maintainer_id, supervisor_id, valid_from, recorded_at, actor, reason)
          SELECT n.id, n.owner_id, n.maintainer_id, n.supervisor_id, effective, now(), who,
                 smartcode_ctx('reason')
          FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE (n.owner_id, n.maintainer_id, n.supervisor_id)
                IS DISTINCT FROM (o.owner_id, o.maintainer_id, o.supervisor_id);
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER assets_before_update BEFORE UPDATE ON assets "
        "FOR EACH ROW EXECUTE FUNCTION assets_before_update()"
    )
    op.execute(
        "CREATE TRIGGER assets_refuse_delete BEFORE DELETE ON assets "
        "FOR EACH ROW EXECUTE FUNCTION assets_refuse_delete()"
    )
    op.execute(
        "CREATE TRIGGER assets_after_insert AFTER INSERT ON assets REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION assets_after_insert()"
    )
    op.execute(
        "CREATE TRIGGER assets_after_update AFTER UPDATE ON assets "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION assets_after_update()"
    )


def _seed_classes() -> None:
    rows = []
    for filename, scheme, version in (
        ("component-classes-national.csv", "national", "GB/T 30428.2-2013"),
        ("component-classes-local.csv", "local", "shenzhen-2026.1"),
    ):
        with (DATA / filename).open(encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                code = record["class_code"]
                kind = "line" if code in LINE_CLASSES else "polygon" if code in POLYGON_CLASSES else "point"
                rows.append(
                    {
                        "code": code,
                        "name": record["class_name"],
                        "big_code": record["big_code"],
                        "big_name": record["big_name"],
                        "geometry_type": kind,
                        "scheme": scheme,
                        "scheme_version": version,
                        "note": record["note"] or None,
                        "aliases": ["防汛墙"] if code == "0606" else [],
                    }
                )
    table = sa.table(
        "component_classes",
        sa.column("code"),
        sa.column("name"),
        sa.column("big_code"),
        sa.column("big_name"),
        sa.column("geometry_type"),
        sa.column("scheme"),
        sa.column("scheme_version"),
        sa.column("note"),
        sa.column("aliases", ARRAY(sa.Text)),
    )
    op.bulk_insert(table, rows)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS assets_after_update ON assets")
    op.execute("DROP TRIGGER IF EXISTS assets_after_insert ON assets")
    op.execute("DROP TRIGGER IF EXISTS assets_refuse_delete ON assets")
    op.execute("DROP TRIGGER IF EXISTS assets_before_update ON assets")
    for table in (
        "code_serials",
        "api_tokens",
        "audit_log",
        "asset_responsibility",
        "asset_history",
        "assets",
        "component_classes",
        "units",
    ):
        op.drop_table(table)
    for function in (
        "assets_after_update()",
        "assets_after_insert()",
        "assets_refuse_delete()",
        "assets_before_update()",
        "smartcode_ctx(text)",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
