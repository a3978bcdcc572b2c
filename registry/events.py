"""Domain events, appended to the outbox in the transaction of the change that caused them.

Whoever changes the registry calls :func:`emit` (SQLAlchemy session) or :func:`emit_async` (async
psycopg connection) inside its own transaction: the event commits or rolls back with the change, and
``pg_notify`` (delivered only at commit) wakes the delivery worker. Nothing here sends anything.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import text
from sqlalchemy.orm import Session

from common.errors import InvalidInput
from registry.jsonb import jsonb

CHANNEL = "smartcode_events"

# Every event type the registry emits; subscriptions choose among these.
EVENT_TYPES = (
    "complaint.created",
    "complaint.resolved",
    "complaint.status_changed",
    "dispute.opened",
    "dispute.under_review",
    "dispute.upheld",
    "dispute.rejected",
    "dispute.withdrawn",
    "dispute.evidence_added",
    "asset.created",
    "asset.imported",
    "asset.handed_over",
    "asset.decommissioned",
    "hotspot.warning",
)

# Events of one subject take their ids in the order their transactions commit: the insert first waits
# for the subject's transaction lock (held to commit or rollback), and only then draws its id. Without
# it two complaints on one asset could draw ids 10 and 11 and commit 11 first; the worker, reading the
# outbox in id order, would send 11 before 10 became visible. The lock is a CTE because PostgreSQL
# never folds a CTE with a volatile function into its reader, so it runs before the row (and its id)
# is made. A transaction emits for one subject at a time (an import emits one event for its batch), so
# it holds a handful of these locks, not thousands.
_LOCKED_INSERT = """
WITH l AS (SELECT pg_advisory_xact_lock(hashtextextended('smartcode.subject:' || {subject}, 0))),
e AS (
    INSERT INTO event_outbox (type, subject, data)
    SELECT v.type, v.subject, v.data FROM l, (VALUES {rows}) AS v (type, subject, data)
    RETURNING id
)
"""

_INSERT = (
    _LOCKED_INSERT.format(
        subject="CAST(:subject AS text)",
        rows="(CAST(:type AS text), CAST(:subject AS text), CAST(:data AS jsonb))",
    )
    + "SELECT id, pg_notify('smartcode_events', id::text) FROM e"
)


def _check(event_type: str, subject: str) -> None:
    if event_type not in EVENT_TYPES:
        raise InvalidInput(f"unknown event type {event_type!r}", field="type")
    if not subject:
        raise InvalidInput("an event needs a subject (asset code, complaint reference or dispute id)")


def emit(session: Session, event_type: str, data: dict[str, Any], *, subject: str) -> int:
    """Append one event in the session's transaction; its outbox id."""
    _check(event_type, subject)
    row = session.execute(
        text(_INSERT), {"type": event_type, "subject": subject, "data": json.dumps(data, ensure_ascii=False)}
    ).one()
    return int(row[0])


async def emit_async(
    conn: AsyncConnection[Any], event_type: str, data: dict[str, Any], *, subject: str
) -> int:
    """Append one event on ``conn`` (inside the caller's transaction); its outbox id."""
    return (await emit_many_async(conn, [(event_type, data)], subject=subject))[-1]


# Several events of one subject in one statement, in the order given (a multi-row VALUES takes its
# ids in row order): a complaint's arrival emits two, and each statement is a round trip on the
# posting hot path. One notification per statement is enough to wake the worker, which reads the
# outbox, not the payload. Rows are spelled out rather than sent as arrays: psycopg's array dumper
# cost more than the second statement it saves.
@functools.cache
def _insert_many(n: int) -> str:
    rows = ", ".join(["(%s::text, %s::text, %s::jsonb)"] * n)
    return _LOCKED_INSERT.format(subject="%s::text", rows=rows) + (
        "SELECT array_agg(id ORDER BY id), pg_notify('smartcode_events', max(id)::text) FROM e"
    )


async def emit_many_async(
    conn: AsyncConnection[Any], events: list[tuple[str, dict[str, Any]]], *, subject: str
) -> list[int]:
    """Append events of one subject on ``conn`` (inside the caller's transaction), in order; their ids."""
    params: list[Any] = [subject]
    for event_type, data in events:
        _check(event_type, subject)
        params += (event_type, subject, jsonb(data))
    cur = await conn.execute(_insert_many(len(events)), params, prepare=True)
    row = await cur.fetchone()
    assert row is not None and row[0] is not None
    return [int(i) for i in row[0]]
