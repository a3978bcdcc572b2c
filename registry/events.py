"""Domain events, appended to the outbox in the transaction of the change that caused them.

Whoever changes the registry calls :func:`emit` (SQLAlchemy session) or :func:`emit_async` (async
psycopg connection) inside its own transaction: the event commits or rolls back with the change, and
``pg_notify`` (delivered only at commit) wakes the delivery worker. Nothing here sends anything.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from sqlalchemy import text
from sqlalchemy.orm import Session

from common.errors import InvalidInput

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

_INSERT = """
WITH e AS (
    INSERT INTO event_outbox (type, subject, data) VALUES (:type, :subject, CAST(:data AS jsonb))
    RETURNING id
)
SELECT id, pg_notify('smartcode_events', id::text) FROM e
"""


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
    _check(event_type, subject)
    cur = await conn.execute(
        "WITH e AS (INSERT INTO event_outbox (type, subject, data) VALUES (%s, %s, %s) RETURNING id) "
        "SELECT id, pg_notify('smartcode_events', id::text) FROM e",
        (event_type, subject, Jsonb(data)),
        prepare=True,
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
