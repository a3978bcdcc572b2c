"""Read routing: lookups on a replica when one is configured and fit to serve, everything else on the primary.

What reads where (docs/replicas.md): resolve by code and by location, the scan page, tiles, OGC API
Features and asset reads (GET) run through :class:`ReadRouter`; writes, the resolution log, imports
and every other route use the primary as before.

- Health: a loop measures the replica every ``replica_check_s`` (0.5 s) with a 1 s limit on connecting
  and querying. A replica that cannot be reached, or that lags more than ``max_replica_lag_s`` behind
  the primary, is skipped until a later check finds it fit again.
- Failure during a read: the read is run again on the primary at once and the replica is skipped until
  the next good check, so losing the replica costs no failed request.
- Read your own writes: after a successful write (any method but GET/HEAD/OPTIONS) the response
  carries the primary's WAL position at that moment (cookie ``smartcode_lsn`` and header
  ``X-Smartcode-Lsn``, kept ``read_your_writes_s``). A request that brings it back is served by the
  replica only if the replica has replayed up to that position, else by the primary.
- ``X-Served-By: replica|primary`` on every routed read says which server answered (a role, never a
  host name).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.pool import ResilientPool
from common.errors import DatabaseUnavailable, Unauthorized
from common.settings import Settings
from registry.db import make_engine, transaction
from registry.replica import (
    COMMIT_LSN_SQL,
    PRIMARY_LSN_SQL,
    STANDBY_SQL,
    Lag,
    format_lsn,
    measure_lag,
    parse_lsn,
)
from registry.resolution import conninfo_from_url, resolution_connection_kwargs

log = logging.getLogger("smartcode.api")

T = TypeVar("T")
LSN_COOKIE = "smartcode_lsn"
LSN_HEADER = "x-smartcode-lsn"
SERVED_BY_HEADER = "x-served-by"
COOKIE_ATTRIBUTES = "Path=/; HttpOnly; SameSite=Lax"
# A check that cannot connect and query within this time finds the replica down (libpq's own
# connect_timeout counts whole seconds, at least 2).
CHECK_TIMEOUT_S = 1.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Whether a server has what the caller wrote: a standby once it replayed that far, a primary always.
_REPLAYED_SQL = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn OR NOT pg_is_in_recovery()"
_REPLAYED_ORM = text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn) OR NOT pg_is_in_recovery()")


@dataclass
class RequestRoute:
    """Per request: the position the caller must see (its last write), and who answered."""

    min_lsn: int | None = None
    served_by: str | None = None


# A mutable holder per request: routes run in a thread pool with a copy of the context, and what
# they record here must reach the middleware that writes the response headers.
_route: ContextVar[RequestRoute | None] = ContextVar("smartcode_read_route", default=None)


def request_route() -> RequestRoute:
    """This request's routing record (a detached one outside a request)."""
    return _route.get() or RequestRoute()


def on_replica() -> bool:
    """Whether the read running now is on the replica (a route may then need to ask for the primary)."""
    return request_route().served_by == "replica"


class PrimaryNeeded(Exception):
    """Raised by a read that found it must run on the primary (e.g. it has to write a cache first)."""


@dataclass(frozen=True)
class ReplicaHealth:
    """The last check of the replica, as /health shows it."""

    reachable: bool
    usable: bool
    lag: Lag | None
    checked_at: float  # time.monotonic()
    reason: str | None  # why it is skipped, in words a person reads


