"""``/api/v1/tokens``: list, issue and revoke bearer tokens (administrators)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.deps import require_actor, services
from registry import tokens as token_service
from registry.access import Action

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenCreate(BaseModel):
    """A named token with a role; a ``unit`` token names its unit."""

    name: str = Field(min_length=1, max_length=200)
    role: str = Field(description="admin | unit | reader")
    unit_id: int | None = None


class Revoke(BaseModel):
    """Why the token is revoked."""

    reason: str | None = Field(default=None, max_length=2000)


@router.get("", summary="Issued tokens, without the secrets (administrators)")
def list_tokens(request: Request, include_revoked: bool = False) -> dict[str, Any]:
    """Name, role, unit, created and revoked times of each token."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_TOKENS)
        return {"items": token_service.list_tokens(session, actor, include_revoked=include_revoked)}


@router.post("", status_code=201, summary="Issue a token (administrators); shown once")
def create_token(request: Request, body: TokenCreate) -> dict[str, Any]:
    """The token in plain text, this once: only its hash is kept."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_TOKENS)
        token = token_service.create_token(session, body.name, body.role, actor, unit_id=body.unit_id)
        return {"name": body.name, "role": body.role, "unit_id": body.unit_id, "token": token}


@router.post("/{name}/revoke", summary="Revoke a token at once (administrators)")
def revoke_token(request: Request, name: str, body: Revoke | None = None) -> dict[str, Any]:
    """The token stops working for every endpoint of this server now (other servers: within the
    token cache's seconds, ``SMARTCODE_TOKEN_CACHE_SECONDS``)."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_TOKENS)
        view = token_service.revoke_token(session, name, actor, reason=body.reason if body else None)
    request.app.state.resolve.tokens.clear()
    return view
