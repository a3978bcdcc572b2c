"""The changes an upheld dispute makes carry the dispute's id in a column, not only in their reason text.

Revision ID: 0027_history_dispute_link
Revises: 0025_addresses
Create Date: 2026-12-06

An upheld dispute (异议成立, migration 0018) corrects the registry: an asset's roles are handed over,
or a responsibility rule is closed or replaced. Until now the dispute's id was only written into the
reason ("异议 #12 成立 …"), so "which changes came from dispute 12" meant parsing prose. From here on:

* ``assets.change_dispute_id``: the dispute behind the asset's current version. Like the rest of the
  current version's record (0004) it is set by the before-update trigger, from the transaction-local
  context ``smartcode.dispute_id`` (``registry.db.set_change_context``); any later change without one
  clears it. It has no foreign key, as the asset's other references have none since 0004 (a row-level
  check costs every row of an import); the trigger checks that the dispute exists instead, which
  costs only the rare rows that name one.
* ``asset_history.dispute_id``: the same, kept with the version when the update trigger moves it
  into the append-only history (0011: the service role may only insert there). A foreign key.
* ``responsibility_rules.dispute_id``: the dispute that created this rule version (a replacement),
  and ``ended_by_dispute_id``: the dispute that ended it (closed, or closed by its replacement).

Rows written before this migration keep NULL: their reasons are free text, and reading ids out of
them would guess. Partial indexes answer "which changes came from dispute n" and cost nothing for
the rows that name no dispute.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic.script import ScriptDirectory

from alembic import context, op

revision: str = "0027_history_dispute_link"
down_revision: str | None = "0025_addresses"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE_UPDATE = """
CREATE OR REPLACE FUNCTION assets_before_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
BEGIN
  IF NEW.code <> OLD.code OR NEW.id <> OLD.id THEN
    RAISE EXCEPTION 'the smart code of asset % never changes', OLD.code
      USING ERRCODE = 'check_violation';
  END IF;
  NEW.version := OLD.version + 1;
  NEW.changed_at := now();
  NEW.changed_by := coalesce(smartcode_ctx('actor'), session_user);
  NEW.change_reason := smartcode_ctx('reason');
  NEW.change_action := coalesce(smartcode_ctx('action'), 'update');
  NEW.batch_id := smartcode_ctx('batch_id')::bigint;
  NEW.change_dispute_id := smartcode_ctx('dispute_id')::bigint;
  IF NEW.change_dispute_id IS NOT NULL
     AND NOT EXISTS (SELECT FROM disputes d WHERE d.id = NEW.change_dispute_id) THEN
    RAISE EXCEPTION 'asset %: there is no dispute %', OLD.code, NEW.change_dispute_id
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  started := smartcode_period_start(OLD.responsible_since, OLD.installed_on);
  IF (NEW.owner_id, NEW.maintainer_id, NEW.supervisor_id)
     IS DISTINCT FROM (OLD.owner_id, OLD.maintainer_id, OLD.supervisor_id) THEN
    -- The old units' period ends when the change takes effect; one that starts later (a legacy
    -- future installation date) ends just after its start, so periods stay ordered.
    NEW.responsible_since := greatest(coalesce(smartcode_ctx('effective_at')::timestamptz, now()),
                                      started + interval '1 microsecond');
  ELSIF OLD.responsible_since IS NULL AND OLD.installed_on IS NOT NULL THEN
    -- Fixed from now on: a later edit of the installation date does not move the period.
    NEW.responsible_since := started;
  ELSE
    NEW.responsible_since := OLD.responsible_since;
  END IF;
  RETURN NEW;
END $$
"""

_AFTER_UPDATE = """
CREATE OR REPLACE FUNCTION assets_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- The replaced versions, as they were recorded (their own who, when, why, which dispute).
  EXECUTE format($q$
    INSERT INTO asset_history
           (asset_id, version, recorded_at, actor, reason, action, batch_id, dispute_id, data, geom)
    SELECT n.id, n.version, n.changed_at, n.changed_by, n.change_reason, n.change_action, n.batch_id,
           n.change_dispute_id, %s, n.geom
    FROM old_rows n $q$, assets_history_data_sql());
  -- The closed periods of the assets whose units changed, recorded with the change that closed them.
  INSERT INTO asset_responsibility
         (asset_id, owner_id, maintainer_id, supervisor_id, valid_from, valid_to, recorded_at, actor, reason)
  SELECT o.id, o.owner_id, o.maintainer_id, o.supervisor_id,
         smartcode_period_start(o.responsible_since, o.installed_on), n.responsible_since,
         n.changed_at, n.changed_by, n.change_reason
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE (n.owner_id, n.maintainer_id, n.supervisor_id)
        IS DISTINCT FROM (o.owner_id, o.maintainer_id, o.supervisor_id);
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE assets ADD COLUMN change_dispute_id bigint")
    op.execute("ALTER TABLE asset_history ADD COLUMN dispute_id bigint REFERENCES disputes(id)")
    op.execute(
        "ALTER TABLE responsibility_rules ADD COLUMN dispute_id bigint REFERENCES disputes(id), "
        "ADD COLUMN ended_by_dispute_id bigint REFERENCES disputes(id)"
    )
    for table, column in (
        ("assets", "change_dispute_id"),
        ("asset_history", "dispute_id"),
        ("responsibility_rules", "dispute_id"),
        ("responsibility_rules", "ended_by_dispute_id"),
    ):
        op.execute(f"CREATE INDEX {table}_{column}_idx ON {table} ({column}) WHERE {column} IS NOT NULL")
    op.execute(_BEFORE_UPDATE)
    op.execute(_AFTER_UPDATE)


def downgrade() -> None:
    # The trigger bodies as 0004 left them (that file is their source of truth).
    previous = ScriptDirectory.from_config(context.config).get_revision("0004_current_row_versions").module
    op.execute(previous._BEFORE_UPDATE)
    op.execute(previous._AFTER_UPDATE)
    op.execute("ALTER TABLE responsibility_rules DROP COLUMN dispute_id, DROP COLUMN ended_by_dispute_id")
    op.execute("ALTER TABLE asset_history DROP COLUMN dispute_id")
    op.execute("ALTER TABLE assets DROP COLUMN change_dispute_id")
