"""A complaint's status as the case system moves it: accepted (签收), returned (退件), closed (办结).

:func:`change_status` is synchronous and works in the caller's SQLAlchemy session without committing,
so a caller can do more in the same transaction (a return opens a dispute: see
:func:`_after_returned`). The complaint row changes only in its status columns; the history row is
written by the trigger of migration 0013 (0017 adds the unit and the client's update id to it), and
``complaint.status_changed`` goes to the event outbox in the same transaction.

The transitions (:data:`TRANSITIONS`)::

    received ─┬─> accepted ─┬─> returned   (final: "not ours"; the case is dispatched again elsewhere)
              │      │      └─> closed     (final)
              │      └─> accepted          (a progress note: the case system reports work in stages)
              ├─> returned
              └─> closed

Returned and closed are final: a case returned as "not ours" is re-dispatched by the case system as
a new case to another unit, and a closed one that comes back is a new complaint, so the record of
what was said and decided stays as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from common.errors import Conflict, InvalidInput, NotFound, PreconditionFailed, StaleVersion
from registry import complaints, disputes
from registry.access import Action, Actor, require
from registry.events import emit

TRANSITIONS: Mapping[str, frozenset[str]] = {
    "received": frozenset({"accepted", "returned", "closed"}),
    "accepted": frozenset({"accepted", "returned", "closed"}),
    "returned": frozenset(),
    "closed": frozenset(),
}
REASON_MAX = 2000
UPDATE_REF_MAX = 200


@dataclass(frozen=True)
class _Routed:
    """The units a complaint was routed to, as the access policy reads an owned target."""

    owner_id: int | None
    maintainer_id: int | None


# FOR NO KEY UPDATE, not FOR UPDATE: a status change never touches the key, and a new complaint that
# raises a hot-spot warning naming this one as its first takes FOR KEY SHARE on it (the foreign key)
# while holding its subject's event lock, which this change waits for next: with FOR UPDATE the two
# would deadlock and the new complaint would be lost.
_ROW_SQL = """
SELECT id, reference, external_id, source, status, version, asset_code, resolution,
       owner_id, maintainer_id, supervisor_id, status_at
