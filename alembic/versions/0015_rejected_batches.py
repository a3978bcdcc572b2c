"""A batch whose every row was rejected has its own status, 'rejected'.

Revision ID: 0015_rejected_batches
Revises: 0014_map_tiles
Create Date: 2026-12-06

Such a batch wrote nothing; recording it as 'committed' told scripts and the batch list that the
file had been loaded. It is now 'rejected' (the CLI exits non-zero), beside 'refused' (--strict).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015_rejected_batches"
down_revision: str | None = "0014_map_tiles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("running", "committed", "refused", "failed", "rolled_back")
_AFTER = (*_BEFORE, "rejected")


def _constraint(statuses: tuple[str, ...]) -> None:
    op.drop_constraint("import_batches_status_known", "import_batches", type_="check")
    op.create_check_constraint("import_batches_status_known", "import_batches", f"status IN {statuses}")


def upgrade() -> None:
    _constraint(_AFTER)


def downgrade() -> None:
    # A rejected batch wrote nothing, as a refused one: that is the closest older status.
    op.execute("UPDATE import_batches SET status = 'refused' WHERE status = 'rejected'")
    _constraint(_BEFORE)
