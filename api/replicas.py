"""Read routing: lookups on a replica when one is configured and fit to serve, everything else on the primary.

What reads where (docs/replicas.md): resolve by code and by location, the scan page, tiles, OGC API
Features and asset reads (GET) run through :class:`ReadRouter`; writes, the resolution log, imports
and every other route use the primary as before.

- Health: a loop measures the replica every ``replica_check_s`` (0.5 s) with a 1 s limit on connecting
  and querying. A replica that cannot be reached, or that lags more than ``max_replica_lag_s`` behind
  the primary, is skipped until a later check finds it fit again.
- Discovery: on the embedded cluster the same loop looks for its standby at every check, so one
  created while the API runs is read from once it is fit, and one removed is let go (no restart). A
  read URL from the settings is fixed.
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


@dataclass(frozen=True)
class _Target:
    """One replica the router reads from: its URL, a pool for lookups and an engine for ORM reads."""

    url: str
    conninfo: str
    pool: ResilientPool
    engine: Engine


class ReadRouter:
    """Chooses the server of each lookup: the replica while it is fit, the primary otherwise."""

    def __init__(
        self,
        settings: Settings,
        primary_conninfo: str,
        read_url: str | None,
        *,
        locate: Callable[[], str | None] | None = None,
    ) -> None:
        """``read_url`` (a SQLAlchemy URL) names the replica; ``locate`` instead finds it again at every
        check (the embedded standby, created or removed while the API runs); neither: every read goes
        to the primary."""
        self.settings = settings.database
        self._read_pool_size = settings.resolve.pool_size
        self.primary_conninfo = primary_conninfo
        self._locate = locate
        self._target: _Target | None = None
        if read_url and locate is None:
            self._target = self._make_target(read_url)
        self.health = ReplicaHealth(False, False, None, 0.0, "not checked yet")
        # A replica found while the API runs is used only once it has replayed the primary's position
        # as the first check after it was found measured it (see _caught_up_since_found).
        self._joining = False
        self._join_lsn: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()
        self._monitor: dict[str, AsyncConnection[Any] | None] = {"replica": None, "primary": None}

    def _make_target(self, url: str) -> _Target:
        conninfo = conninfo_from_url(url)
        pool = ResilientPool(
            conninfo,
            min_size=1,
            max_size=self._read_pool_size,
            timeout_s=min(CHECK_TIMEOUT_S, self.settings.connect_timeout_s),
            kwargs=resolution_connection_kwargs(read_only=True),
        )
        engine = make_engine(
            url,
            pool_size=self.settings.pool_size,
            connect_timeout_s=self.settings.connect_timeout_s,
            options="-c default_transaction_read_only=on",
        )
        return _Target(url, conninfo, pool, engine)

    @property
    def replica_conninfo(self) -> str | None:
        """The libpq connection string of the replica read now; None without one."""
        return None if self._target is None else self._target.conninfo

    @property
    def enabled(self) -> bool:
        """Whether a replica is configured (or was found) at all."""
        return self._target is not None

    @property
    def watching(self) -> bool:
        """Whether the replica is looked for again at every check (it may appear or go any time)."""
        return self._locate is not None

    @property
    def usable(self) -> bool:
        """Whether the last check found the replica reachable and within the lag bound."""
        return self.enabled and self.health.usable

    # --------------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Find the replica, open its pool (without waiting: it may be down) and start the check loop."""
        await self._discover(joining=False)
        if self._target is not None:
            await self._target.pool.open(wait=False)
            await self.check()
        if self._target is not None or self._locate is not None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        """Stop the check loop and close every connection to the replica."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for key in self._monitor:
            await self._close_monitor(key)
        target, self._target = self._target, None
        if target is not None:
            await _dispose(target)
        for task in list(self._retired):
            await task

    async def _close_monitor(self, which: str) -> None:
        conn, self._monitor[which] = self._monitor[which], None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.replica_check_s)
            try:
                await self._discover(joining=True)
                if self._target is not None:
                    await self.check()
            except Exception:  # the loop must outlive any surprise; the next check tries again
                log.exception("replica health check failed")

    async def _discover(self, *, joining: bool) -> None:
        """Ask ``locate`` where the replica is now and switch to it (or to none) when that changed.

        ``joining``: the API is serving already, so a replica found now must first catch up with
        what was written before it was known (see :meth:`_caught_up_since_found`).
        """
        if self._locate is None:
            return
        try:
            url = self._locate()
        except OSError as exc:  # e.g. a data directory this account may not look into
            log.debug("replica discovery failed (%s): keeping the current replica", _kind(exc))
            return
        old = self._target
        if url == (None if old is None else old.url):
            return
        self._target = None
        self._joining, self._join_lsn = False, None
        self.health = ReplicaHealth(False, False, None, 0.0, "not checked yet")
        await self._close_monitor("replica")
        if url is not None:
            target = self._make_target(url)
            await target.pool.open(wait=False)
            self._target = target
            self._joining = joining
            log.warning("replica found: lookups read there once a check finds it fit")
        else:
            await self._close_monitor("primary")
            log.warning("replica removed: lookups read the primary")
        if old is not None:
            # Reads still running there finish (or fall back to the primary): close it in the background.
            task = asyncio.get_running_loop().create_task(_dispose(old))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    async def check(self) -> ReplicaHealth:
        """Measure the replica now: reachable, how far behind, fit to serve reads."""
        if self._target is None:
            return self.health
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
            lag = measure_lag(in_recovery, replayed, age, None)
            if self._joining:
                # A replica just found may lack writes answered before it was known (they carried no
                # WAL position): it waits until the primary can say how far it must replay.
                reason = "just found: the primary cannot say how far to replay"
                return self._record(ReplicaHealth(True, False, lag, time.monotonic(), reason))
            # With the primary away nothing new is written: the replica is the best answer there is.
            return self._record(ReplicaHealth(True, True, lag, time.monotonic(), None))
        lag = measure_lag(in_recovery, replayed, age, primary_lsn)
        if not self._caught_up_since_found(in_recovery, replayed, primary_lsn):
            reason = "just found: replaying what was written before"
            return self._record(ReplicaHealth(True, False, lag, time.monotonic(), reason))
        bound = self.settings.max_replica_lag_s
        if lag.bytes is None or (lag.bytes > 0 and (lag.seconds is None or lag.seconds > bound)):
            reason = f"lagging more than {bound:g} s"
            return self._record(ReplicaHealth(True, False, lag, time.monotonic(), reason))
        return self._record(ReplicaHealth(True, True, lag, time.monotonic(), None))

    def _caught_up_since_found(self, in_recovery: bool, replayed: str | None, primary_lsn: str) -> bool:
        """Whether a replica found while the API runs has every write made before it was found.

        Writes whose response began before then carry no WAL position (no replica was known), so
        their writers would not be kept off a replica that lacks them. They committed before the
        first check after the replica was found, so the primary's position at that check is enough.
        """
        if not self._joining:
            return True
        if self._join_lsn is None:
            self._join_lsn = parse_lsn(primary_lsn)
        if self._join_lsn is None:
            return False
        if measure_lag(in_recovery, replayed, None, format_lsn(self._join_lsn)).bytes != 0:
            return False
        self._joining, self._join_lsn = False, None
        return True

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

    def lost(self, exc: BaseException, target: _Target | None = None) -> None:
        """A read on the replica failed: skip it until the next good check.

        ``target``: the replica the read ran on; a replica already replaced meanwhile is let go silently.
        """
        if target is not None and target is not self._target:
            return
        if self.health.usable:
            log.warning("replica read failed (%s): lookups read the primary", _kind(exc))
        self.health = ReplicaHealth(False, False, self.health.lag, time.monotonic(), f"failed: {_kind(exc)}")

    # ------------------------------------------------------------------------------------- reads

    async def run(self, primary: ResilientPool, lookup: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """``lookup`` on a replica connection when the replica is fit (and has replayed the caller's
        last write), else on ``primary``; a replica that fails meanwhile is left for the primary."""
        route = request_route()
        target = self._target
        if target is not None and self.health.usable:
            try:
                async with target.pool.connection() as conn:
                    if route.min_lsn is None or await _replayed(conn, route.min_lsn):
                        route.served_by = "replica"
                        return await lookup(conn)
            except (DatabaseUnavailable, psycopg.OperationalError) as exc:
                self.lost(exc, target)
        route.served_by = "primary"
        async with primary.connection() as conn:
            return await lookup(conn)

    def run_sync(
        self, primary: Callable[[], contextlib.AbstractContextManager[Session]], read: Callable[[Session], T]
    ) -> T:
        """:meth:`run` for the ORM routes (tiles, features, assets): ``read`` in a replica transaction
        when fit, else in ``primary()``'s."""
        route = request_route()
        # One read of the target: the check loop may swap it meanwhile (this runs in a worker thread).
        target = self._target
        if target is not None and self.health.usable:
            try:
                with transaction(target.engine) as session:
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
                self.lost(exc, target)
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


async def _dispose(target: _Target) -> None:
    """Close a replica's pool and engine (its checked-out connections close when they come back)."""
    await target.pool.close()
    target.engine.dispose()


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
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        unsafe = scope["method"] not in _SAFE_METHODS
        # Without a replica there is nothing to route, except that a write must still get its position
        # if a replica is found before it answers (ReadRouter._caught_up_since_found relies on it).
        if not self.router.enabled and not (unsafe and self.router.watching):
            await self.app(scope, receive, send)
            return
        route = RequestRoute(min_lsn=_min_lsn(scope["headers"]) if self.window_s > 0 else None)
        token = _route.set(route)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if route.served_by is not None:
                    headers.append((SERVED_BY_HEADER.encode(), route.served_by.encode()))
                if unsafe and self.window_s > 0 and message["status"] < 400 and self.router.enabled:
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
