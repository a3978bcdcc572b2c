"""Webhook subscriptions, the delivery log and redelivery; the Standard Webhooks signature.

Administrators subscribe a URL to some event types (``registry.events.EVENT_TYPES``, or ``*``); the
delivery worker (``registry.webhook_worker``) sends each matching outbox event there, signed as the
Standard Webhooks specification says: ``webhook-id`` (stable per event), ``webhook-timestamp`` and
``webhook-signature`` = ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body`` keyed with the
base64-decoded part of the ``whsec_`` secret. The secret is shown once, when the subscription is made.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.orm import Session

from common.errors import InvalidInput, NotFound
from common.settings import WebhookSettings
from registry import audit
from registry.access import Action, Actor, require
from registry.events import EVENT_TYPES

SECRET_PREFIX = "whsec_"
# The specification's bounds on the key behind a whsec_ secret.
_MIN_KEY_BYTES, _MAX_KEY_BYTES = 24, 64
ALL_EVENTS = "*"
# Notified at the commit of any change to the subscriptions: a worker with none enabled does not listen
# to commits, and starts again when it hears this (registry.webhook_worker).
SUBSCRIPTIONS_CHANNEL = "smartcode_webhook_subscriptions"
_LOG_LIMIT = 200
_ATTEMPTS_SHOWN = 20


# --- signing ---------------------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh ``whsec_`` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ``InvalidInput`` when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidInput("a webhook secret starts with whsec_ followed by base64", field="secret")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("the part after whsec_ is not valid base64", field="secret") from None
    if not _MIN_KEY_BYTES <= len(key) <= _MAX_KEY_BYTES:
        raise InvalidInput(
            f"the secret's key is {len(key)} bytes; it must be {_MIN_KEY_BYTES} to {_MAX_KEY_BYTES} "
            "(e.g. whsec_ + base64 of 32 random bytes)",
            field="secret",
        )
    return key


def message_id(event_id: int) -> str:
    """The ``webhook-id`` of an event: the same on every attempt and every subscription."""
    return f"evt_{event_id}"


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of one request (``v1,<base64 HMAC-SHA256>``)."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


# --- checks ----------------------------------------------------------------------------------------------


def _host_allowed(host: str, allow: Sequence[str]) -> bool:
    if not allow:
        return True
    host = host.lower().rstrip(".")
    for pattern in allow:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def check_url(url: str, settings: WebhookSettings) -> str:
    """``url`` when it is an absolute http(s) address the settings allow; else ``InvalidInput``."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise InvalidInput("url is not a valid address (webhook 地址无效)", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            "url must be an http:// or https:// address with a host (webhook 地址须为 http/https)",
            field="url",
        )
    if parts.username or parts.password:
        raise InvalidInput("url must not carry a user name or password", field="url")
    if any(c.isspace() for c in url) or len(url) > 2000:
        raise InvalidInput("url has spaces or is longer than 2000 characters", field="url")
    if not _host_allowed(parts.hostname, settings.allow_hosts):
        raise InvalidInput(
            f"host {parts.hostname} is not in SMARTCODE_WEBHOOKS_ALLOW_HOSTS (该主机不在允许列表中)",
            field="url",
        )
    return url


def internal_warnings(url: str, settings: WebhookSettings) -> list[str]:
    """Warnings for a URL naming this machine or a private network while no allow-list fences URLs in."""
    if settings.allow_hosts:
        return []
    host = (urlsplit(url).hostname or "").lower()
    try:
        address = ipaddress.ip_address(host)
        internal = address.is_private or address.is_loopback or address.is_link_local or address.is_reserved
    except ValueError:
        internal = host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
    if not internal:
        return []
    return [
        f"{host} is this machine or an internal network: the server will send requests there "
        "(内部地址). Set SMARTCODE_WEBHOOKS_ALLOW_HOSTS to fence subscriptions in (docs/webhooks.md)"
    ]


def check_events(events: Sequence[str]) -> list[str]:
    """The event types, deduplicated and sorted; ``InvalidInput`` names an unknown one."""
    if not events:
        raise InvalidInput("name at least one event type, or * for all", field="events")
    chosen = sorted(set(events))
    for name in chosen:
        if name != ALL_EVENTS and name not in EVENT_TYPES:
            raise InvalidInput(
                f"unknown event type {name!r}; known: {', '.join(EVENT_TYPES)} or *", field="events"
            )
    return [ALL_EVENTS] if ALL_EVENTS in chosen else chosen


# --- subscriptions ---------------------------------------------------------------------------------------


def _changed(session: Session, subscription_id: int) -> None:
    session.execute(
        text("SELECT pg_notify(:c, :id)"), {"c": SUBSCRIPTIONS_CHANNEL, "id": str(subscription_id)}
    )


