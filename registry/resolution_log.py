"""The resolution log: every answer given, with its query, written to the PRIMARY database.

Lookups only read, on connections that refuse writes (and may be a replica's); the log is the one
thing a lookup causes to be written, and it goes through a writer that owns its own connection(s)
to the primary: :class:`DirectLog` (each entry written before the answer is returned) or
:class:`BatchLog` (entries queued and written in one INSERT every few milliseconds).

Reading the log back (:func:`get_resolution`, :func:`list_resolutions`) is done on the primary too:
an answer just given must be readable at once, which a lagging replica cannot promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from common.errors import NotFound
from registry.codes import parse_code

log = logging.getLogger("smartcode.resolution")

LOG_COLUMNS = "id, at, actor, channel, query, status, rule, asset_code, owner_id, answer"
# Rows travel as one JSON array parameter: one statement per batch, and the parsing happens in the
# server (another core) rather than in the API's event loop.
LOG_INSERT_SQL = (
    f"INSERT INTO resolution_log ({LOG_COLUMNS}) SELECT {LOG_COLUMNS} "
    "FROM jsonb_populate_recordset(NULL::resolution_log, %s::jsonb)"
)
NEXT_ID_SQL = "SELECT nextval('resolution_log_id_seq')"
NEXT_IDS_SQL = "SELECT nextval('resolution_log_id_seq') FROM generate_series(1, %s)"


def log_entry(
    log_id: int,
    at: dt.datetime,
    *,
    actor: str,
    channel: str,
    query: dict[str, Any],
    status: str,
    rule: str | None,
    asset_code: str | None,
    owner_id: int | None,
    answer: bytes,
) -> bytes:
    """One ``resolution_log`` row as a JSON object, embedding the answer's bytes as they were sent."""
    head = orjson.dumps(
        {
            "id": log_id,
            "at": at.isoformat(),
            "actor": actor,
            "channel": channel,
            "query": query,
            "status": status,
            "rule": rule,
            "asset_code": asset_code,
            "owner_id": owner_id,
        }
    )
    # Splicing bytes instead of re-serialising the answer: it is the largest part, already encoded.
    return head[:-1] + b',"answer":' + answer + b"}"


class ResolutionLog(Protocol):
    """Where answers are recorded: an id first (it goes into the answer), then the entry."""

    async def reserve_id(self) -> int:
        """A fresh log id."""
        ...

    async def write(self, entry: bytes) -> None:
        """Record the entry, a JSON object from :func:`log_entry` (now or soon)."""
        ...


# Something that lends a connection to the primary for one use (a pool's ``connection`` method).
Lender = Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]]


class DirectLog:
    """Writes each entry before the answer is returned (CLI, tests, ``SMARTCODE_RESOLVE_LOG_MODE=sync``)."""

    def __init__(self, connection: Lender) -> None:
        self._connection = connection

    @classmethod
    def on(cls, conn: AsyncConnection[Any]) -> DirectLog:
        """A writer on one open (autocommit) connection to the primary."""
        return cls(lambda: contextlib.nullcontext(conn))

    async def reserve_id(self) -> int:
        """A fresh id from the log's sequence."""
        async with self._connection() as conn:
            cur = await conn.execute(NEXT_ID_SQL, prepare=True)
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def write(self, entry: bytes) -> None:
        """INSERT the entry."""
        async with self._connection() as conn:
            await conn.execute(LOG_INSERT_SQL, ((b"[" + entry + b"]").decode(),), prepare=True)


