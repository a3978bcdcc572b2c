"""The complaint guard ignores ``geom_m``, the generated column 0020 added.

Revision ID: 0024_complaint_guard_generated
Revises: 0022_dispute_evidence_added
Create Date: 2026-12-06

The guard (migrations 0013, 0017) refuses any change to a complaint but its status, by comparing the
row as JSON before and after. Migration 0020 added ``complaints.geom_m``, generated from ``geom``; in a
BEFORE trigger PostgreSQL has not computed generated columns yet, so ``NEW.geom_m`` is NULL and every
status change (签收, 退件, 办结) of a complaint with a location was refused as an edit: a 500 for
every scan-page report and every Open311 request placed by ``lat``/``long``. ``geom_m`` follows
``geom``, which the guard still compares, so leaving it out of the comparison lets nothing else through.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0024_complaint_guard_generated"
down_revision: str | None = "0022_dispute_evidence_added"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns a status change may set (0017), and the generated column left out of the comparison.
_MUTABLE_0017 = (
    "status",
    "status_at",
    "status_by",
    "status_reason",
    "version",
    "status_unit_id",
    "status_update_ref",
)
_GENERATED = ("geom_m",)


def _guard(ignored: Sequence[str]) -> str:
    columns = ", ".join(f"'{c}'" for c in ignored)
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
    op.execute(_guard((*_MUTABLE_0017, *_GENERATED)))


def downgrade() -> None:
    op.execute(_guard(_MUTABLE_0017))