_COLUMNS = (
    "id, url, events, description, enabled, disabled_reason, created_by, created_at, updated_at, "
    "(SELECT count(*) FROM webhook_deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending') "
    "AS pending, "
    "(SELECT count(*) FROM webhook_deliveries d WHERE d.subscription_id = s.id AND d.state = 'dead') AS dead"
)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "events": list(row.events),
        "description": row.description,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        "created_by": row.created_by,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "deliveries": {"pending": row.pending, "dead": row.dead},
    }


def _get(session: Session, subscription_id: int) -> Any:
    row = session.execute(
        text(f"SELECT {_COLUMNS} FROM webhook_subscriptions s WHERE id = :id AND deleted_at IS NULL"),
        {"id": subscription_id},
    ).one_or_none()
    if row is None:
        raise NotFound(f"no webhook subscription {subscription_id} (没有该 webhook 订阅)")
    return row


def create_subscription(
    session: Session,
    actor: Actor,
    settings: WebhookSettings,
    *,
    url: str,
    events: Sequence[str],
    secret: str | None = None,
    description: str | None = None,
    enabled: bool = True,
) -> dict[str, Any]:
    """Subscribe ``url`` to ``events``; the view with the secret, which is never shown again."""
    require(actor, Action.MANAGE_WEBHOOKS)
    url = check_url(url, settings)
    chosen = check_events(events)
    secret = secret if secret is not None else new_secret()
    secret_key(secret)
    new_id = session.execute(
        text(
            "INSERT INTO webhook_subscriptions (url, events, secret, description, enabled, created_by) "
            "VALUES (:url, :events, :secret, :description, :enabled, :by) RETURNING id"
        ),
        {
            "url": url,
            "events": chosen,
            "secret": secret,
            "description": description,
            "enabled": enabled,
            "by": actor.name,
        },
    ).scalar_one()
    audit.record(
        session, actor, "create", "webhook_subscription", new_id, details={"url": url, "events": chosen}
    )
    _changed(session, new_id)
    view = {**_view(_get(session, new_id)), "secret": secret}
    return {**view, "warnings": internal_warnings(url, settings)}


def list_subscriptions(session: Session, actor: Actor) -> list[dict[str, Any]]:
    """Every subscription (not deleted), without secrets."""
    require(actor, Action.MANAGE_WEBHOOKS)
    rows = session.execute(
        text(f"SELECT {_COLUMNS} FROM webhook_subscriptions s WHERE deleted_at IS NULL ORDER BY id")
    ).all()
    return [_view(row) for row in rows]


def get_subscription(session: Session, actor: Actor, subscription_id: int) -> dict[str, Any]:
    """One subscription, without its secret."""
    require(actor, Action.MANAGE_WEBHOOKS)
    return _view(_get(session, subscription_id))


def update_subscription(
    session: Session,
    actor: Actor,
    settings: WebhookSettings,
    subscription_id: int,
    changes: dict[str, Any],
) -> dict[str, Any]:
    """Change url, events, description or enabled; enabling clears the reason it was disabled."""
    require(actor, Action.MANAGE_WEBHOOKS)
    _get(session, subscription_id)
    values: dict[str, Any] = {}
    if changes.get("url") is not None:
        values["url"] = check_url(changes["url"], settings)
    if changes.get("events") is not None:
        values["events"] = check_events(changes["events"])
    if "description" in changes:
        values["description"] = changes["description"]
    if changes.get("enabled") is not None:
        values["enabled"] = bool(changes["enabled"])
        values["disabled_reason"] = None if values["enabled"] else f"disabled by {actor.name}"
    if not values:
        raise InvalidInput("name at least one of url, events, description, enabled")
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    session.execute(
        text(f"UPDATE webhook_subscriptions SET {assignments}, updated_at = now() WHERE id = :id"),
        {**values, "id": subscription_id},
    )
    audit.record(session, actor, "update", "webhook_subscription", subscription_id, details=values)
    _changed(session, subscription_id)
    view = _view(_get(session, subscription_id))
    return {**view, "warnings": internal_warnings(view["url"], settings)}


def delete_subscription(session: Session, actor: Actor, subscription_id: int) -> dict[str, Any]:
    """Stop sending to the subscription and hide it; its delivery log stays in the database."""
    require(actor, Action.MANAGE_WEBHOOKS)
    view = _view(_get(session, subscription_id))
    session.execute(
        text(
            "UPDATE webhook_subscriptions SET deleted_at = now(), updated_at = now(), enabled = false, "
            "disabled_reason = 'deleted' WHERE id = :id"
        ),
        {"id": subscription_id},
    )
    audit.record(session, actor, "delete", "webhook_subscription", subscription_id)
    _changed(session, subscription_id)
    return {**view, "enabled": False, "deleted": True}


# --- the delivery log and redelivery ---------------------------------------------------------------------


def _delivery_view(row: Any, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_id": row.event_id,
        "webhook_id": message_id(row.event_id),
        "type": row.type,
        "subject": row.subject,
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt_at": _iso(row.next_attempt_at) if row.state == "pending" else None,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "last_latency_ms": row.last_latency_ms,
        "created_at": _iso(row.created_at),
        "delivered_at": _iso(row.delivered_at),
        "dead_at": _iso(row.dead_at),
        "log": attempts,
    }


