"""Retention of the event outbox and the webhook delivery log: old events go, owed ones never.

An outbox event is deleted, with its deliveries and their attempts, when all of these hold:

- it happened more than ``SMARTCODE_WEBHOOKS_KEEP_DAYS`` ago (``occurred_at``);
- it has been fanned out (an event no worker has seen yet has deliveries still to come);
- none of its deliveries is pending for a subscription that is not deleted (a disabled subscription
  sends what waited when it is enabled again), nor leased by a worker right now;
- none of its deliveries was created, delivered or declared dead within the keep period, so the log
  an administrator may still want (to see what happened, or to redeliver) stays whole. A delivery
  declared dead is not owed: after the keep period it goes with its event, and cannot be redelivered.

An event that matched no subscription has no deliveries and goes after the keep period. The worker
prunes at start and every :data:`EVERY_S` seconds (:func:`keep_pruning`); ``smartcode db events
--prune`` does the same at once (:func:`prune`). Either walks the outbox by id in batches of
:data:`BATCH` events, one short transaction each, and writes one audit entry with the counts.
Two prunes at once are harmless: a row one deletes the other finds gone and does not count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from typing import Any

from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine, text

from registry import audit
from registry.db import Actor, transaction

log = logging.getLogger("smartcode.webhooks")

BATCH = 1000  # events looked at per transaction
EVERY_S = 3600.0  # the worker's schedule
_PAUSE_S = 0.05  # between the worker's batches, so deliveries are not starved of connections

_CUTOFF = "SELECT statement_timestamp() - make_interval(days => %(keep)s) AS cutoff"

# Before a batch decides, it locks the old events it may delete and their deliveries. A redelivery
# (an administrator sending an old event again) that committed while these waited is then seen by the
# batch statement, whose snapshot begins after them, and keeps its event; one that comes later waits
# for the batch and finds the event gone (its insert fails on the foreign key instead of being deleted
# unseen). Without the locks the batch's DELETE would wait for the redelivery and then delete the row it
# had just set pending: a DELETE rechecks only its join condition after a wait, not the NOT EXISTS.
_OLD_OF_BATCH = """
SELECT b.id FROM (SELECT id, occurred_at FROM event_outbox WHERE id > %(after)s ORDER BY id LIMIT %(n)s) b
WHERE b.occurred_at < %(cutoff)s
"""
_LOCK_EVENTS = f"SELECT 1 FROM event_outbox WHERE id IN ({_OLD_OF_BATCH}) ORDER BY id FOR UPDATE"
_LOCK_DELIVERIES = (
    f"SELECT 1 FROM webhook_deliveries WHERE event_id IN ({_OLD_OF_BATCH}) ORDER BY id FOR UPDATE"
)

# One batch: the next BATCH events by id, the old ones among them that nothing needs, deleted with their
# deliveries and attempts (the attempts' cascade would do it too; deleting them here counts them).
_BATCH_SQL = """
WITH batch AS (
    SELECT id, occurred_at, fanned_out_at FROM event_outbox WHERE id > %(after)s ORDER BY id LIMIT %(n)s
), edge AS (
    -- Ids grow with time, but occurred_at is when the writing transaction began: rather than trust the
    -- order past the first event inside the keep period, stop there (older ones after it wait a run).
    SELECT min(id) AS id FROM batch WHERE occurred_at >= %(cutoff)s
), old AS (
    SELECT b.id, b.fanned_out_at FROM batch b, edge WHERE edge.id IS NULL OR b.id < edge.id
), free AS (
    SELECT o.id FROM old o
    WHERE o.fanned_out_at IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
          WHERE d.event_id = o.id
            AND ((d.state = 'pending' AND (s.deleted_at IS NULL OR d.leased_until > now()))
                 OR greatest(d.created_at, d.delivered_at, d.dead_at) >= %(cutoff)s))
), gone_attempts AS (
    DELETE FROM webhook_attempts a USING webhook_deliveries d, free
    WHERE a.delivery_id = d.id AND d.event_id = free.id
    RETURNING 1
), gone_deliveries AS (
    DELETE FROM webhook_deliveries d USING free WHERE d.event_id = free.id RETURNING 1
), gone_events AS (
    DELETE FROM event_outbox e USING free WHERE e.id = free.id RETURNING 1
)
SELECT (SELECT count(*) FROM gone_events) AS events,
       (SELECT count(*) FROM gone_deliveries) AS deliveries,
       (SELECT count(*) FROM gone_attempts) AS attempts,
       (SELECT count(*) FROM old) - (SELECT count(*) FROM free) AS kept,
       (SELECT max(id) FROM old) AS last_old,
       (SELECT count(*) FROM batch) AS looked_at,
       (SELECT id FROM edge) IS NOT NULL AS reached_recent
