"""The webhook delivery worker: outbox events to subscribers, signed, at least once, in order per subject.

All of its state is in tables (migration 0019), so a worker that stops, crashes or is killed loses
nothing: the next one to start carries on.

1. **Fan-out**: committed outbox events not yet fanned out become one ``webhook_deliveries`` row per
   enabled subscription that wants their type. One worker at a time does this (a transaction-scoped
   advisory lock), in id order, up to a thousand events per statement; an event nobody wants is only
   marked as fanned out, in the same statement as the others.
2. **Claim**: pending deliveries that are due, not leased, whose subscription is enabled and which have
   no earlier pending delivery of the same subject to the same subscription (only the head of each
   subject's queue), are leased in one statement (``FOR UPDATE SKIP LOCKED``: two workers never take the
   same one) for ``lease_s`` seconds, up to twice ``concurrency`` at a time.
3. **Send**: different subjects go out concurrently, at most ``concurrency`` requests at once, over kept
   connections, with the Standard Webhooks headers. A claimed delivery that waited so long for a free
   slot that its lease could run out during the request is handed back unsent.
4. **Record**: outcomes (delivered, retry at the next step of the schedule, dead, or 410: the
   subscription is disabled) and their attempts are written by one statement per batch — whatever
   finished while the previous batch was being written — and only where the lease is still this
   worker's. A worker that died mid-request leaves a lease that runs out: the delivery is sent again,
   with the same ``webhook-id``. The next event of a subject becomes claimable once its head is recorded.

Waking up costs little: ``LISTEN smartcode_events`` wakes the worker at each commit that emitted an
event (coalesced for a few milliseconds), but only while some subscription is enabled. With none, the
worker does not listen to commits at all: it marks what accumulated in bulk every ``poll_s`` seconds,
and a change to the subscriptions (``NOTIFY smartcode_webhook_subscriptions``, sent by
``registry.webhooks``, or seen at the next ``poll_s`` look) starts the listening again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool

from common.settings import WebhookSettings
from registry.access import Actor
from registry.events import CHANNEL
from registry.outbox_retention import keep_pruning
from registry.webhooks import SUBSCRIPTIONS_CHANNEL, _host_allowed, message_id, secret_key, sign

log = logging.getLogger("smartcode.webhooks")

# Advisory lock (namespace, key) of the fan-out: "WHKS", 1.
_FANOUT_LOCK = (0x57484B53, 1)
_FANOUT_BATCH = 1000
_RESPONSE_KEPT = 1024  # characters of an answer kept in the log
_RESPONSE_READ = 64 * 1024  # bytes read of an answer at most
_USER_AGENT = "smartcode-webhooks/1"
# Deliveries claimed ahead of the free request slots, as a multiple of ``concurrency``: the next ones
# are ready when a request ends, and one claim statement serves several deliveries.
_PREFETCH = 2

_FANOUT = """
WITH ev AS (
    SELECT id, type, subject FROM event_outbox WHERE fanned_out_at IS NULL ORDER BY id LIMIT %(n)s
), ins AS (
    INSERT INTO webhook_deliveries (subscription_id, event_id, subject)
    SELECT s.id, ev.id, ev.subject FROM ev
    JOIN webhook_subscriptions s
      ON s.enabled AND s.deleted_at IS NULL AND (ev.type = ANY (s.events) OR '*' = ANY (s.events))
    ORDER BY ev.id, s.id
    ON CONFLICT (subscription_id, event_id) DO NOTHING
    RETURNING 1
), marked AS (
    UPDATE event_outbox e SET fanned_out_at = now() FROM ev WHERE e.id = ev.id RETURNING 1
)
SELECT (SELECT count(*) FROM marked) AS marked, (SELECT count(*) FROM ins) AS made
"""

_CLAIM = """
WITH c AS (
    SELECT d.id FROM webhook_deliveries d
    JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.enabled AND s.deleted_at IS NULL
    WHERE d.state = 'pending' AND d.next_attempt_at <= now()
      AND (d.leased_until IS NULL OR d.leased_until <= now())
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries p
          WHERE p.subscription_id = d.subscription_id AND p.subject = d.subject
            AND p.state = 'pending' AND p.event_id < d.event_id)
    ORDER BY d.next_attempt_at, d.id
    LIMIT %(n)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET leased_until = now() + make_interval(secs => %(lease)s), lease_token = %(token)s,
    attempts = d.attempts + 1, round_attempts = d.round_attempts + 1
