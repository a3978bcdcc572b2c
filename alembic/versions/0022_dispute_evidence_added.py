"""Evidence added to a pending dispute (补充证据), each addition a row of the dispute's history.

Revision ID: 0022_dispute_evidence_added
Revises: 0021_outbox_retention
Create Date: 2026-12-06

A dispute gathers evidence while it waits for its decision: the objecting unit finds the hand-over
contract a day later, the reviewer asks for a site photo. An addition moves the dispute's version by
one (a reviewer decides on the evidence they saw; a stale version is refused as for any other
change) without moving its state, and is recorded in ``dispute_history`` as an ``evidence`` entry:
who, when, an optional note and the files added. The service writes that entry itself (the state
trigger has no way to know who added what), so:

* the history trigger writes a row only for the opening and for state moves (``event = 'state'``);
* a deferred constraint trigger checks at commit that every version of a dispute has its history
  row, so a version moved without an entry cannot be committed;
* ``(dispute_id, version)`` is unique in the history: one entry per version;
* evidence can be inserted only while the dispute is open or under review (a trigger, besides the
  service's check under the row lock).

The history stays append-only (migration 0018). A downgrade keeps the evidence entries as rows
whose reason is the note: the history is never rewritten.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision: str = "0022_dispute_evidence_added"
down_revision: str | None = "0021_outbox_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The 0018 trigger body, restored on downgrade.
_HISTORY_0018 = """
CREATE OR REPLACE FUNCTION smartcode_dispute_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO dispute_history (dispute_id, version, at, actor, state, reason, decision)
  VALUES (NEW.id, NEW.version, NEW.state_at, NEW.state_by, NEW.state,
          CASE WHEN TG_OP = 'INSERT' THEN NEW.reason ELSE NEW.state_reason END,
          CASE WHEN TG_OP = 'INSERT' OR NEW.decision IS NOT DISTINCT FROM OLD.decision
               THEN NULL ELSE NEW.decision END);
  RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.add_column(
        "dispute_history", sa.Column("event", sa.String(16), nullable=False, server_default="state")
    )
    op.add_column("dispute_history", sa.Column("evidence", JSONB))
    op.create_check_constraint(
        "dispute_history_event_known", "dispute_history", "event IN ('state', 'evidence')"
    )
    op.create_index(
        "dispute_history_version_unique", "dispute_history", ["dispute_id", "version"], unique=True
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION smartcode_dispute_history() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          -- Only the version moved: evidence was added, and its writer records who added what.
          IF TG_OP = 'UPDATE' AND NEW.state = OLD.state AND NEW.state_at = OLD.state_at THEN
            RETURN NULL;
          END IF;
          INSERT INTO dispute_history (dispute_id, version, at, actor, state, reason, decision)
          VALUES (NEW.id, NEW.version, NEW.state_at, NEW.state_by, NEW.state,
                  CASE WHEN TG_OP = 'INSERT' THEN NEW.reason ELSE NEW.state_reason END,
                  CASE WHEN TG_OP = 'INSERT' OR NEW.decision IS NOT DISTINCT FROM OLD.decision
                       THEN NULL ELSE NEW.decision END);
          RETURN NULL;
        END $$;

        CREATE FUNCTION smartcode_dispute_history_complete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NOT EXISTS (SELECT FROM dispute_history WHERE dispute_id = NEW.id AND version = NEW.version) THEN
            RAISE EXCEPTION 'dispute % version % has no history entry: every change is recorded',
              NEW.id, NEW.version;
          END IF;
          RETURN NULL;
        END $$;

        CREATE CONSTRAINT TRIGGER disputes_history_complete AFTER UPDATE ON disputes
          DEFERRABLE INITIALLY DEFERRED
          FOR EACH ROW EXECUTE FUNCTION smartcode_dispute_history_complete();

        CREATE FUNCTION smartcode_dispute_evidence_pending() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          current text;
        BEGIN
          SELECT state INTO current FROM disputes WHERE id = NEW.dispute_id;
          IF current NOT IN ('open', 'under_review') THEN
            RAISE EXCEPTION 'dispute % is %: evidence is added only before its decision',
              NEW.dispute_id, current;
          END IF;
          RETURN NEW;
        END $$;

        CREATE TRIGGER dispute_evidence_pending BEFORE INSERT ON dispute_evidence
          FOR EACH ROW EXECUTE FUNCTION smartcode_dispute_evidence_pending();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER dispute_evidence_pending ON dispute_evidence")
    op.execute("DROP FUNCTION smartcode_dispute_evidence_pending()")
    op.execute("DROP TRIGGER disputes_history_complete ON disputes")
    op.execute("DROP FUNCTION smartcode_dispute_history_complete()")
    op.execute(_HISTORY_0018)
    op.drop_index("dispute_history_version_unique", table_name="dispute_history")
    op.drop_constraint("dispute_history_event_known", "dispute_history", type_="check")
    op.drop_column("dispute_history", "evidence")
    op.drop_column("dispute_history", "event")