"""


@dataclasses.dataclass
class Pruned:
    """What a prune removed, and how many events past the keep period it kept because they are needed."""

    keep_days: int
    cutoff: dt.datetime | None = None
    events: int = 0
    deliveries: int = 0
    attempts: int = 0
    kept: int = 0

    def add(self, row: Any) -> int | None:
        """Count one batch's result; the id to continue after, or None when the walk is over."""
        events, deliveries, attempts, kept, last_old, looked_at, reached_recent = row
        self.events += int(events)
        self.deliveries += int(deliveries)
        self.attempts += int(attempts)
        self.kept += int(kept)
        if reached_recent or looked_at < BATCH or last_old is None:
            return None
        return int(last_old)

    def details(self) -> dict[str, Any]:
        """The audit entry's details."""
        return {
            "keep_days": self.keep_days,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "events": self.events,
            "deliveries": self.deliveries,
            "attempts": self.attempts,
            "kept": self.kept,
        }


def _reason(keep_days: int) -> str:
    return f"retention: {keep_days} days (SMARTCODE_WEBHOOKS_KEEP_DAYS)"


def prune(engine: Engine, actor: Actor, keep_days: int) -> Pruned:
    """Delete the events past ``keep_days`` that nothing needs, with their log; 0 keeps everything."""
    done = Pruned(keep_days)
    if keep_days <= 0:
        return done
    after: int | None = 0
    while after is not None:
        with engine.begin() as conn:
            if done.cutoff is None:
                done.cutoff = conn.exec_driver_sql(_CUTOFF, {"keep": keep_days}).scalar_one()
            params = {"after": after, "n": BATCH, "cutoff": done.cutoff}
            conn.exec_driver_sql(_LOCK_EVENTS, params)
            conn.exec_driver_sql(_LOCK_DELIVERIES, params)
            after = done.add(conn.exec_driver_sql(_BATCH_SQL, params).one())
    if done.events:
        with transaction(engine) as session:
            audit.record(
                session, actor, "prune", "event_outbox", "retention", _reason(keep_days), done.details()
            )
    return done


async def prune_async(pool: AsyncConnectionPool[Any], actor: Actor, keep_days: int) -> Pruned:
    """:func:`prune` on the worker's pool: a connection per batch, a short pause between batches."""
    done = Pruned(keep_days)
    if keep_days <= 0:
        return done
    after: int | None = 0
    while after is not None:
        async with pool.connection() as conn, conn.transaction():
            if done.cutoff is None:
                done.cutoff = (await (await conn.execute(_CUTOFF, {"keep": keep_days})).fetchone())[0]
            params = {"after": after, "n": BATCH, "cutoff": done.cutoff}
            await conn.execute(_LOCK_EVENTS, params)
            await conn.execute(_LOCK_DELIVERIES, params)
            after = done.add(await (await conn.execute(_BATCH_SQL, params)).fetchone())
        if after is not None:
            await asyncio.sleep(_PAUSE_S)
    if done.events:
        async with pool.connection() as conn:
            await audit.record_async(
                conn, actor, "prune", "event_outbox", "retention", _reason(keep_days), done.details()
            )
    return done


async def keep_pruning(
    pool: AsyncConnectionPool[Any], actor: Actor, keep_days: int, every_s: float = EVERY_S
) -> None:
    """Prune now and then every ``every_s`` seconds until cancelled; a failed round waits for the next."""
    if keep_days <= 0:
        return
    while True:
        try:
            done = await prune_async(pool, actor, keep_days)
            if done.events:
                log.info(
                    "%s: pruned %d events, %d deliveries, %d attempts past %d days (%d kept: still needed)",
                    actor.name,
                    done.events,
                    done.deliveries,
                    done.attempts,
                    keep_days,
                    done.kept,
                )
        except Exception as exc:  # the database may be down: the deliveries do not depend on this
            log.warning("%s: pruning the outbox failed: %s", actor.name, exc)
        await asyncio.sleep(every_s)


# Row counts as the planner estimates them (an exact count would read the tables); the two counts that
# matter exactly (what waits) are answered by the worker's partial indexes.
_STATS = """
SELECT (SELECT json_object_agg(relname, greatest(reltuples, 0)::bigint) FROM pg_class
        WHERE oid IN ('event_outbox'::regclass, 'webhook_deliveries'::regclass, 'webhook_attempts'::regclass))
           AS estimates,
       (SELECT count(*) FROM webhook_deliveries WHERE state = 'pending') AS pending,
       (SELECT count(*) FROM event_outbox WHERE fanned_out_at IS NULL) AS unfanned,
       (SELECT occurred_at FROM event_outbox ORDER BY id LIMIT 1) AS oldest
"""


def outbox_stats(engine: Engine) -> Any:
    """The outbox's and the delivery log's estimated sizes, what waits, and the oldest event (one row)."""
    with engine.connect() as conn:
        return conn.execute(text(_STATS)).one()