FROM c, event_outbox e, webhook_subscriptions s
WHERE d.id = c.id AND e.id = d.event_id AND s.id = d.subscription_id
RETURNING d.id, d.event_id, d.subscription_id, d.attempts, d.round_attempts, e.type, e.occurred_at,
          e.data, s.url, s.secret
"""

# Seconds until something may become claimable: a retry falling due, or a lease running out (a worker
# died). A due delivery waiting behind its subject's head is neither: the head's end wakes the loop.
_NEXT_DUE = """
SELECT extract(epoch FROM least(
    (SELECT min(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at > now()),
    (SELECT min(leased_until) FROM webhook_deliveries WHERE state = 'pending' AND leased_until > now())
) - now())
"""

# The outcomes of a batch, one row each. ``release``: handed back unsent (the attempt the claim counted
# is taken back); ``abandon``: sent, the answer never came (stopped mid-request): sent again at once.
_RECORD = """
WITH o AS (
    SELECT * FROM unnest(
        CAST(%(id)s AS bigint[]), CAST(%(token)s AS text[]), CAST(%(state)s AS text[]),
        CAST(%(retry_in)s AS float8[]), CAST(%(status)s AS int[]), CAST(%(error)s AS text[]),
        CAST(%(latency)s AS float8[]), CAST(%(attempt)s AS int[]), CAST(%(started)s AS timestamptz[]),
        CAST(%(response)s AS text[]), CAST(%(gone)s AS bool[])
    ) AS o(id, token, state, retry_in, status, error, latency, attempt, started, response, gone)
), upd AS (
    UPDATE webhook_deliveries d SET
        state = CASE WHEN o.state IN ('release', 'abandon') THEN 'pending' ELSE o.state END,
        next_attempt_at = CASE WHEN o.state = 'pending'
                               THEN now() + make_interval(secs => o.retry_in) ELSE d.next_attempt_at END,
        leased_until = NULL, lease_token = NULL,
        attempts = d.attempts - CAST(o.state = 'release' AS int),
        round_attempts = d.round_attempts - CAST(o.state = 'release' AS int),
        last_status = CASE WHEN o.state IN ('release', 'abandon') THEN d.last_status ELSE o.status END,
        last_error = CASE WHEN o.state IN ('release', 'abandon') THEN d.last_error ELSE o.error END,
        last_latency_ms = CASE WHEN o.state IN ('release', 'abandon')
                               THEN d.last_latency_ms ELSE o.latency END,
        delivered_at = CASE WHEN o.state = 'delivered' THEN now() ELSE d.delivered_at END,
        dead_at = CASE WHEN o.state = 'dead' THEN now() ELSE d.dead_at END
    FROM o
    WHERE d.id = o.id AND d.lease_token = o.token
    RETURNING d.subscription_id, o.gone
), logged AS (
    -- Every attempt made is logged, even one whose lease another worker took over meanwhile.
    INSERT INTO webhook_attempts (delivery_id, attempt, started_at, latency_ms, status_code, error, response)
    SELECT id, attempt, started, latency, status, error, response FROM o
    WHERE state NOT IN ('release', 'abandon')
    ORDER BY started, id
    RETURNING 1
), gone AS (
    UPDATE webhook_subscriptions SET enabled = false, updated_at = now(),
        disabled_reason = 'the receiver answered 410 Gone at ' || now()::text
    WHERE id IN (SELECT subscription_id FROM upd WHERE gone) AND enabled
    RETURNING 1
)
SELECT (SELECT count(*) FROM upd) AS mine, (SELECT count(*) FROM logged) AS logged,
       (SELECT count(*) FROM gone) AS gone
"""

_LIVE = "SELECT EXISTS (SELECT 1 FROM webhook_subscriptions WHERE enabled AND deleted_at IS NULL)"


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    state: str  # delivered | pending (retry) | dead
    status: int | None
    error: str | None
    response: str | None
    retry_in: float = 0.0
    gone: bool = False


# How long a wake-up waits for further commits before stepping (latency budget: 1 s).
_COALESCE_S = 0.02


def retry_delay(
    settings: WebhookSettings, round_attempts: int, rng: random.Random | None = None
) -> float | None:
    """Seconds before the next attempt after ``round_attempts`` failed ones; None when they are used up."""
    if round_attempts > len(settings.schedule_s):
        return None
    base = settings.schedule_s[round_attempts - 1]
    spread = settings.jitter
    return max(0.0, base * (1 + (rng or random).uniform(-spread, spread)))


def body_of(event_type: str, occurred_at: dt.datetime, data: Any) -> bytes:
    """The request body of an event: ``{"type", "timestamp", "data"}``, compact UTF-8 JSON."""
    stamp = occurred_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"type": event_type, "timestamp": stamp, "data": data}, ensure_ascii=False, separators=(",", ":")
    ).encode()


@dataclass
class _Claimed:
    """A delivery this worker leased, and what became of it."""

    row: Any
    token: str
    claimed_at: float  # time.monotonic()
    outcome: Outcome | None = None
    state: str = ""  # the outcome's state, or release / abandon
    started: dt.datetime | None = None
    latency: float = 0.0


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on a new event loop: uvloop's when installed (less CPU per request), else asyncio's."""
    try:
        import uvloop

        run = uvloop.run  # uvloop 0.18 and later
    except (ImportError, AttributeError):  # pragma: no cover - uvicorn[standard] brings it on Linux
        asyncio.run(main)
    else:
        run(main)


class WebhookWorker:
    """Delivers webhooks on its own thread and event loop (``start``/``stop``), or as ``run()`` in a CLI.

    ``stats`` counts what it did (``steps``, ``fanouts``, ``claims``, ``records`` statements,
    ``sent`` requests), for tests and benchmarks.
    """

    def __init__(self, conninfo: str, settings: WebhookSettings, *, name: str = "smartcode-webhooks") -> None:
        self.conninfo = conninfo
        self.settings = settings
        self.name = name
        self.worker_id = f"{name}-{uuid.uuid4().hex[:8]}"
        self.stats: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._started = threading.Event()
        self._inflight: dict[int, _Claimed] = {}  # delivery id -> claim, from the claim to the record
        self._sending: set[asyncio.Task[None]] = set()
        self._finished: list[_Claimed] = []  # outcomes not yet recorded
        self._to_record: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        # Whether some subscription is enabled (None: not known yet); without one, commits are not heard.
        self._live: bool | None = None
        self._urgent: asyncio.Event | None = None  # woken by something other than a commit: step at once
        self._fanout_due = True
        self._claim_due = True
        self._retry_at: float | None = None  # monotonic time of this worker's earliest retry
        self._next_bulk = 0.0  # monotonic time of the next fan-out while no subscription is live
        self._keys: dict[str, bytes] = {}
        self._proxies: dict[str, str | None] = {}
        self._record_lock: asyncio.Lock | None = None

    # -- life cycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the worker on a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._started.clear()
        self._thread = threading.Thread(target=lambda: run_loop(self.run()), name=self.name, daemon=True)
        self._thread.start()
        self._started.wait(5)

    def stop(self, timeout: float = 5.0) -> None:
        """Take no more work, let requests in flight finish (briefly), and end the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def request_stop(self) -> None:
        """Ask a running :meth:`run` to end (from a signal handler on its own loop)."""
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        """Deliver until stopped: listen, fan out, claim, send, record."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._to_record = asyncio.Event()
        self._record_lock = asyncio.Lock()
        s = self.settings
        self._slots = asyncio.Semaphore(s.concurrency)
        self._started.set()
        pool = AsyncConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=3,  # the loop's statements, the records, the drain
            open=False,
            kwargs={"autocommit": True, "row_factory": namedtuple_row, "connect_timeout": 5},
            timeout=5,
        )
        listener = asyncio.create_task(self._listen(), name=f"{self.name}-listen")
        recorder = asyncio.create_task(self._record_loop(pool), name=f"{self.name}-record")
        pruner: asyncio.Task[None] | None = None
        try:
            await pool.open(wait=False)
            # Retention runs beside delivery, never inside a step (registry/outbox_retention.py).
            pruner = asyncio.create_task(keep_pruning(pool, Actor(self.worker_id), s.keep_days))
            # aiohttp rather than httpx: a fifth of the CPU per request (C parser), which is most of the
            # worker's cost per event (docs/benchmarks.md, "Webhook delivery").
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=s.concurrency),
                timeout=aiohttp.ClientTimeout(total=s.timeout_s),
                # No netrc look-up per request, no cookies carried from one receiver's answer to the next.
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"user-agent": _USER_AGENT},
            ) as http:
                await self._loop_until_stopped(pool, http)
                await self._drain(pool)
        finally:
            for task in (listener, recorder, pruner):
                if task is None:
                    continue
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await pool.close()

    def _wake_up(self, *, by_commit: bool = False, fanout: bool = False, claim: bool = False) -> None:
        self._fanout_due |= fanout
        self._claim_due |= claim
        if self._wake is not None and self._urgent is not None:
            if not by_commit:
                self._urgent.set()
            self._wake.set()

    async def _loop_until_stopped(self, pool: AsyncConnectionPool[Any], http: aiohttp.ClientSession) -> None:
        assert self._stop is not None and self._wake is not None and self._urgent is not None
        failing = False
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                delay = self.settings.poll_s
                work = asyncio.ensure_future(self.step(pool, http))
                # A step waiting on a database that is down must not hold up a shutdown.
                await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not work.done():
                    work.cancel()
                    await asyncio.gather(work, return_exceptions=True)
                    return
                try:
                    delay = work.result()
                    failing = False
                except Exception as exc:  # the database may be down: try again at the next poll
                    if not failing:
                        log.exception("%s: delivery step failed", self.worker_id)
                    else:
                        log.warning("%s: still failing: %s", self.worker_id, exc)
                    failing = True
                    self._fanout_due = self._claim_due = True
                if delay > 0:
                    await self._idle(delay)
                self._wake.clear()
                self._urgent.clear()
        finally:
            stopping.cancel()

    async def _idle(self, delay: float) -> None:
        """Wait for a reason to step, at most ``delay`` seconds."""
        assert self._wake is not None and self._urgent is not None
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:  # the poll, or a retry falling due: look at everything
            self._fanout_due = self._claim_due = True
            return
        if self._urgent.is_set():
            return  # a recorded outcome, a redelivery, a subscription: step at once
        # Woken by a commit: let the commits of the next few milliseconds arrive too, so that a busy
        # write path (two or three events per complaint) costs one step, not one each. A request that
        # ends meanwhile steps at once (it needs a step anyway): under load, steps follow the records.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._urgent.wait(), _COALESCE_S)

    async def step(self, pool: AsyncConnectionPool[Any], http: aiohttp.ClientSession) -> float:
        """Fan out and claim what is due (when there is reason to) and start sending it; seconds to wait."""
        self.stats["steps"] += 1
        poll = self.settings.poll_s
        if self._retry_at is not None and time.monotonic() >= self._retry_at:
            self._retry_at = None
            self._claim_due = True
        if self._live is False:
            # Nobody to deliver to: what commits accumulate is marked in bulk now and then.
            now = time.monotonic()
            if now >= self._next_bulk:
                self._next_bulk = now + poll
                async with pool.connection() as conn:
                    await self._fanout(conn)
            self._fanout_due = self._claim_due = False
            return max(0.0, self._next_bulk - now)
        async with pool.connection() as conn:
            if self._fanout_due:
                self._fanout_due = False
                if await self._fanout(conn):
                    self._claim_due = True
            room = self.settings.concurrency * _PREFETCH - len(self._inflight)
            if self._claim_due and room > 0:
                self._claim_due = False
                token = uuid.uuid4().hex
                self.stats["claims"] += 1
                cur = await conn.execute(
                    _CLAIM, {"n": room, "lease": self.settings.lease_s, "token": token}, prepare=True
                )
                claimed = await cur.fetchall()
                now = time.monotonic()
                for row in claimed:
                    claim = _Claimed(row, token, now)
                    self._inflight[row.id] = claim
                    task = asyncio.create_task(self._deliver(http, claim))
                    self._sending.add(task)
                    task.add_done_callback(self._sending.discard)
                if len(claimed) == room:
                    self._claim_due = True  # there may be more: look again when a slot frees
                elif not self._inflight:
                    # Nothing in flight will wake the loop: when is the next retry or lease end due?
                    due = (await (await conn.execute(_NEXT_DUE, prepare=True)).fetchone())[0]
                    if due is not None:
                        self._retry_at = now + max(0.0, float(due)) + 0.005
        if self._retry_at is not None:
            return max(0.0, min(poll, self._retry_at - time.monotonic()))
        return poll

    async def _fanout(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Fan out what is committed; the deliveries made (0 also when another worker holds the lock)."""
        made = 0
        while True:
            self.stats["fanouts"] += 1
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT pg_try_advisory_xact_lock(%s, %s)", _FANOUT_LOCK, prepare=True
                )
                row = await cur.fetchone()
                if not row or not row[0]:
                    return made  # another worker is fanning out
                cur = await conn.execute(_FANOUT, {"n": _FANOUT_BATCH}, prepare=True)
                counts = await cur.fetchone()
                assert counts is not None
                marked, inserted = counts
            made += inserted
            if marked < _FANOUT_BATCH:
                return made

    async def _listen(self) -> None:
        """Hear commits (while a subscription is enabled) and changes to the subscriptions."""
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=5
                ) as conn:
                    await conn.execute(f"LISTEN {SUBSCRIPTIONS_CHANNEL}")
                    hearing = False
                    backoff = 0.5
                    while True:
                        # Asked after LISTEN: a change made from now on is heard.
                        live = bool((await (await conn.execute(_LIVE)).fetchone() or (False,))[0])
                        if live != hearing:
                            await conn.execute(f"{'LISTEN' if live else 'UNLISTEN'} {CHANNEL}")
                            hearing = live
                        was, self._live = self._live, live
                        if live and was is not True:
                            self._wake_up(fanout=True, claim=True)  # events committed while nobody listened
                        elif not live and was is not False:
                            self._next_bulk = 0.0
                            self._wake_up()
                        rested = 0.0
                        async for note in conn.notifies(timeout=self.settings.poll_s):
                            if note.channel == SUBSCRIPTIONS_CHANNEL:
                                # Look again (what else came in the same packet only woke us up); an
                                # enabled subscription may have deliveries waiting.
                                self._wake_up(fanout=True, claim=True)
                                break
                            self._wake_up(by_commit=True, fanout=True, claim=True)
                            if time.monotonic() - rested > 0.001:
                                # A fresh notification (not one read with others after the rest): leave
                                # the socket alone for the coalescing time, so that a stream of commits is
                                # read in one go every 20 ms instead of waking this thread once each.
                                await asyncio.sleep(_COALESCE_S)
                                rested = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._live = True  # unheard, a change to the subscriptions must not leave events waiting
                self._wake_up(fanout=True, claim=True)
                log.warning("%s: LISTEN %s lost (%s); polling until it is back", self.worker_id, CHANNEL, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.poll_s)

    # -- one delivery -------------------------------------------------------------------------------------

    async def _deliver(self, http: aiohttp.ClientSession, claim: _Claimed) -> None:
        assert self._slots is not None
        try:
            async with self._slots:
                s = self.settings
                if time.monotonic() - claim.claimed_at > (s.lease_s - s.timeout_s) / 2:
                    # Waited too long for a slot: the lease could run out mid-request and another worker
                    # send it too. Handed back, it goes next.
                    claim.state = "release"
                else:
                    claim.started = dt.datetime.now(dt.UTC)
                    t0 = time.perf_counter()
                    try:
                        claim.outcome = await self._attempt(http, claim.row)
                    except asyncio.CancelledError:
                        claim.state = "abandon"  # stopping mid-request: it may have arrived; send again
                        raise
                    claim.latency = (time.perf_counter() - t0) * 1000
                    claim.state = claim.outcome.state
                    self.stats["sent"] += 1
        except asyncio.CancelledError:
            claim.state = claim.state or "release"
            raise
        finally:
            self._finished.append(claim)
            if self._to_record is not None:
                self._to_record.set()

    async def _record_loop(self, pool: AsyncConnectionPool[Any]) -> None:
        """Write the finished outcomes, one statement for all that finished since the last one."""
        assert self._to_record is not None
        while True:
            await self._to_record.wait()
            self._to_record.clear()
            await self._record(pool)

    async def _record(self, pool: AsyncConnectionPool[Any]) -> None:
        assert self._record_lock is not None
        async with self._record_lock:  # the drain's last record waits for one under way
            batch, self._finished = self._finished, []
            if batch:
                await self._record_batch(pool, batch)

    async def _record_batch(self, pool: AsyncConnectionPool[Any], batch: list[_Claimed]) -> None:
        params: dict[str, list[Any]] = {
            k: []
            for k in (
                "id", "token", "state", "retry_in", "status", "error", "latency", "attempt", "started",
                "response", "gone",
            )
        }  # fmt: skip
        now = dt.datetime.now(dt.UTC)
        for c in batch:
            o = c.outcome
            params["id"].append(c.row.id)
            params["token"].append(c.token)
            params["state"].append(c.state)
            params["retry_in"].append(o.retry_in if o else 0.0)
            params["status"].append(o.status if o else None)
            params["error"].append(o.error if o else None)
            params["latency"].append(c.latency)
            params["attempt"].append(c.row.attempts)
            params["started"].append(c.started or now)
            params["response"].append(o.response if o else None)
            params["gone"].append(bool(o and o.gone))
        gone = 0
        for wait in (0.2, 1.0, 5.0, None):
            try:
                # One statement (autocommit): the outcomes and their attempts are written together.
                async with pool.connection() as conn:
                    self.stats["records"] += 1
                    cur = await conn.execute(_RECORD, params, prepare=True)
                    _, _, gone = await cur.fetchone()
                    if gone:  # every worker's listener looks at the subscriptions again
                        await conn.execute("SELECT pg_notify(%s, 'disabled')", (SUBSCRIPTIONS_CHANNEL,))
                break
            except Exception as exc:
                # Unrecorded, the deliveries are sent again once their leases run out: at least once.
                if wait is None:
                    log.warning("%s: could not record %d deliveries: %s", self.worker_id, len(batch), exc)
                    break
                await asyncio.sleep(wait)
        retry = [c.outcome.retry_in for c in batch if c.outcome is not None and c.outcome.state == "pending"]
        if retry:
            at = time.monotonic() + min(retry) + 0.005
            self._retry_at = at if self._retry_at is None else min(self._retry_at, at)
        for c in batch:
            self._inflight.pop(c.row.id, None)
        # A recorded head releases the next event of its subject; a freed slot takes the next delivery.
        self._wake_up(claim=True)

    async def _attempt(self, http: aiohttp.ClientSession, row: Any) -> Outcome:
        s = self.settings
        host = urlsplit(row.url).hostname or ""
        if not _host_allowed(host, s.allow_hosts):
            return self._failed(row, None, f"host {host} is not in SMARTCODE_WEBHOOKS_ALLOW_HOSTS", None)
        body = body_of(row.type, row.occurred_at, row.data)
        msg_id = message_id(row.event_id)
        stamp = int(time.time())
        key = self._keys.get(row.secret)
        if key is None:
            key = self._keys[row.secret] = secret_key(row.secret)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(key, msg_id, stamp, body),
        }
        try:
            async with asyncio.timeout(s.timeout_s):
                async with http.post(
                    row.url, data=body, headers=headers, allow_redirects=False, proxy=self._proxy(row.url)
                ) as answer:
                    got = bytearray()
                    while len(got) < _RESPONSE_READ:
                        chunk = await answer.content.read(_RESPONSE_READ - len(got))
                        if not chunk:
                            break
                        got.extend(chunk)
                    status = answer.status
        except TimeoutError:
            return self._failed(row, None, f"no answer within {s.timeout_s:g} s", None)
        except (aiohttp.ClientError, ValueError) as exc:
            return self._failed(row, None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__, None)
        excerpt = bytes(got[: _RESPONSE_KEPT * 4]).decode("utf-8", "replace")[:_RESPONSE_KEPT]
        if 200 <= status < 300:
            return Outcome("delivered", status, None, excerpt)
        if status == 410:
            return Outcome("dead", status, "410 Gone: the subscription is disabled", excerpt, gone=True)
        return self._failed(row, status, f"HTTP {status}", excerpt)

    def _proxy(self, url: str) -> str | None:
        """The proxy ``HTTP_PROXY``/``HTTPS_PROXY`` name for ``url`` unless ``NO_PROXY`` exempts its host."""
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        if key not in self._proxies:
            proxies = urllib.request.getproxies_environment()
            host = parts.hostname or ""
            bypass = bool(proxies.get("no")) and urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
                host, proxies
            )
            self._proxies[key] = None if bypass else proxies.get(parts.scheme)
        return self._proxies[key]

    def _failed(self, row: Any, status: int | None, error: str, response: str | None) -> Outcome:
        delay = retry_delay(self.settings, row.round_attempts)
        if delay is None:
            return Outcome(
                "dead", status, f"{error} (attempt {row.round_attempts}, retries used up)", response
            )
        return Outcome("pending", status, error, response, retry_in=delay)

    async def _drain(self, pool: AsyncConnectionPool[Any]) -> None:
        """Let requests in flight end for a moment, hand the others back, and record it all."""
        if self._sending:
            _, pending = await asyncio.wait(list(self._sending), timeout=min(2.0, self.settings.timeout_s))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._record(pool)
