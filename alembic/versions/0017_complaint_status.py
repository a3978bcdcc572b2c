"""Complaint status updates: accepted (签收), returned (退件), closed (办结); who and which update.

Revision ID: 0017_complaint_status
Revises: 0023_partitioned_resolution_log
Create Date: 2026-12-06

Widens ``complaints_status_known`` to the statuses the case system sends (issue 15), and records two
more things with each status, on the complaint (mutable, like the status) and in its history row:

- ``status_unit_id``: the unit that accepted or returned the complaint (the routed unit itself, or the
  unit the case system names); a return is a unit saying "not ours", and who said it matters to the
  dispute it opens and to the dispatch-accuracy figures.
- ``status_update_ref``: the client's own id of the update (Open311 ``update_id``), unique per
  complaint, so an update posted twice is recognised instead of applied twice.

The guard and history triggers of 0013 are replaced to allow and copy the two columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0017_complaint_status"
down_revision: str | None = "0023_partitioned_resolution_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("received", "accepted", "returned", "closed")
MUTABLE_0013 = ("status", "status_at", "status_by", "status_reason", "version")
MUTABLE = (*MUTABLE_0013, "status_unit_id", "status_update_ref")


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _guard(mutable: Sequence[str]) -> str:
    columns = ", ".join(f"'{c}'" for c in mutable)
    return f"""
        CREATE OR REPLACE FUNCTION smartcode_complaint_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'complaints are never deleted (complaint %)', OLD.reference;
          END IF;
          IF (to_jsonb(NEW) - ARRAY[{columns}]) IS DISTINCT FROM (to_jsonb(OLD) - ARRAY[{columns}]) THEN
            RAISE EXCEPTION 'complaint % is kept as it arrived: only its status changes', OLD.reference;
          END IF;
          RETURN NEW;
        END $$;
    """


def upgrade() -> None:
    op.drop_constraint("complaints_status_known", "complaints", type_="check")
    op.create_check_constraint("complaints_status_known", "complaints", f"status IN {_in(STATUSES)}")
    op.add_column("complaints", sa.Column("status_unit_id", sa.BigInteger))
    op.add_column("complaints", sa.Column("status_update_ref", sa.Text))
    op.add_column("complaint_history", sa.Column("unit_id", sa.BigInteger))
    op.add_column("complaint_history", sa.Column("update_ref", sa.Text))
    op.create_index(
        "complaint_history_update_ref_idx",
        "complaint_history",
        ["complaint_id", "update_ref"],
        unique=True,
        postgresql_where=sa.text("update_ref IS NOT NULL"),
    )
    # Open311 clients poll the updates by time.
    op.create_index("complaint_history_at_idx", "complaint_history", ["at"])
    op.execute(_guard(MUTABLE))
    op.execute(
        """
        CREATE OR REPLACE FUNCTION smartcode_complaint_history() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
             OR NEW.status_at IS DISTINCT FROM OLD.status_at THEN
            INSERT INTO complaint_history
              (complaint_id, version, at, actor, status, reason, unit_id, update_ref)
            VALUES (NEW.id, NEW.version, NEW.status_at, NEW.status_by, NEW.status, NEW.status_reason,
                    NEW.status_unit_id, NEW.status_update_ref);
          END IF;
          RETURN NULL;
        END $$;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION smartcode_complaint_history() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
             OR NEW.status_at IS DISTINCT FROM OLD.status_at THEN
            INSERT INTO complaint_history (complaint_id, version, at, actor, status, reason)
            VALUES (NEW.id, NEW.version, NEW.status_at, NEW.status_by, NEW.status, NEW.status_reason);
          END IF;
          RETURN NULL;
        END $$;
        """
    )
    op.execute(_guard(MUTABLE_0013))
    op.drop_index("complaint_history_at_idx", table_name="complaint_history")
    op.drop_index("complaint_history_update_ref_idx", table_name="complaint_history")
    op.drop_column("complaint_history", "update_ref")
    op.drop_column("complaint_history", "unit_id")
    op.drop_column("complaints", "status_update_ref")
    op.drop_column("complaints", "status_unit_id")
    op.drop_constraint("complaints_status_known", "complaints", type_="check")
    # Complaints already accepted, returned or closed stay as they are: the narrower check holds for
    # new rows only (NOT VALID), rather than rewriting history to go back.
    op.execute(
        "ALTER TABLE complaints ADD CONSTRAINT complaints_status_known "
        "CHECK (status IN ('received')) NOT VALID"
    )
