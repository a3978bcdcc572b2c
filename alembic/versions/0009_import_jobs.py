"""Import jobs live in a table: queued uploads and their progress survive a restart of the server.

Revision ID: 0009_import_jobs
Revises: 0008_batch_digest_when_read
Create Date: 2026-12-06

Until now the API kept its import jobs in memory: a restart forgot every queued upload and left a
running one's folder behind. A job is now a row. The server's worker claims queued rows one at a
time (``FOR UPDATE SKIP LOCKED``, so several servers on one database never take the same job) and
holds a session advisory lock on the row's ``seq`` while it runs it; at start-up a row still
``running`` whose lock nobody holds belonged to a server that died, and is marked ``interrupted``.

``upload_path`` is where the file waits on the server; it is never shown to callers.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision: str = "0009_import_jobs"
down_revision: str | None = "0008_batch_digest_when_read"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_STATES = ("queued", "running", "done", "failed", "interrupted")


def upgrade() -> None:
    op.create_table(
        "import_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("outcome", sa.String(16)),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("upload_path", sa.Text, nullable=False),
        sa.Column("options", JSONB, nullable=False, server_default="{}"),
        sa.Column("actor", JSONB, nullable=False),
        sa.Column("actor_name", sa.Text, nullable=False),
        sa.Column("unit_id", sa.BigInteger),
        sa.Column("progress", JSONB, nullable=False, server_default="{}"),
        sa.Column("batch_id", sa.BigInteger),
        sa.Column("report", JSONB),
        sa.Column("error", JSONB),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(f"state IN {JOB_STATES}", name="import_jobs_state_known"),
    )
    # The worker's question, "the oldest queued job", and the listing's, "the newest jobs".
    op.create_index(
        "import_jobs_queued_idx", "import_jobs", ["seq"], postgresql_where=sa.text("state = 'queued'")
    )
    op.create_index("import_jobs_created_idx", "import_jobs", ["created_at"])


def downgrade() -> None:
    op.drop_table("import_jobs")
