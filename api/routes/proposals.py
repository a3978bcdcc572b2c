"""``/api/v1/proposals``: responsibilities a unit offered another unit, accepted or declined by it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from api.deps import require_actor, services
from registry import proposals as proposal_service
from registry.access import Action

router = APIRouter(prefix="/proposals", tags=["proposals"])


class Answer(BaseModel):
    """An optional note with the answer (why declined, from when the contract runs...)."""

    note: str | None = Field(default=None, max_length=2000)


@router.get("", summary="Proposals (a unit sees those it made or received)")
def list_proposals(
    request: Request,
    status: Annotated[str | None, Query(description="pending (default) | accepted | declined")] = "pending",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Newest first."""
    with services(request).session() as session:
        actor = require_actor(request, session)
        rows = proposal_service.list_proposals(session, actor, status=status, limit=limit, offset=offset)
        return {"items": [proposal_service.proposal_view(session, p) for p in rows]}


@router.post("/{proposal_id}/accept", summary="Accept a proposal (the receiving unit, or an administrator)")
def accept(request: Request, proposal_id: int, body: Answer | None = None) -> dict[str, Any]:
    """The receiving unit takes the roles offered; the change is recorded like a direct hand-over."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.ANSWER_PROPOSAL)
        proposal = proposal_service.accept(session, proposal_id, actor, body.note if body else None)
        return proposal_service.proposal_view(session, proposal)


@router.post("/{proposal_id}/decline", summary="Decline a proposal (the receiving unit, or an administrator)")
def decline(request: Request, proposal_id: int, body: Answer | None = None) -> dict[str, Any]:
    """Nothing changes for the asset; the proposing unit sees the answer."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.ANSWER_PROPOSAL)
        proposal = proposal_service.decline(session, proposal_id, actor, body.note if body else None)
        return proposal_service.proposal_view(session, proposal)
