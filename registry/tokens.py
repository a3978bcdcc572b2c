"""API tokens: who a bearer token belongs to and what it may change."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.errors import Conflict, InvalidInput, NotFound, Unauthorized
from common.settings import Settings
from registry import audit
from registry.access import Action, Actor, require
from registry.models import ApiToken, Unit

ROLES = ("admin", "unit", "reader")
_MISSING = "this operation needs a bearer token (Authorization: Bearer <token>)"
_UNKNOWN = "the bearer token is unknown or revoked"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def admin_token(settings: Settings) -> str:
    """The deployment's administrator token: ``SMARTCODE_API_TOKEN``, else one kept in ``var/api-token``."""
    if settings.api.api_token:
        return settings.api.api_token
    ensure_admin_token(settings)
    path = settings.embedded.var_dir / "api-token"
    # Every posted request compares against it: read the file again only when it changed (a stat,
    # not a read, on the hot path).
    stamp = path.stat().st_mtime_ns
    kept = _KEPT_ADMIN_TOKENS.get(path)
    if kept is None or kept[0] != stamp:
        kept = (stamp, path.read_text().strip())
        _KEPT_ADMIN_TOKENS[path] = kept
    return kept[1]


_KEPT_ADMIN_TOKENS: dict[Path, tuple[int, str]] = {}


def ensure_admin_token(settings: Settings) -> str | None:
    """Create the kept administrator token when there is none; the new token, or None if one existed."""
    if settings.api.api_token:
        return None
    path = settings.embedded.var_dir / "api-token"
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    _write_private(path, token)
    return token


def _write_private(path: Path, content: str) -> None:
    # Created 0600 from the start so the secret is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content + "\n")


def create_token(session: Session, name: str, role: str, actor: Actor, unit_id: int | None = None) -> str:
    """Issue a token and return it in plain text (only its hash is stored: show it once)."""
    require(actor, Action.MANAGE_TOKENS)
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, got {role!r}", field="role")
    if (role == "unit") != (unit_id is not None):
        raise InvalidInput("a 'unit' token needs --unit, and only a 'unit' token takes one", field="unit_id")
    if unit_id is not None and session.get(Unit, unit_id) is None:
        raise NotFound(f"no unit with id {unit_id}", unit_id=unit_id)
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise Conflict(f"a token named {name!r} already exists")
    token = secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=_hash(token), role=role, unit_id=unit_id)
    session.add(row)
    session.flush()
    audit.record(
        session, actor, "create", "token", row.id, details={"name": name, "role": role, "unit_id": unit_id}
    )
    return token


def authenticate(session: Session, token: str | None, settings: Settings) -> Actor:
    """The actor a bearer token stands for; ``Unauthorized`` when it is missing, unknown or revoked."""
    if not token:
        raise Unauthorized(_MISSING)
    if _is_admin(token, settings):
        return Actor(name="admin", admin=True)
    # Looked up by the sha256 of the token, not compared: an index probe on a hash of a 256-bit random
    # secret leaks nothing an attacker can use (timing reveals at most a prefix of the hash, from which
    # no token can be rebuilt), so no constant-time comparison is needed here.
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == _hash(token), ApiToken.revoked_at.is_(None))
    ).first()
    if row is None:
        raise Unauthorized(_UNKNOWN)
    return actor_for(row)


# The same lookup as authenticate's, for the async hot paths (Open311 posts): no ORM session and no
# thread hop, which under load cost more than the query itself.
_TOKEN_SQL = "SELECT name, role, unit_id FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL"


async def authenticate_async(conn: AsyncConnection[Any], token: str | None, settings: Settings) -> Actor:
    """:func:`authenticate` on an async psycopg connection (to the primary: revocations count at once)."""
    if not token:
        raise Unauthorized(_MISSING)
    if _is_admin(token, settings):
        return Actor(name="admin", admin=True)
    cur = await conn.execute(_TOKEN_SQL, (_hash(token),), prepare=True)
    row = await cur.fetchone()
    if row is None:
        raise Unauthorized(_UNKNOWN)
    return _actor(row[0], row[1], row[2])


def _is_admin(token: str, settings: Settings) -> bool:
    return hmac.compare_digest(token.encode("utf-8", "surrogateescape"), admin_token(settings).encode())


def session_ref(session: Session, token: str, settings: Settings) -> tuple[Actor, str]:
    """The actor of a bearer token and a reference to it that a login session may carry instead of it.

    The reference is ``admin`` or the token's row id: it reveals nothing, and :func:`actor_by_ref`
    re-reads the row, so revoking the token ends the sessions opened with it.
    """
    actor = authenticate(session, token, settings)
    if actor.admin and actor.name == "admin":
        return actor, "admin"
    row = session.scalars(select(ApiToken.id).where(ApiToken.token_hash == _hash(token))).one()
    return actor, str(row)


def actor_by_ref(session: Session, ref: str) -> Actor | None:
    """The actor behind a :func:`session_ref` reference; None when its token was revoked or is gone."""
    if ref == "admin":
        return Actor(name="admin", admin=True)
    if not ref.isdigit():
        return None
    row = session.scalars(
        select(ApiToken).where(ApiToken.id == int(ref), ApiToken.revoked_at.is_(None))
    ).first()
    return actor_for(row) if row is not None else None


def actor_for(row: ApiToken) -> Actor:
    """The actor a token row stands for."""
    return _actor(row.name, row.role, row.unit_id)


def _actor(name: str, role: str, unit_id: int | None) -> Actor:
    if role == "unit":
        return Actor(name=f"token:{name}", unit_id=unit_id, role="unit")
    return Actor(name=f"token:{name}", role="admin" if role == "admin" else "reader")


def token_view(row: ApiToken) -> dict[str, object]:
    """A token's public record: never the token nor its hash."""
    return {
        "name": row.name,
        "role": row.role,
        "unit_id": row.unit_id,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


def list_tokens(session: Session, actor: Actor, *, include_revoked: bool = False) -> list[dict[str, object]]:
    """The issued tokens, oldest first (administrators only)."""
    require(actor, Action.MANAGE_TOKENS)
    stmt = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        stmt = stmt.where(ApiToken.revoked_at.is_(None))
    return [token_view(row) for row in session.scalars(stmt)]


def revoke_token(session: Session, name: str, actor: Actor, reason: str | None = None) -> dict[str, object]:
    """Revoke the token named ``name`` at once; revoking it again is refused."""
    require(actor, Action.MANAGE_TOKENS)
    row = session.scalars(select(ApiToken).where(ApiToken.name == name).with_for_update()).first()
    if row is None:
        raise NotFound(f"no token named {name!r}", name=name)
    if row.revoked_at is not None:
        raise Conflict(f"token {name!r} was already revoked on {row.revoked_at.isoformat()}", name=name)
    row.revoked_at = session.scalar(select(func.now()))
    session.flush()
    audit.record(session, actor, "revoke", "token", row.id, reason=reason, details={"name": name})
    return token_view(row)
