"""Proposals of responsibility, and the serial counters an import batch moved.

Revision ID: 0010_access_proposals
Revises: 0008_batch_digest_when_read
Create Date: 2026-12-06

A unit token that hands its asset to another unit, or registers an asset naming another unit as
maintainer or supervisor, no longer changes that unit's responsibilities by itself: the change is a
proposal the receiving unit (or an administrator) accepts or declines (registry/proposals.py).

An import batch records the value of each serial counter it moved before it moved it, so rolling
the batch back puts the counters back (registry/serials.py, importers/batches.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision: str = "0010_access_proposals"
down_revision: str | None = "0009_import_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "responsibility_proposals",
        sa.Column("id", sa.BigInteger, primary_key=True),
        # No foreign key to assets: assets are never deleted, and the direct load of an empty registry
        # truncates them (importers/direct_load.py), which a referencing key would forbid.
        sa.Column("asset_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("changes", JSONB, nullable=False),
        sa.Column("from_unit_id", sa.BigInteger, sa.ForeignKey("units.id")),
        sa.Column("to_unit_id", sa.BigInteger, sa.ForeignKey("units.id"), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True)),
        sa.Column("reason", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("proposed_by", sa.Text, nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decision_note", sa.Text),
        sa.CheckConstraint("kind IN ('hand_over', 'registration')", name="proposals_kind_known"),
        sa.CheckConstraint("status IN ('pending', 'accepted', 'declined')", name="proposals_status_known"),
        sa.CheckConstraint(
            "(status = 'pending') = (decided_at IS NULL)", name="proposals_decided_when_not_pending"
        ),
    )
    op.create_index(
        "proposals_pending_to_unit_idx",
        "responsibility_proposals",
        ["to_unit_id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("proposals_asset_idx", "responsibility_proposals", ["asset_id"])
    op.create_table(
        "import_batch_serials",
        sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("import_batches.id"), primary_key=True),
        sa.Column("county_code", sa.String(6), primary_key=True),
        sa.Column("class_code", sa.String(4), primary_key=True),
        sa.Column("next_serial_before", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("import_batch_serials")
    op.drop_index("proposals_asset_idx", table_name="responsibility_proposals")
    op.drop_index("proposals_pending_to_unit_idx", table_name="responsibility_proposals")
    op.drop_table("responsibility_proposals")