def deliveries(
    session: Session,
    actor: Actor,
    subscription_id: int,
    *,
    state: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """The newest deliveries of a subscription (each with its latest attempts), newest first."""
    require(actor, Action.MANAGE_WEBHOOKS)
    if (
        session.execute(
            text("SELECT 1 FROM webhook_subscriptions WHERE id = :id"), {"id": subscription_id}
        ).first()
        is None
    ):
        raise NotFound(f"no webhook subscription {subscription_id} (没有该 webhook 订阅)")
    if state is not None and state not in ("pending", "delivered", "dead"):
        raise InvalidInput("state is one of pending, delivered, dead", field="state")
    limit = max(1, min(limit, _LOG_LIMIT))
    rows = session.execute(
        text(
            "SELECT d.*, e.type FROM webhook_deliveries d JOIN event_outbox e ON e.id = d.event_id "
            "WHERE d.subscription_id = :s AND (CAST(:state AS text) IS NULL OR d.state = :state) "
            "AND (CAST(:before AS bigint) IS NULL OR d.id < :before) ORDER BY d.id DESC LIMIT :n"
        ),
        {"s": subscription_id, "state": state, "before": before_id, "n": limit},
    ).all()
    attempts: dict[int, list[dict[str, Any]]] = {row.id: [] for row in rows}
    if rows:
        for a in session.execute(
            text(
                "SELECT * FROM (SELECT a.*, row_number() OVER (PARTITION BY delivery_id ORDER BY id DESC) "
                "AS k FROM webhook_attempts a WHERE delivery_id = ANY(:ids)) x WHERE k <= :k "
                "ORDER BY delivery_id, id"
            ),
            {"ids": list(attempts), "k": _ATTEMPTS_SHOWN},
        ):
            attempts[a.delivery_id].append(
                {
                    "attempt": a.attempt,
                    "at": _iso(a.started_at),
                    "status": a.status_code,
                    "latency_ms": round(a.latency_ms, 1),
                    "error": a.error,
                    "response": a.response,
                }
            )
    items = [_delivery_view(row, attempts[row.id]) for row in rows]
    return {"items": items, "next_before_id": rows[-1].id if len(rows) == limit else None}


_REQUEUE_ONE = """
INSERT INTO webhook_deliveries (subscription_id, event_id, subject) VALUES (:s, :e, :subj)
ON CONFLICT (subscription_id, event_id) DO UPDATE
SET state = 'pending', round_attempts = 0, next_attempt_at = now(), dead_at = NULL, delivered_at = NULL
RETURNING id
"""
_REQUEUE_DEAD = """
UPDATE webhook_deliveries d SET state = 'pending', round_attempts = 0, next_attempt_at = now(), dead_at = NULL
FROM event_outbox e
WHERE e.id = d.event_id AND d.subscription_id = :s AND d.state = 'dead' AND e.occurred_at >= :since
RETURNING d.id
"""


def redeliver(
    session: Session,
    actor: Actor,
    subscription_id: int,
    *,
    event_id: int | None = None,
    since: dt.datetime | None = None,
) -> dict[str, Any]:
    """Queue one event again (any state), or every dead delivery of events since ``since``.

    A redelivered event keeps its ``webhook-id``: a receiver that already has it may drop it.
    """
    require(actor, Action.MANAGE_WEBHOOKS)
    if (event_id is None) == (since is None):
        raise InvalidInput("give either event_id (one event) or since (every failed delivery since then)")
    sub = _get(session, subscription_id)
    if event_id is not None:
        event = session.execute(
            text("SELECT id, subject FROM event_outbox WHERE id = :id"), {"id": event_id}
        ).one_or_none()
        if event is None:
            raise NotFound(f"no event {event_id} in the outbox (没有该事件)", field="event_id")
        # A delivery in flight keeps its lease; any other is due now with a fresh retry schedule.
        params = {"s": subscription_id, "e": event.id, "subj": event.subject}
        ids: list[int] = list(session.execute(text(_REQUEUE_ONE), params).scalars())
    else:
        if since is not None and since.tzinfo is None:
            raise InvalidInput("since needs a time zone, e.g. 2026-12-06T08:00:00+08:00", field="since")
        ids = list(session.execute(text(_REQUEUE_DEAD), {"s": subscription_id, "since": since}).scalars())
    audit.record(
        session,
        actor,
        "redeliver",
        "webhook_subscription",
        subscription_id,
        details={"event_id": event_id, "since": _iso(since), "deliveries": len(ids)},
    )
    session.execute(text("SELECT pg_notify('smartcode_events', 'redeliver')"))
    note = None if sub.enabled else "the subscription is disabled: nothing is sent until it is enabled"
    return {"queued": len(ids), "delivery_ids": sorted(ids)[:1000], "note": note}
