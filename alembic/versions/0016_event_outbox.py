"""The event outbox: every event the case system may hear of, written with the change that caused it.

Revision ID: 0016_event_outbox
Revises: 0015_rejected_batches
Create Date: 2026-12-06

A change (a complaint recorded, its status moved, a dispute decided, an asset handed over) appends
its event row in the same transaction, so a rolled-back change never emits and a committed one is
never lost (the transactional outbox). Delivery (webhooks, issue 15) reads this table after the
commit; ``pg_notify('smartcode_events')`` wakes a waiting worker at once instead of at its next poll.

``subject`` is what an event is about (an asset code, else a complaint reference or dispute id):
deliveries keep the order of events per subject.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision: str = "0016_event_outbox"
down_revision: str | None = "0015_rejected_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("type", sa.String(48), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("data", JSONB, nullable=False),
    )
    op.create_index("event_outbox_subject_idx", "event_outbox", ["subject", "id"])


def downgrade() -> None:
    op.drop_table("event_outbox")
