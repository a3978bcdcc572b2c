"""Request dependencies: the service context (settings, engine, area) and the caller's identity."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from common.settings import Settings
from gis.area import ServiceArea
from registry import tokens
from registry.db import Actor, transaction


@dataclass
class Services:
    """What every route needs, built once at start-up and kept on ``app.state.services``."""

    settings: Settings
    engine: Engine
    area: ServiceArea

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the route's block succeeds, rolled back otherwise."""
        with transaction(self.engine) as session:
            yield session


def services(request: Request) -> Services:
    """The app's service context."""
    return request.app.state.services


def bearer_token(request: Request) -> str | None:
    """The bearer token of the request, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def require_actor(request: Request, session: Session) -> Actor:
    """The authenticated caller, or ``Unauthorized``."""
    return tokens.authenticate(session, bearer_token(request), services(request).settings)


def optional_actor(request: Request, session: Session) -> Actor | None:
    """The authenticated caller when a token was sent; anonymous callers get None."""
    token = bearer_token(request)
    return tokens.authenticate(session, token, services(request).settings) if token else None