class ReadRouter:
    """Chooses the server of each lookup: the replica while it is fit, the primary otherwise."""

    def __init__(self, settings: Settings, primary_conninfo: str, read_url: str | None) -> None:
        """``read_url`` (a SQLAlchemy URL) names the replica; without it every read goes to the primary."""
        self.settings = settings.database
        self.primary_conninfo = primary_conninfo
        self.replica_conninfo = conninfo_from_url(read_url) if read_url else None
        self.replica_pool: ResilientPool | None = None
        self.replica_engine: Engine | None = None
        if read_url and self.replica_conninfo:
            self.replica_pool = ResilientPool(
                self.replica_conninfo,
                min_size=1,
                max_size=settings.resolve.pool_size,
                timeout_s=min(CHECK_TIMEOUT_S, settings.database.connect_timeout_s),
                kwargs=resolution_connection_kwargs(read_only=True),
            )
            self.replica_engine = make_engine(
                read_url,
                pool_size=settings.database.pool_size,
                connect_timeout_s=settings.database.connect_timeout_s,
                options="-c default_transaction_read_only=on",
            )
        self.health = ReplicaHealth(False, False, None, 0.0, "not checked yet")
        self._task: asyncio.Task[None] | None = None
        self._monitor: dict[str, AsyncConnection[Any] | None] = {"replica": None, "primary": None}

    @property
    def enabled(self) -> bool:
        """Whether a replica is configured at all."""
        return self.replica_pool is not None

    @property
    def usable(self) -> bool:
        """Whether the last check found the replica reachable and within the lag bound."""
        return self.enabled and self.health.usable

    # --------------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Open the replica's pool (without waiting: it may be down) and start the health loop."""
        if self.replica_pool is None:
            return
        await self.replica_pool.open(wait=False)
        await self.check()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        """Stop the health loop and close every connection to the replica."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for key, conn in self._monitor.items():
            if conn is not None:
                await conn.close()
            self._monitor[key] = None
        if self.replica_pool is not None:
            await self.replica_pool.close()
        if self.replica_engine is not None:
            self.replica_engine.dispose()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.replica_check_s)
            try:
                await self.check()
            except Exception:  # the loop must outlive any surprise; the next check tries again
                log.exception("replica health check failed")

    async def check(self) -> ReplicaHealth:
        """Measure the replica now: reachable, how far behind, fit to serve reads."""
        try:
            in_recovery, replayed, age = await asyncio.wait_for(
                self._query("replica", STANDBY_SQL), CHECK_TIMEOUT_S
            )
        except (psycopg.Error, OSError, TimeoutError) as exc:
            return self._record(
                ReplicaHealth(False, False, None, time.monotonic(), f"unreachable: {_kind(exc)}")
            )
        try:
            (primary_lsn,) = await asyncio.wait_for(self._query("primary", PRIMARY_LSN_SQL), CHECK_TIMEOUT_S)
        except (psycopg.Error, OSError, TimeoutError):
            # With the primary away nothing new is written: the replica is the best answer there is.
            lag = measure_lag(in_recovery, replayed, age, None)
            return self._record(ReplicaHealth(True, True, lag, time.monotonic(), None))
        lag = measure_lag(in_recovery, replayed, age, primary_lsn)
        bound = self.settings.max_replica_lag_s
        if lag.bytes is None or (lag.bytes > 0 and (lag.seconds is None or lag.seconds > bound)):
            reason = f"lagging more than {bound:g} s"
            return self._record(ReplicaHealth(True, False, lag, time.monotonic(), reason))
        return self._record(ReplicaHealth(True, True, lag, time.monotonic(), None))

    async def _query(self, which: str, statement: str) -> tuple[Any, ...]:
        """One row of ``statement`` on the monitoring connection to ``which`` (reopened when lost)."""
        conn = self._monitor[which]
        if conn is None or conn.closed:
            conninfo = self.replica_conninfo if which == "replica" else self.primary_conninfo
            assert conninfo is not None
            conn = await AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=2)
            self._monitor[which] = conn
        try:
            row = await (await conn.execute(statement)).fetchone()
        except BaseException:
            self._monitor[which] = None
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        assert row is not None
        return tuple(row)

    def _record(self, health: ReplicaHealth) -> ReplicaHealth:
        if health.usable != self.health.usable:
            if health.usable:
                log.warning("replica fit again: lookups read there")
            else:
                log.warning("replica skipped (%s): lookups read the primary", health.reason)
        self.health = health
        return health

    def lost(self, exc: BaseException) -> None:
        """A read on the replica failed: skip it until the next good check."""
        if self.health.usable:
            log.warning("replica read failed (%s): lookups read the primary", _kind(exc))
        self.health = ReplicaHealth(False, False, self.health.lag, time.monotonic(), f"failed: {_kind(exc)}")

    # ------------------------------------------------------------------------------------- reads

    async def run(self, primary: ResilientPool, lookup: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """``lookup`` on a replica connection when the replica is fit (and has replayed the caller's
        last write), else on ``primary``; a replica that fails meanwhile is left for the primary."""
        route = request_route()
        if self.usable and self.replica_pool is not None:
            try:
                async with self.replica_pool.connection() as conn:
                    if route.min_lsn is None or await _replayed(conn, route.min_lsn):
                        route.served_by = "replica"
                        return await lookup(conn)
            except (DatabaseUnavailable, psycopg.OperationalError) as exc:
                self.lost(exc)
        route.served_by = "primary"
        async with primary.connection() as conn:
            return await lookup(conn)

    def run_sync(
        self, primary: Callable[[], contextlib.AbstractContextManager[Session]], read: Callable[[Session], T]
    ) -> T:
        """:meth:`run` for the ORM routes (tiles, features, assets): ``read`` in a replica transaction
        when fit, else in ``primary()``'s."""
        route = request_route()
        if self.usable and self.replica_engine is not None:
            try:
                with transaction(self.replica_engine) as session:
                    if (
                        route.min_lsn is None
                        or session.execute(
                            _REPLAYED_ORM,
                            {"lsn": format_lsn(route.min_lsn)},
                        ).scalar_one()
                    ):
                        route.served_by = "replica"
                        return read(session)
            except DatabaseUnavailable as exc:
                self.lost(exc)
            except (PrimaryNeeded, Unauthorized):
                # A token made a moment ago may not have reached the replica yet: the primary decides.
                pass
        route.served_by = "primary"
        with primary() as session:
            return read(session)

    def describe(self) -> dict[str, Any] | None:
        """The replica's part of /health: None without a replica."""
        if not self.enabled:
            return None
        h = self.health
        lag = h.lag
        return {
            "state": "serving" if h.usable else ("lagging" if h.reachable else "down"),
            "serving_reads": h.usable,
            "reason": h.reason,
            "lag_bytes": None if lag is None else lag.bytes,
            "lag_s": None if lag is None or lag.seconds is None else round(lag.seconds, 3),
            "replay_lsn": None if lag is None or lag.replay_lsn is None else format_lsn(lag.replay_lsn),
            "max_lag_s": self.settings.max_replica_lag_s,
            "checked_s_ago": round(time.monotonic() - h.checked_at, 3) if h.checked_at else None,
        }

    async def commit_lsn(self, primary: ResilientPool) -> str | None:
        """The primary's WAL position now (after the caller's commit); None when it cannot be read."""
        try:
            async with primary.connection() as conn:
                row = await (await conn.execute(COMMIT_LSN_SQL)).fetchone()
        except (DatabaseUnavailable, psycopg.Error):
            return None
        return None if row is None else str(row[0])


