"""What zones and responsibility rules share: versions valid from one time to another, listed a page
at a time (those valid at a moment, or every version) and closed at a time with a reason."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.orm import Session

from common.errors import InvalidInput
from registry import audit
from registry.db import Actor


@dataclass(frozen=True)
class Versions:
    """Which versions to list: those valid at ``at`` (None: now) or all of them, and which page."""

    at: dt.datetime | None = None
    all_versions: bool = False
    limit: int = 1000
    offset: int = 0


def bound(value: dt.datetime | None) -> str | None:
    """A validity bound for JSON: no start (SQL '-infinity', read as NULL) means "since before the
    registry knew", and is None like an open end."""
    if value is None or value.year <= 1:
        return None
    return value.isoformat()


def valid_at(alias: str) -> str:
    """SQL condition: the row of ``alias`` is valid at ``:at`` (NULL: now)."""
    return (
        f"{alias}.valid_from <= coalesce(:at, now()) "
        f"AND ({alias}.valid_to IS NULL OR {alias}.valid_to > coalesce(:at, now()))"
    )


def list_versions(
    session: Session,
    *,
    columns: str,
    source: str,
    alias: str,
    where: dict[str, tuple[str, Any]],
    order: str,
    versions: Versions,
) -> tuple[list[Row[Any]], int]:
    """One page of the rows of ``source`` matching ``where`` ({param: (condition, value)}) and the
    ``versions`` asked for, with the total count."""
    conditions = [condition for condition, _ in where.values()]
    params: dict[str, Any] = {name: value for name, (_, value) in where.items()}
    params.update(limit=versions.limit, offset=versions.offset, at=versions.at)
    if not versions.all_versions:
        conditions.append(valid_at(alias))
    condition = " AND ".join(conditions) or "true"
    total = session.execute(text(f"SELECT count(*) FROM {source} WHERE {condition}"), params).scalar_one()
    rows = session.execute(
        text(
            f"SELECT {columns} FROM {source} WHERE {condition} ORDER BY {order} LIMIT :limit OFFSET :offset"
        ),
        params,
    ).all()
    return list(rows), total


def close_version(
    session: Session,
    actor: Actor,
    *,
    kind: str,
    table: str,
    current: dict[str, Any],
    at: dt.datetime | None,
    reason: str | None,
) -> None:
    """End the version ``current`` (its view: id, valid_from, valid_to) at ``at`` (default now), audited."""
    record_id = current["id"]
    if current["valid_to"] is not None:
        raise InvalidInput(f"{kind} {record_id} already ended at {current['valid_to']}")
    end = at or session.execute(text("SELECT now()")).scalar_one()
    if end.tzinfo is None:
        raise InvalidInput("the end time needs a time zone", field="at")
    if current["valid_from"] is not None and end <= dt.datetime.fromisoformat(current["valid_from"]):
        raise InvalidInput(f"{kind} {record_id} starts at {current['valid_from']}: it cannot end before that")
    session.execute(text(f"UPDATE {table} SET valid_to = :t WHERE id = :id"), {"t": end, "id": record_id})
    audit.record(
        session, actor, "close", kind, record_id, reason=reason, details={"valid_to": end.isoformat()}
    )
