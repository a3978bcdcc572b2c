"""Import batches: look them up, and roll a committed batch back as a whole.

Rolling back never deletes: the assets a batch created are decommissioned with the reason
"import batch N rolled back" (their source id set aside as ``rolledback:N:<source id>``, so
importing the file again creates fresh assets), and the assets it updated get back the values of
the version before it (read from ``asset_history``, which keeps every replaced version). If anything
changed one of those assets after the batch, the rollback is refused, naming them: undoing the batch
would silently undo that later change too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from common.errors import Conflict, NotFound
from importers.pipeline import batch_is_alive
from registry.access import Action, Actor, require
from registry.db import set_change_context
from registry.messages import both
from registry.models import ImportBatch
from registry.serials import restore_serials

# Columns an import writes, restored from the previous version on rollback.
_RESTORED = (
    "owner_id",
    "maintainer_id",
    "supervisor_id",
    "state",
    "in_use",
    "decommissioned_at",
    "decommission_reason",
    "grid_code",
    "data_source",
    "note",
    "installed_on",
    "attributes",
    "source_id",
    "batch_id",
)


def batch_view(session: Session, batch: ImportBatch, *, with_report: bool = True) -> dict[str, Any]:
    """The JSON form of a batch; a 'running' batch whose import died shows as 'interrupted'."""
    status = batch.status
    if status == "running" and not batch_is_alive(session, batch.id):
        status = "interrupted"
    view: dict[str, Any] = {
        "id": batch.id,
        "status": status,
        "file": batch.file_name,
        "sha256": batch.file_sha256,
        "size": batch.file_size,
        "format": batch.format,
        "profile": batch.profile,
        "options": batch.options,
        "actor": batch.actor,
        "unit_id": batch.unit_id,
        "zone": batch.zone_name,
        "started_at": batch.started_at.isoformat() if batch.started_at else None,
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
        "counts": batch.counts,
        "error": batch.error,
        "rolled_back_at": batch.rolled_back_at.isoformat() if batch.rolled_back_at else None,
        "rolled_back_by": batch.rolled_back_by,
    }
    if with_report:
        view["report"] = batch.report
    return view


def get_batch(session: Session, batch_id: int) -> ImportBatch:
    """The batch with this id, or ``NotFound``."""
    batch = session.get(ImportBatch, batch_id)
    if batch is None:
        raise NotFound(both("batch.none", id=batch_id), batch_id=batch_id)
    return batch


def list_batches(session: Session, *, limit: int = 50, offset: int = 0) -> list[ImportBatch]:
    """The most recent batches first."""
    stmt = select(ImportBatch).order_by(ImportBatch.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(stmt).all())


def rollback_batch(session: Session, batch_id: int, actor: Actor) -> dict[str, Any]:
    """Undo a committed batch: decommission what it created, restore what it updated."""
    batch = session.scalars(select(ImportBatch).where(ImportBatch.id == batch_id).with_for_update()).first()
    if batch is None:
        raise NotFound(both("batch.none", id=batch_id), batch_id=batch_id)
    require(actor, Action.ROLLBACK_IMPORT, batch.unit_id, what=f"import batch {batch_id}")
    if batch.status != "committed":
        raise Conflict(both("batch.not_committed", id=batch_id, status=batch.status))
    session.execute(
        text(
            """
            CREATE TEMP TABLE rollback_rows ON COMMIT DROP AS
            SELECT a.id AS asset_id, a.version, a.version = 1 AS created FROM assets a
            WHERE a.batch_id = :b AND a.change_action = 'import'
            UNION ALL
            SELECT h.asset_id, h.version, h.version = 1 FROM asset_history h
            WHERE h.batch_id = :b AND h.action = 'import'
            """
        ),
        {"b": batch_id},
    )
    touched = (
        session.execute(
            text(
                "SELECT a.code FROM assets a JOIN rollback_rows r ON r.asset_id = a.id "
                "WHERE a.version <> r.version ORDER BY a.code"
            )
        )
        .scalars()
        .all()
    )
    if touched:
        shown = ", ".join(touched[:10]) + (" ..." if len(touched) > 10 else "")
        raise Conflict(
            both("batch.changed_since", id=batch_id, count=len(touched), shown=shown),
            batch_id=batch_id,
            changed=len(touched),
        )
    reason = f"import batch {batch_id} rolled back"
    set_change_context(session, actor, reason, action="rollback")
    decommissioned = session.execute(
        text(
            "UPDATE assets a SET in_use = false, decommissioned_at = now(), decommission_reason = :reason, "
            # The source id moves out of the way, so importing the file again creates fresh assets
            # instead of matching these decommissioned ones and reporting them unchanged.
            "source_id = CASE WHEN a.source_id IS NULL THEN NULL "
            "ELSE 'rolledback:' || CAST(:b AS text) || ':' || a.source_id END "
            "FROM rollback_rows r WHERE r.asset_id = a.id AND r.created AND a.in_use"
        ),
        {"reason": reason, "b": batch_id},
    ).rowcount  # type: ignore[attr-defined]
    assignments = ", ".join(
        f"{col} = (jsonb_populate_record(NULL::assets, h.data)).{col}" for col in _RESTORED
    )
    restored = session.execute(
        text(
            f"UPDATE assets a SET geom = h.geom, {assignments} "
            "FROM rollback_rows r "
            "JOIN asset_history h ON h.asset_id = r.asset_id AND h.version = r.version - 1 "
            "WHERE r.asset_id = a.id AND NOT r.created"
        )
    ).rowcount  # type: ignore[attr-defined]
    # The counters the batch moved go back to where they were (its assets keep their serials: they
    # are decommissioned, never deleted, and allocation steps over serials that are taken).
    restore_serials(session, batch_id)
    session.execute(
        text(
            "UPDATE import_batches SET status = 'rolled_back', rolled_back_at = now(), rolled_back_by = :a "
            "WHERE id = :b"
        ),
        {"a": actor.name, "b": batch_id},
    )
    session.expire(batch)
    return {
        "batch_id": batch_id,
        "status": "rolled_back",
        "decommissioned": decommissioned,
        "restored": restored,
    }
