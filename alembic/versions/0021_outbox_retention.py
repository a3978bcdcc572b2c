"""Retention of the outbox: the index that lets old events be deleted without reading the whole log.

Revision ID: 0021_outbox_retention
Revises: 0020_hotspots
Create Date: 2026-12-06

The delivery worker and ``smartcode db events --prune`` delete outbox events older than
``SMARTCODE_WEBHOOKS_KEEP_DAYS`` together with their deliveries (``registry.outbox_retention``).
Deleting an event makes PostgreSQL look for deliveries that still reference it (the foreign key
``webhook_deliveries.event_id``), and the prune asks which deliveries an event has; the only index
holding ``event_id`` leads with ``subscription_id``, so each of those questions would read all of
``webhook_deliveries``. One index on ``event_id`` answers both.

No grant: ``smartcode_app`` already has DELETE on the outbox and the delivery tables (they are a
queue and its log, not the registry's memory; migration 0011's default privileges), so the worker
prunes as the service role.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021_outbox_retention"
down_revision: str | None = "0020_hotspots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("webhook_deliveries_event_idx", "webhook_deliveries", ["event_id"])


def downgrade() -> None:
    op.drop_index("webhook_deliveries_event_idx", table_name="webhook_deliveries")
