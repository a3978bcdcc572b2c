"""Ownership resolution: zones, responsibility rules, complaint categories, the resolution log.

Revision ID: 0002_resolution
Revises: 0001_foundation
Create Date: 2026-11-22
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from alembic import op

revision: str = "0002_resolution"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATA = Path(__file__).resolve().parents[2] / "registry" / "data"
ZONE_LEVELS = ("street", "community", "grid", "contract", "pilot")
RESOLUTION_STATUSES = ("resolved", "ambiguous", "fallback", "unresolved")


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    # --- zones: versioned boundaries (like MapIt generations) ------------------------------------
    op.create_table(
        "zones",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("code", sa.Text),
        sa.Column("unit_id", sa.BigInteger, sa.ForeignKey("units.id")),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False, server_default="-infinity"),
        sa.Column("valid_to", sa.DateTime(timezone=True)),
        sa.Column("source", sa.Text),
        sa.Column("repair_note", sa.Text),
        sa.Column("attributes", JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.CheckConstraint(f"level IN {ZONE_LEVELS}", name="zones_level_known"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="zones_period_order"),
    )
    op.execute("ALTER TABLE zones ADD COLUMN geom geometry(MultiPolygon, 4326) NOT NULL")
    op.execute(
        "ALTER TABLE zones ADD CONSTRAINT zones_geom_valid CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom))"
    )
    # One boundary per zone at any moment: a new generation closes the previous one.
    op.execute(
        "ALTER TABLE zones ADD CONSTRAINT zones_no_overlap EXCLUDE USING gist "
        "(county_code WITH =, level WITH =, name WITH =, tstzrange(valid_from, valid_to) WITH &&)"
    )
    op.execute("CREATE INDEX zones_geom_gist ON zones USING gist (geom)")
    op.create_index("zones_unit_idx", "zones", ["unit_id"])

    # Point-in-polygon on a district boundary with thousands of vertices is slow; small pieces
    # (ST_Subdivide) keep every containment test cheap and the index selective. Kept by a trigger.
    op.create_table(
        "zone_pieces",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("zone_id", sa.BigInteger, sa.ForeignKey("zones.id", ondelete="CASCADE"), nullable=False),
    )
    op.execute("ALTER TABLE zone_pieces ADD COLUMN geom geometry(Polygon, 4326) NOT NULL")
    op.execute("CREATE INDEX zone_pieces_geom_gist ON zone_pieces USING gist (geom)")
    op.create_index("zone_pieces_zone_idx", "zone_pieces", ["zone_id"])
    op.execute(
        """
        CREATE FUNCTION zones_subdivide() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          DELETE FROM zone_pieces WHERE zone_id = NEW.id;
          INSERT INTO zone_pieces (zone_id, geom)
          SELECT NEW.id, (ST_Dump(ST_Subdivide(NEW.geom, 128))).geom;
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER zones_subdivide AFTER INSERT OR UPDATE OF geom ON zones "
        "FOR EACH ROW EXECUTE FUNCTION zones_subdivide()"
    )

    # --- complaint categories (案件类别 -> component classes) ----------------------------------------
    op.create_table(
        "complaint_categories",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("class_codes", ARRAY(sa.String(4)), nullable=False, server_default="{}"),
        sa.Column("aliases", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("description", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.create_index(
        "complaint_categories_aliases_gin", "complaint_categories", ["aliases"], postgresql_using="gin"
    )

    # --- responsibility rules (职责清单) ------------------------------------------------------------
    op.create_table(
        "responsibility_rules",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        # A rule names its zone by level and name, not by id, so it survives new boundary generations.
        sa.Column("zone_level", sa.String(16)),
        sa.Column("zone_name", sa.Text),
        sa.Column("class_code", sa.String(4), sa.ForeignKey("component_classes.code")),
        sa.Column(
            "category",
            sa.Text,
            sa.ForeignKey("complaint_categories.name", onupdate="CASCADE"),
        ),
        sa.Column("unit_id", sa.BigInteger, sa.ForeignKey("units.id"), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False, server_default="-infinity"),
        sa.Column("valid_to", sa.DateTime(timezone=True)),
        sa.Column("note", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.CheckConstraint("(zone_level IS NULL) = (zone_name IS NULL)", name="rules_zone_complete"),
        sa.CheckConstraint(f"zone_level IS NULL OR zone_level IN {ZONE_LEVELS}", name="rules_level_known"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="rules_period_order"),
    )
    # At any moment one unit per (zone, class, category): two would be a silent tie.
    op.execute(
        "ALTER TABLE responsibility_rules ADD CONSTRAINT rules_no_overlap EXCLUDE USING gist ("
        "county_code WITH =, (coalesce(zone_level, '')) WITH =, (coalesce(zone_name, '')) WITH =, "
        "(coalesce(class_code, '')) WITH =, (coalesce(category, '')) WITH =, "
        "tstzrange(valid_from, valid_to) WITH &&)"
    )
    op.create_index("rules_zone_idx", "responsibility_rules", ["zone_level", "zone_name"])
    op.create_index("rules_unit_idx", "responsibility_rules", ["unit_id"])

    # --- the resolution log: every answer given, with its query, for later disputes ------------
    op.execute("CREATE SEQUENCE resolution_log_id_seq AS bigint")
    op.create_table(
        "resolution_log",
        sa.Column(
            "id", sa.BigInteger, primary_key=True, server_default=sa.text("nextval('resolution_log_id_seq')")
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("query", JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("rule", sa.Text),
        sa.Column("asset_code", sa.Text),
        sa.Column("owner_id", sa.BigInteger),
        sa.Column("answer", JSONB, nullable=False),
        sa.CheckConstraint(
            f"status IN {(*RESOLUTION_STATUSES, 'not_found', 'invalid')}", name="resolution_status_known"
        ),
    )
    op.execute("ALTER SEQUENCE resolution_log_id_seq OWNED BY resolution_log.id")
    # Append-only and time-ordered: BRIN costs nearly nothing per insert.
    op.execute("CREATE INDEX resolution_log_at_brin ON resolution_log USING brin (at)")
    op.create_index("resolution_log_asset_idx", "resolution_log", ["asset_code"])

    # --- nearest-asset search by class --------------------------------------------------------------
    # KNN on geom_m restricted to one class: with a composite GiST (btree_gist) the class equality and
    # the distance ordering are answered by one index scan, instead of walking the nearest assets of
    # every class and filtering (see docs/benchmarks.md, Resolution).
    op.execute("CREATE INDEX assets_class_geom_m_gist ON assets USING gist (class_code, geom_m)")

    _seed_categories()


def _seed_categories() -> None:
    with (DATA / "categories.toml").open("rb") as handle:
        entries = tomllib.load(handle).get("category", [])
    table = sa.table(
        "complaint_categories",
        sa.column("name"),
        sa.column("class_codes", ARRAY(sa.String(4))),
        sa.column("aliases", ARRAY(sa.Text)),
        sa.column("description"),
    )
    op.bulk_insert(
        table,
        [
            {
                "name": entry["name"],
                "class_codes": list(entry.get("classes", [])),
                "aliases": list(entry.get("aliases", [])),
                "description": entry.get("description"),
            }
            for entry in entries
        ],
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS assets_class_geom_m_gist")
    op.drop_table("resolution_log")
    op.drop_table("responsibility_rules")
    op.drop_table("complaint_categories")
    op.execute("DROP TRIGGER IF EXISTS zones_subdivide ON zones")
    op.drop_table("zone_pieces")
    op.drop_table("zones")
    op.execute("DROP FUNCTION IF EXISTS zones_subdivide()")
