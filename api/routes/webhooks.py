"""``/api/v1/webhooks``: subscriptions, delivery log, redelivery (administrators; docs/webhooks.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from api.deps import require_actor, services
from registry import webhooks as webhook_service
from registry.access import Action

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class SubscriptionCreate(BaseModel):
    """Where to send which events; the secret is generated when not given (``whsec_`` + base64)."""

    url: str = Field(min_length=1, max_length=2000, examples=["https://cases.example.cn/hooks/smartcode"])
    events: list[str] = Field(min_length=1, max_length=100, examples=[["asset.handed_over"], ["*"]])
    secret: str | None = Field(default=None, max_length=200, description="whsec_ + base64 of 24-64 bytes")
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool = True


class SubscriptionUpdate(BaseModel):
    """What to change; omitted fields stay."""

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    events: list[str] | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool | None = None


class Redelivery(BaseModel):
    """One event (``event_id``), or every dead delivery of events since ``since``."""

    event_id: int | None = Field(default=None, ge=1)
    since: dt.datetime | None = None


@router.get("", summary="Webhook subscriptions, without their secrets (administrators)")
def list_subscriptions(request: Request) -> dict[str, Any]:
    """Every subscription with its pending and dead delivery counts."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_WEBHOOKS)
        return {"items": webhook_service.list_subscriptions(session, actor)}


@router.post(
    "", status_code=201, summary="Subscribe a URL to events (administrators); the secret is shown once"
)
def create_subscription(request: Request, body: SubscriptionCreate) -> dict[str, Any]:
    """The new subscription with its ``secret``, this once."""
    svc = services(request)
    with svc.session() as session:
        actor = require_actor(request, session, Action.MANAGE_WEBHOOKS)
        return webhook_service.create_subscription(
            session,
            actor,
            svc.settings.webhooks,
            url=body.url,
            events=body.events,
            secret=body.secret,
            description=body.description,
            enabled=body.enabled,
        )


@router.get("/{subscription_id}", summary="One webhook subscription (administrators)")
def get_subscription(request: Request, subscription_id: int) -> dict[str, Any]:
    """The subscription, without its secret."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_WEBHOOKS)
        return webhook_service.get_subscription(session, actor, subscription_id)


@router.patch("/{subscription_id}", summary="Change a subscription: url, events, enable or disable")
def update_subscription(request: Request, subscription_id: int, body: SubscriptionUpdate) -> dict[str, Any]:
    """The subscription as changed; enabling it again sends what waited while it was disabled."""
    svc = services(request)
    with svc.session() as session:
        actor = require_actor(request, session, Action.MANAGE_WEBHOOKS)
        return webhook_service.update_subscription(
            session, actor, svc.settings.webhooks, subscription_id, body.model_dump(exclude_unset=True)
        )


@router.delete("/{subscription_id}", summary="Delete a subscription; its delivery log is kept")
def delete_subscription(request: Request, subscription_id: int) -> dict[str, Any]:
    """Nothing more is sent to it; it no longer appears in the list."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_WEBHOOKS)
        return webhook_service.delete_subscription(session, actor, subscription_id)


@router.get("/{subscription_id}/deliveries", summary="The delivery log of a subscription, newest first")
def deliveries(
    request: Request,
    subscription_id: int,
    state: Literal["pending", "delivered", "dead"] | None = None,
    before_id: int | None = Query(default=None, ge=1, description="page: deliveries older than this id"),
    limit: int = Query(default=50, ge=1, le=200),
) -> dict[str, Any]:
    """Each delivery with its state, attempts, last status, latency and error, and its latest attempts."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_WEBHOOKS)
        return webhook_service.deliveries(
            session, actor, subscription_id, state=state, before_id=before_id, limit=limit
        )


@router.post("/{subscription_id}/redeliver", summary="Send one event again, or every failed one since a time")
def redeliver(request: Request, subscription_id: int, body: Redelivery) -> dict[str, Any]:
    """How many deliveries were queued; they keep their ``webhook-id`` (receivers deduplicate on it)."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_WEBHOOKS)
        return webhook_service.redeliver(
            session, actor, subscription_id, event_id=body.event_id, since=body.since
        )
