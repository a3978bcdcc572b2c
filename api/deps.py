"""Request dependencies: the service context (settings, engine, area) and the caller's identity."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.ratelimit import RateLimiter
from common.errors import Unauthorized
from common.settings import Settings
from gis.area import ServiceArea
from registry import tokens
from registry.access import ANONYMOUS, Action, Actor, require_role
from registry.db import transaction


@dataclass
class Services:
    """What every route needs, built once at start-up and kept on ``app.state.services``."""

    settings: Settings
    engine: Engine
    area: ServiceArea
    # Anonymous lookups per client address (GET /assets/{code}, GET /resolve?code=...).
    anonymous_limit: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.anonymous_limit = RateLimiter(self.settings.api.anonymous_rate_per_minute)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the route's block succeeds, rolled back otherwise."""
        with transaction(self.engine) as session:
            yield session


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
    """The caller: the token's actor, or the anonymous actor when no token was sent."""
    token = bearer_token(request)
    return tokens.authenticate(session, token, services(request).settings) if token else ANONYMOUS


def client_address(request: Request) -> str:
    """The caller's address, the key of the anonymous rate limit."""
    return request.client.host if request.client else "unknown"


def require_actor(request: Request, session: Session, action: Action = Action.READ_FULL) -> Actor:
    """The caller if its role may do ``action`` (default: read the full registry) to some target.

    The service checks the target (which asset, which unit) with ``registry.access.require``.
    """
    return require_role(current_actor(request, session), action)