async def _replayed(conn: AsyncConnection[Any], lsn: int) -> bool:
    row = await (await conn.execute(_REPLAYED_SQL, (format_lsn(lsn),))).fetchone()
    return bool(row and row[0])


def _kind(exc: BaseException) -> str:
    # The class of the error, never its text: messages can name hosts and sockets.
    return type(exc).__name__


class ReadRouting:
    """ASGI middleware: the per-request routing record, ``X-Served-By``, and read-your-writes positions."""

    def __init__(self, app: ASGIApp, router: ReadRouter, primary: ResilientPool, window_s: float) -> None:
        self.app = app
        self.router = router
        self.primary = primary
        self.window_s = window_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its routing record; add the headers on the way out."""
        if scope["type"] != "http" or not self.router.enabled:
            await self.app(scope, receive, send)
            return
        route = RequestRoute(min_lsn=_min_lsn(scope["headers"]) if self.window_s > 0 else None)
        token = _route.set(route)
        unsafe = scope["method"] not in _SAFE_METHODS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if route.served_by is not None:
                    headers.append((SERVED_BY_HEADER.encode(), route.served_by.encode()))
                if unsafe and self.window_s > 0 and message["status"] < 400:
                    lsn = await self.router.commit_lsn(self.primary)
                    if lsn is not None:
                        headers.append((LSN_HEADER.encode(), lsn.encode()))
                        cookie = f"{LSN_COOKIE}={lsn}; Max-Age={int(self.window_s)}; {COOKIE_ATTRIBUTES}"
                        headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            _route.reset(token)


def _min_lsn(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The write position the caller must see: its header, else its cookie; the larger of both."""
    found: list[int] = []
    for name, value in headers:
        if name == LSN_HEADER.encode():
            lsn = parse_lsn(value.decode("latin-1").strip())
            if lsn is not None:
                found.append(lsn)
        elif name == b"cookie":
            try:
                morsel = SimpleCookie(value.decode("latin-1")).get(LSN_COOKIE)
            except CookieError:
                continue
            lsn = parse_lsn(morsel.value) if morsel is not None else None
            if lsn is not None:
                found.append(lsn)
    return max(found) if found else None
