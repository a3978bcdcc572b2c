"""The audit log: every change to reference data, with who, when and why."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from sqlalchemy.orm import Session

from registry.db import Actor
from registry.models import AuditLog


def record(
    session: Session,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: object,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit entry in the caller's transaction (it commits or rolls back with the change)."""
    session.add(
        AuditLog(
            actor=actor.name,
            action=action,
            entity=entity,
            entity_id=str(entity_id),
            reason=reason,
            details=details or {},
        )
    )


async def record_async(
    conn: AsyncConnection[Any],
    actor: Actor,
    action: str,
    entity: str,
    entity_id: object,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit entry on an async psycopg connection (in its transaction, if one is open)."""
    await conn.execute(
        "INSERT INTO audit_log (actor, action, entity, entity_id, reason, details) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (actor.name, action, entity, str(entity_id), reason, Jsonb(details or {})),
    )