class BatchLog:
    """Queues entries in memory and writes them with one INSERT every ``flush_ms`` or ``batch_rows``.

    What a crash loses: the entries queued since the last flush (at most ``flush_ms`` of answers,
    already sent to their callers). Ids come from the log's sequence in blocks, on the writer's own
    connection, so an id is known before the row exists; gaps in ids after a restart are expected.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[AsyncConnection[Any]]],
        *,
        flush_ms: float = 50.0,
        batch_rows: int = 1000,
        id_block: int = 1000,
    ) -> None:
        self._connect = connect
        self._flush_s = flush_ms / 1000.0
        self._batch_rows = batch_rows
        self._id_block = id_block
        self._ids: deque[int] = deque()
        self._pending: list[bytes] = []
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection[Any] | None = None
        self._closing = False
        self.written = 0
        self.failures = 0
        self.dropped = 0
        # While the database is away the queue grows; past this many rows the oldest are dropped (and
        # counted) rather than letting the API run out of memory.
        self.max_pending = max(batch_rows * 100, 10_000)

    def start(self) -> None:
        """Start the background flusher (call inside the running event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _connection(self) -> AsyncConnection[Any]:
        async with self._connect_lock:
            if self._conn is None or self._conn.closed:
                self._conn = await self._connect()
            return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        self._conn = None

    async def reserve_id(self) -> int:
        """The next id of the current block; a new block costs one query per ``id_block`` answers."""
        if not self._ids:
            conn = await self._connection()
            try:
                cur = await conn.execute(NEXT_IDS_SQL, (self._id_block,), prepare=True)
                fresh = [int(r[0]) for r in await cur.fetchall()]
            except (psycopg.Error, OSError):
                await self._drop_connection()
                raise
            if not self._ids:  # another request may have refilled while this one waited
                self._ids.extend(fresh)
        return self._ids.popleft()

    async def write(self, entry: bytes) -> None:
        """Queue the entry; it reaches the table at the next flush."""
        if len(self._pending) >= self.max_pending:
            del self._pending[: len(self._pending) - self.max_pending + 1]
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("resolution log: database unreachable, %d entries dropped so far", self.dropped)
        self._pending.append(entry)
        if len(self._pending) >= self._batch_rows:
            self._wake.set()

    async def flush(self) -> None:
        """Write everything queued so far (the read endpoints call this so they see their own answers)."""
        async with self._flush_lock:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._insert(batch)
                except (psycopg.Error, OSError):
                    self.failures += 1
                    self._pending = batch + self._pending  # keep them for the next attempt
                    await self._drop_connection()
                    raise

    async def _insert(self, batch: list[bytes]) -> None:
        conn = await self._connection()
        await conn.execute(LOG_INSERT_SQL, ((b"[" + b",".join(batch) + b"]").decode(),))
        self.written += len(batch)

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._flush_s)
            self._wake.clear()
            try:
                await self.flush()
            except (psycopg.Error, OSError):
                await asyncio.sleep(self._flush_s)  # database away: retry later, keep the queue

    async def close(self) -> None:
        """Flush what is queued and stop the flusher."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        try:
            await self.flush()
        finally:
            await self._drop_connection()


# ------------------------------------------------------------------------------------------------
# Reading the log
# ------------------------------------------------------------------------------------------------


async def get_resolution(conn: AsyncConnection[Any], log_id: int) -> dict[str, Any]:
    """One logged answer with who asked, when and through which channel; ``NotFound`` otherwise."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, at, actor, channel, query, answer FROM resolution_log WHERE id = %s",
        (log_id,),
        prepare=True,
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no resolution with id {log_id}", resolution_id=log_id)
    return {**row, "at": row["at"].isoformat()}


async def list_resolutions(
    conn: AsyncConnection[Any],
    *,
    asset: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Logged answers, newest first, optionally for one asset code, one status or since a time."""
    conditions = ["true"]
    params: list[Any] = []
    if asset:
        conditions.append("asset_code = %s")
        params.append(str(parse_code(asset)))
    if status:
        conditions.append("status = %s")
        params.append(status)
    if since is not None:
        conditions.append("at >= %s")
        params.append(since)
    params.append(limit)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, at, actor, channel, status, rule, asset_code, owner_id, query FROM resolution_log "
        f"WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT %s",
        params,
    )
    return [{**r, "at": r["at"].isoformat()} for r in await cur.fetchall()]
