"""Printed QR labels: which label each asset was given, and the ones withdrawn.

Revision ID: 0012_labels
Revises: 0009_import_jobs
Create Date: 2026-12-06

A label is identified by its asset and edition. Printing an asset that already has a live label
prints that label again (same key, same edition, so the same URL); a new edition is made only after
the live one was revoked (replaced, stolen, counterfeit, damaged) or its key was retired. Revoking
an edition voids every copy of it, including counterfeits of the same URL. The signing keys are not
here: they stay in a private file, so a dump of this table does not let anyone print labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012_labels"
down_revision: str | None = "0009_import_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REVOKE_KINDS = ("replaced", "stolen", "counterfeit", "damaged", "key_retired", "other")


def upgrade() -> None:
    op.create_table(
        "label_issues",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        # No foreign key to assets: the direct load (importers/direct_load.py) TRUNCATEs the asset tables
        # and drops and rebuilds their keys, which a referencing table would block. Assets are never
        # deleted (they are decommissioned), so the id stays good; the code is the label's real link.
        sa.Column("asset_id", sa.BigInteger, nullable=False),
        sa.Column("code", sa.String(17), nullable=False),
        sa.Column("edition", sa.Integer, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("printed_count", sa.Integer, nullable=False, server_default="1"),
        sa.Column(
            "last_printed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_by", sa.Text),
        sa.Column("revoke_kind", sa.Text),
        sa.Column("revoke_reason", sa.Text),
        sa.CheckConstraint("edition >= 1", name="label_issues_edition_positive"),
        sa.CheckConstraint(f"revoke_kind IS NULL OR revoke_kind IN {REVOKE_KINDS}", name="label_revoke_kind"),
        sa.CheckConstraint(
            "(revoked_at IS NULL) = (revoked_by IS NULL AND revoke_kind IS NULL)",
            name="label_issues_revocation_complete",
        ),
    )
    # A scan looks a label up by code and edition; each edition exists once per code.
    op.create_index("label_issues_code_edition_key", "label_issues", ["code", "edition"], unique=True)
    # At most one live label per asset: printing again reuses it.
    op.create_index(
        "label_issues_live_key",
        "label_issues",
        ["asset_id"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("label_issues")
