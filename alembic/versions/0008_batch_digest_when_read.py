"""A batch's file digest is recorded when the batch ends.

Revision ID: 0008_batch_digest_when_read
Revises: 0007_unit_roles_index
Create Date: 2026-11-22

The sha256 of an imported file is only recorded; computing it before the import started held up a
400 MB file's first write by 0.3-0.4 s. It is now computed on a thread beside the import, when a core
is free for it (importers.pipeline._Digest), and written with the batch's outcome: NULL while the
import runs, and for one that died (an 'interrupted' batch).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_batch_digest_when_read"
down_revision: str | None = "0007_unit_roles_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("import_batches", "file_sha256", nullable=True)


def downgrade() -> None:
    # A batch that died before its digest was known gets an empty one, as NOT NULL requires.
    op.execute("UPDATE import_batches SET file_sha256 = '' WHERE file_sha256 IS NULL")
    op.alter_column("import_batches", "file_sha256", nullable=False)
