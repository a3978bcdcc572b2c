"""Request dependencies: the service context (settings, engine, area) and the caller's identity."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import TypeVar

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.ratelimit import RateLimiter
from api.replicas import ReadRouter
from common.errors import Unauthorized
from common.settings import Settings
from gis.area import ServiceArea
from registry import tokens
from registry.access import ANONYMOUS, Action, Actor, require_role
from registry.db import transaction

T = TypeVar("T")


@dataclass
class Services:
    """What every route needs, built once at start-up and kept on ``app.state.services``."""

    settings: Settings
    engine: Engine
    area: ServiceArea
    # Where lookups read (a replica while it is fit); set by create_app, None: always the primary.
    reads: ReadRouter | None = None
    # Anonymous lookups per client address (GET /assets/{code}, GET /resolve?code=...).
    anonymous_limit: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.anonymous_limit = RateLimiter(self.settings.api.anonymous_rate_per_minute)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the route's block succeeds, rolled back otherwise."""
        with transaction(self.engine) as session:
            yield session

    def read(self, lookup: Callable[[Session], T]) -> T:
        """``lookup`` in a read transaction: on the replica while it is fit, else on the primary.

        Only for reads (tiles, features, asset reads): a replica refuses writes.
        """
        if self.reads is None:
            with self.session() as session:
                return lookup(session)
        return self.reads.run_sync(self.session, lookup)


def services(request: Request) -> Services:
    """The app's service context."""
    return request.app.state.services


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when there is none.

    The one parser of the service (routes and the /resolve fast path). Issued tokens are URL-safe
    ASCII; header bytes beyond that (decoded as latin-1) can match none of them and must not reach
    a comparison that only accepts ASCII strings, so they are refused here.
    """
    scheme, _, value = (authorization or "").partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    if not token.isascii() or not token.isprintable():
        raise Unauthorized("the bearer token is unknown or revoked")
    return token


def bearer_token(request: Request) -> str | None:
    """The bearer token of the request, if any."""
    return parse_bearer(request.headers.get("authorization"))


def current_actor(request: Request, session: Session) -> Actor:
    """The caller: the token's actor, else the map session's (safe reads only), else the anonymous actor."""
    token = bearer_token(request)
    if token:
        return tokens.authenticate(session, token, services(request).settings)
    if cookie_allowed(request.method, request.url.path):
        actor = session_actor(session, services(request).settings, request.cookies.get(SESSION_COOKIE))
        if actor is not None:
            return actor
    return ANONYMOUS


# --- the map's login session -------------------------------------------------------------------------
# Staff log in on /map/login with their token; the browser then holds only an HttpOnly, SameSite=Strict
# cookie: a reference to the token (its row id, or "admin"), an expiry and a nonce, signed with a key
# derived from the administrator token. The cookie counts only for GET/HEAD on the read endpoints the
# map uses, so a forged cross-site form can never write with it; every write still needs the bearer header.

SESSION_COOKIE = "smartcode_map"
_SAFE_METHODS = frozenset({"GET", "HEAD"})
COOKIE_READ_PATHS = (
    "/map",
    "/api/v1/assets",
    "/api/v1/resolve",
    "/api/v1/categories",
    "/api/v1/classes",
    "/api/v1/zones",
    "/api/v1/complaints",  # a complaint clicked on the map
    "/api/v1/hotspots",
    "/tiles/",
    "/ogc",
)


def cookie_allowed(method: str, path: str) -> bool:
    """Whether the session cookie may stand for a token on this request (a safe read the map makes)."""
    if method.upper() not in _SAFE_METHODS:
        return False
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in COOKIE_READ_PATHS)


def _session_key(settings: Settings) -> bytes:
    # Derived from the administrator token: every process of the deployment shares it, and replacing
    # the administrator token ends every session.
    return hmac.new(
        tokens.admin_token(settings).encode(), b"smartcode map session v1", hashlib.sha256
    ).digest()


def _mac(settings: Settings, payload: str) -> str:
    digest = hmac.new(_session_key(settings), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_session(settings: Settings, ref: str, *, now: float | None = None) -> str:
    """A signed session cookie value for the token reference ``ref`` (never the token itself)."""
    expires = int((now or time.time()) + settings.map.session_hours * 3600)
    payload = f"{ref}.{expires}.{secrets.token_urlsafe(9)}"
    return f"{payload}.{_mac(settings, payload)}"


def session_ref(settings: Settings, value: str | None, *, now: float | None = None) -> str | None:
    """The token reference of a valid, unexpired session cookie value; None otherwise."""
    if not value or not value.isascii():
        return None
    payload, _, mac = value.rpartition(".")
    parts = payload.split(".")
    if len(parts) != 3 or not hmac.compare_digest(mac, _mac(settings, payload)):
        return None
    ref, expires, _nonce = parts
    if not expires.isdigit() or int(expires) < (now or time.time()):
        return None
    return ref


def session_actor(session: Session, settings: Settings, value: str | None) -> Actor | None:
    """The actor of a session cookie value; None when it is missing, forged, expired or its token revoked."""
    ref = session_ref(settings, value)
    return tokens.actor_by_ref(session, ref) if ref is not None else None


def cookie_header_actor(svc: Services, cookie_header: str | None) -> Actor | None:
    """:func:`session_actor` for a raw Cookie header, with its own transaction (the ASGI fast paths)."""
    if not cookie_header:
        return None
    try:
        morsel = SimpleCookie(cookie_header).get(SESSION_COOKIE)
    except CookieError:
        return None
    if morsel is None:
        return None
    with svc.session() as session:
        return session_actor(session, svc.settings, morsel.value)


def client_address(request: Request) -> str:
    """The caller's address, the key of the anonymous rate limit."""
    return request.client.host if request.client else "unknown"


def require_actor(request: Request, session: Session, action: Action = Action.READ_FULL) -> Actor:
    """The caller if its role may do ``action`` (default: read the full registry) to some target.

    The service checks the target (which asset, which unit) with ``registry.access.require``.
    """
    return require_role(current_actor(request, session), action)
