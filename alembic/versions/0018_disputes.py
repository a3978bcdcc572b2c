"""Ownership disputes (异议): a unit objects to what the registry makes it responsible for.

Revision ID: 0018_disputes
Revises: 0017_complaint_status
Create Date: 2026-12-06

A dispute names its subject (an asset by code, a responsibility rule by id, or a complaint by
reference), the objecting unit, its reason and evidence, and moves open -> under_review -> upheld /
rejected, or withdrawn before a decision. What it is about and who raised it never change after it
is opened; only the state columns move, each move a row of ``dispute_history`` written by a trigger
(as for complaints, migration 0013), and that table and the evidence refuse updates and deletes.

Evidence (photos and PDF documents) is kept in the database like complaint photos: written in the
transaction that opens the dispute, seen by every API process, included in backups.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from alembic import op

revision: str = "0018_disputes"
down_revision: str | None = "0017_complaint_status"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUBJECT_KINDS = ("asset", "rule", "complaint")
STATES = ("open", "under_review", "upheld", "rejected", "withdrawn")
EVIDENCE_TYPES = ("image/jpeg", "image/png", "image/webp", "application/pdf")
# The columns a state change may touch; what the dispute is about stays as it was opened.
MUTABLE = ("state", "state_at", "state_by", "state_reason", "decided_at", "decided_by", "decision", "version")


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.Text, nullable=False),
        # What the subject leads to, kept for the ledger's filters and the analysis by class and zone.
        sa.Column("asset_code", sa.String(17)),
        sa.Column("rule_id", sa.BigInteger),
        sa.Column("complaint_id", sa.BigInteger, sa.ForeignKey("complaints.id")),
        sa.Column("class_code", sa.String(8)),
        sa.Column("zone_level", sa.String(16)),
        sa.Column("zone_name", sa.Text),
        sa.Column("unit_id", sa.BigInteger, sa.ForeignKey("units.id"), nullable=False),
        sa.Column("roles", ARRAY(sa.Text), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("opened_by", sa.Text, nullable=False),
        sa.Column("due_on", sa.Date, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="open"),
        sa.Column("state_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("state_by", sa.Text, nullable=False),
        sa.Column("state_reason", sa.Text),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_by", sa.Text),
        sa.Column("decision", JSONB),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.CheckConstraint(f"subject_kind IN {_in(SUBJECT_KINDS)}", name="disputes_subject_known"),
        sa.CheckConstraint(f"state IN {_in(STATES)}", name="disputes_state_known"),
    )
    # One pending objection per unit and subject: a second one would split the evidence and the answer.
    op.create_index(
        "disputes_pending_unique",
        "disputes",
        ["subject_kind", "subject_id", "unit_id"],
        unique=True,
        postgresql_where=sa.text("state IN ('open', 'under_review')"),
    )
    op.create_index("disputes_state_idx", "disputes", ["state", "due_on"])
    op.create_index("disputes_unit_idx", "disputes", ["unit_id", "id"])
    op.create_index("disputes_asset_idx", "disputes", ["asset_code", "id"])
    op.create_index("disputes_opened_idx", "disputes", ["opened_at"])

    op.create_table(
        "dispute_evidence",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("dispute_id", sa.BigInteger, sa.ForeignKey("disputes.id"), nullable=False),
        sa.Column("seq", sa.SmallInteger, nullable=False),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("added_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.UniqueConstraint("dispute_id", "seq", name="dispute_evidence_seq_unique"),
        sa.CheckConstraint(f"content_type IN {_in(EVIDENCE_TYPES)}", name="dispute_evidence_type_known"),
    )

    op.create_table(
        "dispute_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("dispute_id", sa.BigInteger, sa.ForeignKey("disputes.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("decision", JSONB),
    )
    op.create_index("dispute_history_dispute_idx", "dispute_history", ["dispute_id", "id"])

    mutable = ", ".join(f"'{c}'" for c in MUTABLE)
    # smartcode_append_only() comes from migration 0013.
    op.execute(
        f"""
        CREATE FUNCTION smartcode_dispute_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'disputes are never deleted (dispute %)', OLD.id;
          END IF;
          IF (to_jsonb(NEW) - ARRAY[{mutable}]) IS DISTINCT FROM (to_jsonb(OLD) - ARRAY[{mutable}]) THEN
            RAISE EXCEPTION 'dispute % is kept as it was opened: only its state changes', OLD.id;
          END IF;
          IF NEW.version <> OLD.version + 1 THEN
            RAISE EXCEPTION 'dispute %: each change moves the version by one', OLD.id;
          END IF;
          RETURN NEW;
        END $$;

        CREATE FUNCTION smartcode_dispute_history() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO dispute_history (dispute_id, version, at, actor, state, reason, decision)
          VALUES (NEW.id, NEW.version, NEW.state_at, NEW.state_by, NEW.state,
                  CASE WHEN TG_OP = 'INSERT' THEN NEW.reason ELSE NEW.state_reason END,
                  CASE WHEN TG_OP = 'INSERT' OR NEW.decision IS NOT DISTINCT FROM OLD.decision
                       THEN NULL ELSE NEW.decision END);
          RETURN NULL;
        END $$;

        CREATE TRIGGER disputes_guard BEFORE UPDATE OR DELETE ON disputes
          FOR EACH ROW EXECUTE FUNCTION smartcode_dispute_guard();
        CREATE TRIGGER disputes_history AFTER INSERT OR UPDATE ON disputes
          FOR EACH ROW EXECUTE FUNCTION smartcode_dispute_history();
        CREATE TRIGGER dispute_history_append_only BEFORE UPDATE OR DELETE ON dispute_history
          FOR EACH ROW EXECUTE FUNCTION smartcode_append_only();
        CREATE TRIGGER dispute_evidence_append_only BEFORE UPDATE OR DELETE ON dispute_evidence
          FOR EACH ROW EXECUTE FUNCTION smartcode_append_only();
        """
    )
    op.execute(
        """
        DO $revoke$
        BEGIN
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'smartcode_app') THEN
            REVOKE UPDATE, DELETE, TRUNCATE ON dispute_history, dispute_evidence FROM smartcode_app;
            REVOKE DELETE, TRUNCATE ON disputes FROM smartcode_app;
          END IF;
        END $revoke$
        """
    )


def downgrade() -> None:
    op.drop_table("dispute_history")
    op.drop_table("dispute_evidence")
    op.drop_table("disputes")
    op.execute("DROP FUNCTION smartcode_dispute_history()")
    op.execute("DROP FUNCTION smartcode_dispute_guard()")
