"""The async connection pool behind ``/resolve``: fails fast while the database is away, renews itself after.

psycopg's pool, left to itself, makes a caller wait its whole ``timeout`` (30 s by default) for a
connection while the server is down, and after an outage retries with a growing back-off, so it
could take minutes to serve again. Here a broken connection or a timed-out wait marks the database
down; while it is down each request tries one direct connection (immediate on a Unix socket, at most
``connect_timeout_s`` over TCP) and answers ``DatabaseUnavailable``; the first that succeeds replaces
the pool with a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from common.errors import DatabaseUnavailable

log = logging.getLogger("smartcode.api")

# While the database is down, a request within this many seconds of a failed probe is answered at
# once instead of probing again (many callers at once would otherwise each wait for a TCP timeout).
PROBE_INTERVAL_S = 0.25


class ResilientPool:
    """An ``AsyncConnectionPool`` that reports an outage at once and comes back by itself."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int,
        max_size: int,
        timeout_s: float,
        kwargs: dict[str, Any],
    ) -> None:
        self.conninfo = conninfo
        self.timeout_s = timeout_s
        self._min_size = min_size
        self._max_size = max_size
        # libpq counts connect_timeout in whole seconds.
        self._kwargs = {**kwargs, "connect_timeout": max(1, math.ceil(timeout_s))}
        self._pool = self._new_pool()
        self._down = False
        self._last_probe = 0.0
        self._renewing: asyncio.Lock | None = None
        self._retired: set[asyncio.Task[None]] = set()

    def _new_pool(self) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            self.conninfo,
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            timeout=self.timeout_s,
            kwargs=self._kwargs,
        )

    @property
    def down(self) -> bool:
        """Whether the last attempt found the database unreachable."""
        return self._down

    async def open(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        """Open the pool; with ``wait`` until ``min_size`` connections exist."""
        self._renewing = asyncio.Lock()
        await self._pool.open(wait=wait, timeout=timeout)

    async def close(self) -> None:
        """Close every connection, including pools retired after an outage."""
        await self._pool.close()
        for task in list(self._retired):
            await task

    async def connect(self) -> AsyncConnection[Any]:
        """One connection outside the pool, with the same options and time limit."""
        return await AsyncConnection.connect(self.conninfo, **self._kwargs)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection, or ``DatabaseUnavailable`` within about ``timeout_s``."""
        if self._down:
            await self._recover()
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.errors.QueryCanceled:
            raise  # a statement timeout: the server is there
        except psycopg.OperationalError as exc:  # PoolTimeout is one too
            self._mark_down(exc)
            raise unavailable() from exc

    def _mark_down(self, exc: BaseException) -> None:
        if not self._down:
            log.warning("database unreachable from the resolve pool: %s", exc)
        self._down = True
        self._last_probe = time.monotonic()

    async def _recover(self) -> None:
        """Probe the database; when it answers, swap in a fresh pool, else raise ``DatabaseUnavailable``."""
        if time.monotonic() - self._last_probe < PROBE_INTERVAL_S:
            raise unavailable()
        self._last_probe = time.monotonic()
        try:
            probe = await self.connect()
        except psycopg.Error as exc:
            raise unavailable() from exc
        await probe.close()
        assert self._renewing is not None, "open() the pool first"
        async with self._renewing:
            if not self._down:
                return  # another request renewed it meanwhile
            old, self._pool = self._pool, self._new_pool()
            await self._pool.open(wait=False)
            self._down = False
            log.warning("database reachable again: the resolve pool was renewed")
        # The old pool may still be backing off between reconnection attempts: close it in the background.
        task = asyncio.get_running_loop().create_task(old.close(timeout=1.0))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)


def unavailable() -> DatabaseUnavailable:
    """The error every request gets while the database is away (no server detail: it is logged)."""
    return DatabaseUnavailable("the database is unavailable")
