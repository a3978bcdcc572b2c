"""Complaints (诉求): what people report about an asset or a place, resolved and stored as it arrived.

Revision ID: 0013_complaints
Revises: 0012_labels
Create Date: 2026-12-06

A complaint is recorded once and never rewritten: its source, where and what, and the resolution
computed on arrival (responsible units, rule, the whole answer) stay as they were, so a later dispute
can see what the registry said at the time. Only its status moves (received, later accepted,
returned, closed: issue 15); every status, the first included, is a row of ``complaint_history``,
written by a trigger so no write path can skip it, and that table refuses updates and deletes.

Photos are kept in ``complaint_photos`` (bytea) rather than in files: they are written in the same
transaction as the complaint (a rolled-back complaint leaves no orphan file, a crash no complaint
without its photo), every API process on any host sees them, and backups of the database include
them. The cap per photo (5 MiB, checked by the service) keeps the table reasonable.

Also a partial index on ``label_issues.revoked_at`` for the scan page's revocation cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision: str = "0013_complaints"
down_revision: str | None = "0012_labels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = ("scan", "case_system", "open311", "api")
# Issue 15 adds accepted / returned / closed; the check is widened there.
STATUSES = ("received",)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
# The columns a status change may touch; everything else of a complaint is fixed at arrival.
MUTABLE = ("status", "status_at", "status_by", "status_reason", "version")


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        "complaints",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("reference", sa.Text, nullable=False, unique=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("external_id", sa.Text),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("reported_at", sa.DateTime(timezone=True)),
        sa.Column("category", sa.Text),
        sa.Column("asset_code", sa.String(17)),
        sa.Column("label_status", sa.String(16)),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False)),
        sa.Column("location_given", JSONB),
        sa.Column("accuracy_m", sa.Float),
        sa.Column("distance_m", sa.Float),
        sa.Column("reporter", JSONB, nullable=False, server_default="{}"),
        sa.Column("client_ip", sa.Text),
        sa.Column("resolution_id", sa.BigInteger),
        sa.Column("resolution_status", sa.String(16)),
        sa.Column("resolution_rule", sa.String(32)),
        sa.Column("owner_id", sa.BigInteger),
        sa.Column("maintainer_id", sa.BigInteger),
        sa.Column("supervisor_id", sa.BigInteger),
        sa.Column("resolution", JSONB, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="received"),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("status_by", sa.Text, nullable=False),
        sa.Column("status_reason", sa.Text),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.CheckConstraint(f"source IN {_in(SOURCES)}", name="complaints_source_known"),
        sa.CheckConstraint(f"status IN {_in(STATUSES)}", name="complaints_status_known"),
    )
    # A case system sends its own id; the same case posted twice must not become two complaints.
    op.create_index(
        "complaints_external_idx",
        "complaints",
        ["source", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_index("complaints_asset_idx", "complaints", ["asset_code", "id"])
    op.create_index("complaints_owner_idx", "complaints", ["owner_id", "id"])
    op.create_index("complaints_received_idx", "complaints", ["received_at"])
    op.execute("CREATE INDEX complaints_geom_idx ON complaints USING gist (geom)")

    op.create_table(
        "complaint_photos",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("complaint_id", sa.BigInteger, sa.ForeignKey("complaints.id"), nullable=False),
        sa.Column("seq", sa.SmallInteger, nullable=False),
        sa.Column("content_type", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.UniqueConstraint("complaint_id", "seq", name="complaint_photos_seq_unique"),
        sa.CheckConstraint(f"content_type IN {_in(IMAGE_TYPES)}", name="complaint_photos_type_known"),
    )

    op.create_table(
        "complaint_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("complaint_id", sa.BigInteger, sa.ForeignKey("complaints.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_index("complaint_history_complaint_idx", "complaint_history", ["complaint_id", "id"])

    # The scan page keeps the revoked label editions in memory and re-reads those revoked since its
    # last look every few seconds: this keeps that read to the few rows it needs.
    op.create_index(
        "label_issues_revoked_idx",
        "label_issues",
        ["revoked_at"],
        postgresql_where=sa.text("revoked_at IS NOT NULL"),
    )

    mutable = ", ".join(f"'{c}'" for c in MUTABLE)
    op.execute(
        f"""
        CREATE FUNCTION smartcode_complaint_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'complaints are never deleted (complaint %)', OLD.reference;
          END IF;
          IF (to_jsonb(NEW) - ARRAY[{mutable}]) IS DISTINCT FROM (to_jsonb(OLD) - ARRAY[{mutable}]) THEN
            RAISE EXCEPTION 'complaint % is kept as it arrived: only its status changes', OLD.reference;
          END IF;
          RETURN NEW;
        END $$;

        CREATE FUNCTION smartcode_complaint_history() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
             OR NEW.status_at IS DISTINCT FROM OLD.status_at THEN
            INSERT INTO complaint_history (complaint_id, version, at, actor, status, reason)
            VALUES (NEW.id, NEW.version, NEW.status_at, NEW.status_by, NEW.status, NEW.status_reason);
          END IF;
          RETURN NULL;
        END $$;

        CREATE FUNCTION smartcode_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION '% is append-only: rows are never changed or deleted', TG_TABLE_NAME;
        END $$;

        CREATE TRIGGER complaints_guard BEFORE UPDATE OR DELETE ON complaints
          FOR EACH ROW EXECUTE FUNCTION smartcode_complaint_guard();
        CREATE TRIGGER complaints_history AFTER INSERT OR UPDATE ON complaints
          FOR EACH ROW EXECUTE FUNCTION smartcode_complaint_history();
        CREATE TRIGGER complaint_history_append_only BEFORE UPDATE OR DELETE ON complaint_history
          FOR EACH ROW EXECUTE FUNCTION smartcode_append_only();
        CREATE TRIGGER complaint_photos_append_only BEFORE UPDATE OR DELETE ON complaint_photos
          FOR EACH ROW EXECUTE FUNCTION smartcode_append_only();
        """
    )
    # Where the service runs as its own role (smartcode_app, which gets full rights on new tables by
    # default), it may only append to the history and the photos and never delete a complaint: the
    # grants say so as well as the triggers.
    op.execute(
        """
        DO $revoke$
        BEGIN
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'smartcode_app') THEN
            REVOKE UPDATE, DELETE, TRUNCATE ON complaint_history, complaint_photos FROM smartcode_app;
            REVOKE DELETE, TRUNCATE ON complaints FROM smartcode_app;
          END IF;
        END $revoke$
        """
    )


def downgrade() -> None:
    op.drop_index("label_issues_revoked_idx", table_name="label_issues")
    op.drop_table("complaint_history")
    op.drop_table("complaint_photos")
    op.drop_table("complaints")
    op.execute("DROP FUNCTION smartcode_append_only()")
    op.execute("DROP FUNCTION smartcode_complaint_history()")
    op.execute("DROP FUNCTION smartcode_complaint_guard()")
