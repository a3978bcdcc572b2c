"""Webhook subscriptions, their deliveries and every attempt: delivery of the event outbox, at least once.

Revision ID: 0019_webhooks
Revises: 0018_disputes
Create Date: 2026-12-06

The delivery worker (``registry.webhook_worker``) keeps all of its state here, none in memory: an
outbox event is fanned out once (``event_outbox.fanned_out_at``) into one delivery per matching
subscription; a delivery is ``pending`` until it is ``delivered`` or ``dead`` (retries exhausted, or
the receiver answered 410). A worker claims a pending delivery by leasing it (``leased_until``,
``lease_token``); a worker that dies mid-request leaves a lease that runs out, and the delivery is
sent again. Each attempt, its status, latency and the start of the answer are kept for the log.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from alembic import op

revision: str = "0019_webhooks"
down_revision: str | None = "0018_disputes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")


def upgrade() -> None:
    # Events committed before this revision had no subscription to go to.
    op.add_column("event_outbox", sa.Column("fanned_out_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE event_outbox SET fanned_out_at = now()")
    op.create_index(
        "event_outbox_unfanned_idx", "event_outbox", ["id"], postgresql_where=sa.text("fanned_out_at IS NULL")
    )

    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events", ARRAY(sa.Text), nullable=False),
        # Kept as given: the worker needs the key itself to sign (docs/webhooks.md, "Security").
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("disabled_reason", sa.Text),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("url ~ '^https?://'", name="webhook_subscriptions_url_http"),
        sa.CheckConstraint("secret LIKE 'whsec_%'", name="webhook_subscriptions_secret_whsec"),
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "subscription_id", sa.BigInteger, sa.ForeignKey("webhook_subscriptions.id"), nullable=False
        ),
        sa.Column("event_id", sa.BigInteger, sa.ForeignKey("event_outbox.id"), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),  # the event's, for the order per subject
        sa.Column("state", sa.String(12), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        # Attempts since the delivery was (re)queued: the retry schedule counts these.
        sa.Column("round_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("leased_until", sa.DateTime(timezone=True)),
        sa.Column("lease_token", sa.Text),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("last_latency_ms", sa.Float),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("dead_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'dead')", name="webhook_deliveries_state"),
        sa.UniqueConstraint("subscription_id", "event_id", name="webhook_deliveries_once"),
    )
    # The worker's two questions: what is due, and is an earlier event of this subject still pending.
    op.create_index(
        "webhook_deliveries_due_idx",
        "webhook_deliveries",
        ["next_attempt_at", "id"],
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "webhook_deliveries_chain_idx",
        "webhook_deliveries",
        ["subscription_id", "subject", "event_id"],
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "webhook_deliveries_lease_idx",
        "webhook_deliveries",
        ["leased_until"],
        postgresql_where=sa.text("state = 'pending' AND leased_until IS NOT NULL"),
    )
    op.create_index("webhook_deliveries_log_idx", "webhook_deliveries", ["subscription_id", "id"])

    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "delivery_id",
            sa.BigInteger,
            sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("response", sa.Text),  # the first bytes of the answer, for the log
    )
    op.create_index("webhook_attempts_delivery_idx", "webhook_attempts", ["delivery_id", "id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    op.drop_index("event_outbox_unfanned_idx", table_name="event_outbox")
    op.drop_column("event_outbox", "fanned_out_at")