FROM complaints WHERE reference = :reference
FOR NO KEY UPDATE
"""


def _label(status: str) -> str:
    return f"{complaints.STATUS_LABELS.get(status, status)}（{status}）"


def check_transition(current: str, new: str, reference: str) -> None:
    """``Conflict`` unless a complaint at ``current`` may become ``new``; ``InvalidInput`` if unknown."""
    if new not in TRANSITIONS or new == complaints.STATUS_RECEIVED:
        raise InvalidInput(
            f"未知的诉求状态 {new!r}，可选 accepted（签收）、returned（退件）、closed（办结） / unknown "
            f"status {new!r}: one of accepted, returned, closed",
            field="status",
        )
    allowed = TRANSITIONS.get(current, frozenset())
    if new not in allowed:
        if allowed:
            then = "、".join(_label(s) for s in sorted(allowed))
            hint = f"当前只能改为：{then} / from {current} it may only become {', '.join(sorted(allowed))}"
        else:
            hint = f"{_label(current)}是最终状态，不能再改 / {current} is final"
        raise Conflict(
            f"诉求 {reference} 当前为{_label(current)}，不能改为{_label(new)}；{hint}",
            reference=reference,
            status=current,
            requested=new,
        )


def _check_reason(new: str, reason: str | None) -> str | None:
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > REASON_MAX:
        raise InvalidInput(
            f"原因最多 {REASON_MAX} 字 / the reason exceeds {REASON_MAX} characters", field="reason"
        )
    if new == "returned" and reason is None:
        raise InvalidInput(
            "退件须说明原因（为何不属本单位） / a return needs a reason (why it is not this unit's)",
            field="reason",
        )
    return reason


def _acting_unit(row: Row[Any], new: str, actor: Actor, unit_id: int | None) -> int | None:
    # Who accepted or returned it: a unit token speaks for itself; the case system may name the unit
    # it speaks for (one the complaint was routed to), else the one that acts on it.
    routed = [u for u in (row.maintainer_id, row.owner_id) if u is not None]
    if actor.unit_id is not None:
        if unit_id is not None and unit_id != actor.unit_id:
            raise InvalidInput(
                f"单位令牌只能代表本单位（{actor.unit_id}） / a unit token speaks for its own unit "
                f"({actor.unit_id}), not unit {unit_id}",
                field="unit_id",
            )
        return actor.unit_id
    if new == "closed" and unit_id is None:
        return None
    if unit_id is not None:
        if unit_id not in (*routed, row.supervisor_id):
            raise InvalidInput(
                f"诉求 {row.reference} 未分拨给单位 {unit_id} / complaint {row.reference} was not routed "
                f"to unit {unit_id} (its units: {', '.join(str(u) for u in routed) or 'none'})",
                field="unit_id",
            )
        return unit_id
    return routed[0] if routed else None


def change_status(
    session: Session,
    reference: str,
    new_status: str,
    *,
    actor: Actor,
    reason: str | None = None,
    expected_version: int | None = None,
    unit_id: int | None = None,
    update_ref: str | None = None,
    if_match: bool = False,
) -> dict[str, Any]:
    """Move a complaint to ``new_status`` in the caller's transaction (not committed); its view.

    ``expected_version`` is the version the caller saw: when it is no longer current the change is
    refused (``StaleVersion``, or ``PreconditionFailed`` when it came as ``If-Match``), never merged.
    ``None`` skips the check (Open311 updates carry no version; the transition rules still hold).
    ``update_ref`` is the client's id of this update: the same id posted again for the same
    complaint returns the view without a second change. ``unit_id`` names the unit that accepts or
    returns (default: the unit token's own, else the complaint's maintainer, else its owner).
    """
    new_status = new_status.strip().lower()
    reason = _check_reason(new_status, reason)
    if update_ref is not None:
        update_ref = update_ref.strip()[:UPDATE_REF_MAX] or None
    plain = reference.strip().upper()
    row = session.execute(text(_ROW_SQL), {"reference": plain}).one_or_none()
    if row is None:
        raise NotFound(f"没有编号为 {reference!r} 的诉求 / no complaint with reference {reference!r}")
    action = Action.CLOSE_COMPLAINT if new_status == "closed" else Action.ROUTE_COMPLAINT
    require(
        actor,
        action,
        _Routed(row.owner_id, row.maintainer_id),
        what=f"诉求 {row.reference} / complaint {row.reference}",
    )
    if update_ref is not None:
        seen = session.execute(
            text("SELECT id FROM complaint_history WHERE complaint_id = :id AND update_ref = :ref"),
            {"id": row.id, "ref": update_ref},
        ).first()
        if seen is not None:
            return complaint_view(session, row.reference)
    if expected_version is not None and expected_version != row.version:
        error = PreconditionFailed if if_match else StaleVersion
        raise error(
            f"诉求 {row.reference} 已是第 {row.version} 版，不是第 {expected_version} 版：有人先改了它，"
            f"请刷新后重试 / complaint {row.reference} is at version {row.version}, not "
            f"{expected_version}: reload and retry",
            reference=row.reference,
            current_version=row.version,
        )
    check_transition(row.status, new_status, row.reference)
    acting_unit = _acting_unit(row, new_status, actor, unit_id)
    # clock_timestamp(), not now(): two updates in one transaction are two history rows in order.
    session.execute(
        text(
            """
            UPDATE complaints
            SET status = :status, status_at = greatest(clock_timestamp(), status_at),
                status_by = :actor, status_reason = :reason, version = version + 1,
                status_unit_id = :unit, status_update_ref = :ref
            WHERE id = :id
            """
        ),
        {
            "status": new_status,
            "actor": actor.name,
            "reason": reason,
            "unit": acting_unit,
            "ref": update_ref,
            "id": row.id,
        },
    )
    if new_status != row.status:
        data = {
            "reference": row.reference,
            "external_id": row.external_id,
            "source": row.source,
            "status": new_status,
            "previous_status": row.status,
            "reason": reason,
            "actor": actor.name,
            "unit_id": acting_unit,
            "version": row.version + 1,
            "asset_code": row.asset_code,
            "owner_id": row.owner_id,
            "maintainer_id": row.maintainer_id,
            "supervisor_id": row.supervisor_id,
        }
        subject = complaints.event_subject(row.asset_code, row.resolution, row.reference)
        emit(session, "complaint.status_changed", data, subject=subject)
        if new_status == "returned":
            _after_returned(session, row, actor, reason or "", acting_unit)
    return complaint_view(session, row.reference)


def _after_returned(
    session: Session, complaint_row: Row[Any], actor: Actor, reason: str, unit_id: int | None
) -> None:
    """A return (退件, "not ours") opens a dispute (异议) by itself, in the same transaction.

    The dispute is the returning unit's (``unit_id``, see :func:`_acting_unit`: the unit token's own,
    the one the case system names, else the one that acts on the complaint, its maintainer before its
    owner). It is opened in that unit's name, whoever relayed the return, so the ruling can correct
    the registry. A complaint routed to nobody has no unit to object: there is nothing to open. A
    dispute the unit already opened on this complaint stands for the return.
    """
    if unit_id is None:
        return
    objector = Actor(actor.name, role="unit", unit_id=unit_id)
    try:
        with session.begin_nested():
            disputes.open_dispute(
                session,
                objector,
                subject_kind="complaint",
                subject_id=complaint_row.reference,
                reason=f"退件 / returned as not ours: {reason}",
            )
    except Conflict:
        pass  # already disputed by this unit: that dispute covers the return


def complaint_view(session: Session, reference: str) -> dict[str, Any]:
    """One complaint with its history, read in ``session`` (the reporter's contact left out)."""
    row = session.execute(
        text(complaints.VIEW_SQL + "WHERE c.reference = :reference"), {"reference": reference}
    ).one_or_none()
    if row is None:
        raise NotFound(f"没有编号为 {reference!r} 的诉求 / no complaint with reference {reference!r}")
    view = complaints.row_view(row, contact=False)
    history = session.execute(
        text(
            f"SELECT {complaints.HISTORY_COLUMNS} FROM complaint_history WHERE complaint_id = :id ORDER BY id"
        ),
        {"id": row[23]},
    ).all()
    view["history"] = [complaints.history_item(h) for h in history]
    return view
