"""Proposals: a responsibility a unit wants to give another unit, waiting for that unit's answer.

A unit token that hands its asset (ownership or maintenance) to another unit, or registers an asset
naming another unit as maintainer, makes a proposal (``registry.assets``) instead of the change (naming
the supervising department stays direct: it is given by class and jurisdiction, not by consent). The receiving
unit, or an administrator, accepts it (the change is applied through the same service as a direct
hand-over, effective at the proposed time or else at acceptance) or declines it. Every step is audited.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from common.errors import Conflict, InvalidInput, NotFound
from registry import audit
from registry.access import Action, Actor, require
from registry.assets import apply_units_change, current_period_start
from registry.models import Asset, Proposal

STATUSES = ("pending", "accepted", "declined")


def proposal_view(session: Session, proposal: Proposal) -> dict[str, Any]:
    """The JSON form of a proposal."""
    asset = session.get(Asset, proposal.asset_id)
    return {
        "id": proposal.id,
        "asset": asset.code if asset else None,
        "kind": proposal.kind,
        "changes": proposal.changes,
        "from_unit_id": proposal.from_unit_id,
        "to_unit_id": proposal.to_unit_id,
        "effective_at": proposal.effective_at.isoformat() if proposal.effective_at else None,
        "reason": proposal.reason,
        "status": proposal.status,
        "proposed_by": proposal.proposed_by,
        "proposed_at": proposal.proposed_at.isoformat() if proposal.proposed_at else None,
        "decided_by": proposal.decided_by,
        "decided_at": proposal.decided_at.isoformat() if proposal.decided_at else None,
        "decision_note": proposal.decision_note,
    }


def list_proposals(
    session: Session, actor: Actor, *, status: str | None = "pending", limit: int = 100, offset: int = 0
) -> list[Proposal]:
    """Proposals newest first; a unit sees those it made or received, others (with a token) all."""
    require(actor, Action.READ_FULL)
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, got {status!r}", field="status")
    stmt = select(Proposal)
    if status is not None:
        stmt = stmt.where(Proposal.status == status)
    if actor.role == "unit":
        stmt = stmt.where(or_(Proposal.to_unit_id == actor.unit_id, Proposal.from_unit_id == actor.unit_id))
    return list(session.scalars(stmt.order_by(Proposal.id.desc()).limit(limit).offset(offset)))


def _pending(session: Session, proposal_id: int, actor: Actor) -> Proposal:
    proposal = session.scalars(select(Proposal).where(Proposal.id == proposal_id).with_for_update()).first()
    if proposal is None or not (
        actor.role in ("admin", "reader") or actor.unit_id in (proposal.to_unit_id, proposal.from_unit_id)
    ):
        raise NotFound(f"no proposal {proposal_id}", proposal_id=proposal_id)
    require(actor, Action.ANSWER_PROPOSAL, proposal.to_unit_id, what=f"proposal {proposal_id}")
    if proposal.status != "pending":
        raise Conflict(
            f"proposal {proposal_id} was already {proposal.status} by {proposal.decided_by}",
            proposal_id=proposal_id,
        )
    return proposal


def _decide(session: Session, proposal: Proposal, actor: Actor, status: str, note: str | None) -> None:
    proposal.status = status
    proposal.decided_by = actor.name
    proposal.decided_at = session.scalar(select(func.now()))
    proposal.decision_note = note
    session.flush()
    audit.record(
        session,
        actor,
        "accept" if status == "accepted" else "decline",
        "proposal",
        proposal.id,
        reason=note,
        details={"changes": proposal.changes, "to_unit_id": proposal.to_unit_id},
    )


def accept(session: Session, proposal_id: int, actor: Actor, note: str | None = None) -> Proposal:
    """Accept a proposal: the receiving unit takes the roles it was offered."""
    proposal = _pending(session, proposal_id, actor)
    asset = session.scalars(select(Asset).where(Asset.id == proposal.asset_id).with_for_update()).one()
    if not asset.in_use:
        raise Conflict(f"asset {asset.code} was decommissioned since the proposal", code=asset.code)
    if proposal.kind == "hand_over" and asset.owner_id != proposal.from_unit_id:
        raise Conflict(
            f"asset {asset.code} is no longer owned by the unit that proposed this hand-over: "
            "the proposal is outdated; decline it",
            code=asset.code,
        )
    values = {role: int(unit_id) for role, unit_id in proposal.changes.items()}
    changed: dict[str, int | None] = {
        role: unit_id for role, unit_id in values.items() if getattr(asset, role) != unit_id
    }
    if changed:
        reason = f"proposal {proposal.id} accepted" + (f": {proposal.reason}" if proposal.reason else "")
        effective = proposal.effective_at
        began = current_period_start(session, asset)
        if effective is not None and began is not None and effective <= began:
            # Responsibility changed since the proposal (its direct part, or another change):
            # the proposed date would rewrite that period, so the change takes effect now.
            effective = None
        apply_units_change(session, asset, asset.version, changed, effective, reason, actor)
    _decide(session, proposal, actor, "accepted", note)
    return proposal


def decline(session: Session, proposal_id: int, actor: Actor, note: str | None = None) -> Proposal:
    """Decline a proposal: nothing changes for the asset."""
    proposal = _pending(session, proposal_id, actor)
    _decide(session, proposal, actor, "declined", note)
    return proposal
