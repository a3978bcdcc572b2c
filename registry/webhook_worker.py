"""The webhook delivery worker: outbox events to subscribers, signed, at least once, in order per subject.

All of its state is in tables (migration 0019), so a worker that stops, crashes or is killed loses
nothing: the next one to start carries on.

1. **Fan-out**: committed outbox events not yet fanned out become one ``webhook_deliveries`` row per
   enabled subscription that wants their type. One worker at a time does this (a transaction-scoped
   advisory lock), in id order, so the deliveries of one subject are created in the order of its events.
2. **Claim**: a pending delivery that is due, not leased, whose subscription is enabled and which has
   no earlier pending delivery of the same subject to the same subscription, is leased
   (``FOR UPDATE SKIP LOCKED``: two workers never take the same one) for ``lease_s`` seconds.
3. **Send**: one POST with the Standard Webhooks headers; the result (delivered, retry at the next
   step of the schedule, dead, or 410: the subscription is disabled) and the attempt are written in one
   transaction, only if the lease is still this worker's. A worker that died mid-request leaves a lease
   that runs out: the delivery is sent again, with the same ``webhook-id``.

``LISTEN smartcode_events`` wakes the worker at each commit that emitted an event (sub-second
latency); it also looks every ``poll_s`` seconds, and when the next retry falls due.
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
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool

from common.settings import WebhookSettings
from registry.access import Actor
from registry.events import CHANNEL
from registry.outbox_retention import keep_pruning
from registry.webhooks import _host_allowed, message_id, secret_key, sign

log = logging.getLogger("smartcode.webhooks")

# Advisory lock (namespace, key) of the fan-out: "WHKS", 1.
_FANOUT_LOCK = (0x57484B53, 1)
_FANOUT_BATCH = 1000
_RESPONSE_KEPT = 1024  # characters of an answer kept in the log
_RESPONSE_READ = 64 * 1024  # bytes read of an answer at most
_USER_AGENT = "smartcode-webhooks/1"

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
)
UPDATE event_outbox e SET fanned_out_at = now() FROM ev WHERE e.id = ev.id
RETURNING (SELECT count(*) FROM ins)
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

_RECORD = """
WITH upd AS (
    UPDATE webhook_deliveries SET
        state = CAST(%(state)s AS text),
        next_attempt_at = CASE WHEN CAST(%(state)s AS text) = 'pending'
                               THEN now() + make_interval(secs => %(retry_in)s) ELSE next_attempt_at END,
        leased_until = NULL, lease_token = NULL,
        last_status = %(status)s, last_error = %(error)s, last_latency_ms = %(latency)s,
        delivered_at = CASE WHEN CAST(%(state)s AS text) = 'delivered' THEN now() ELSE delivered_at END,
        dead_at = CASE WHEN CAST(%(state)s AS text) = 'dead' THEN now() ELSE dead_at END
    WHERE id = %(id)s AND lease_token = %(token)s
    RETURNING id
)
INSERT INTO webhook_attempts (delivery_id, attempt, started_at, latency_ms, status_code, error, response)
VALUES (%(id)s, %(attempt)s, %(started)s, %(latency)s, %(status)s, %(error)s, %(response)s)
RETURNING (SELECT count(*) FROM upd)
"""

_GONE = """
UPDATE webhook_subscriptions SET enabled = false, updated_at = now(),
    disabled_reason = 'the receiver answered 410 Gone at ' || now()::text
WHERE id = %(id)s AND enabled
"""


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


class WebhookWorker:
    """Delivers webhooks on its own thread and event loop (``start``/``stop``), or as ``run()`` in a CLI."""

    def __init__(self, conninfo: str, settings: WebhookSettings, *, name: str = "smartcode-webhooks") -> None:
        self.conninfo = conninfo
        self.settings = settings
        self.name = name
        self.worker_id = f"{name}-{uuid.uuid4().hex[:8]}"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._started = threading.Event()
        self._inflight: dict[asyncio.Task[None], tuple[int, str]] = {}

    # -- life cycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the worker on a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._started.clear()
        self._thread = threading.Thread(target=lambda: asyncio.run(self.run()), name=self.name, daemon=True)
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
        """Deliver until stopped: listen, fan out, claim, send."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._started.set()
        s = self.settings
        pool = AsyncConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=min(s.concurrency, 8) + 1,
            open=False,
            kwargs={"autocommit": True, "row_factory": namedtuple_row, "connect_timeout": 5},
            timeout=5,
        )
        listener = asyncio.create_task(self._listen(), name=f"{self.name}-listen")
        limits = httpx.Limits(max_connections=s.concurrency, max_keepalive_connections=s.concurrency)
        pruner: asyncio.Task[None] | None = None
        try:
            await pool.open(wait=False)
            # Retention runs beside delivery, never inside a step (registry/outbox_retention.py).
            pruner = asyncio.create_task(keep_pruning(pool, Actor(self.worker_id), s.keep_days))
            async with httpx.AsyncClient(
                timeout=httpx.Timeout(s.timeout_s), limits=limits, follow_redirects=False
            ) as http:
                await self._loop_until_stopped(pool, http)
                await self._drain(pool)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
            if pruner is not None:
                pruner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pruner
            await pool.close()

    async def _loop_until_stopped(self, pool: AsyncConnectionPool[Any], http: httpx.AsyncClient) -> None:
        assert self._stop is not None and self._wake is not None
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
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    if self._wake.is_set():
                        # Woken by a commit: let the commits of the next few milliseconds arrive too, so a
                        # busy write path (two or three events per complaint) costs one step, not one each.
                        await asyncio.sleep(_COALESCE_S)
                self._wake.clear()
        finally:
            stopping.cancel()

    async def step(self, pool: AsyncConnectionPool[Any], http: httpx.AsyncClient) -> float:
        """Fan out, claim what is due and start sending it; seconds until the next look."""
        async with pool.connection() as conn:
            await self._fanout(conn)
            free = self.settings.concurrency - len(self._inflight)
            if free <= 0:
                return self.settings.poll_s  # a finishing request wakes the loop
            token = uuid.uuid4().hex
            cur = await conn.execute(
                _CLAIM, {"n": free, "lease": self.settings.lease_s, "token": token}, prepare=True
            )
            claimed = await cur.fetchall()
            for row in claimed:
                task = asyncio.create_task(self._deliver(pool, http, row, token))
                self._inflight[task] = (row.id, token)
                task.add_done_callback(self._done)
            if len(claimed) == free:
                return 0.0  # there may be more
            due = (await (await conn.execute(_NEXT_DUE, prepare=True)).fetchone())[0]
        if due is None:
            return self.settings.poll_s
        return min(self.settings.poll_s, max(0.0, float(due)) + 0.005)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if self._wake is not None:
            self._wake.set()  # a delivered head may release the next event of its subject

    async def _fanout(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT pg_try_advisory_xact_lock(%s, %s)", _FANOUT_LOCK, prepare=True
                )
                row = await cur.fetchone()
                if not row or not row[0]:
                    return  # another worker is fanning out
                cur = await conn.execute(_FANOUT, {"n": _FANOUT_BATCH}, prepare=True)
                done = len(await cur.fetchall())
            if done < _FANOUT_BATCH:
                return

    async def _listen(self) -> None:
        assert self._wake is not None
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=5
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._wake.set()  # events committed while nobody listened
                    backoff = 0.5
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: LISTEN %s lost (%s); polling until it is back", self.worker_id, CHANNEL, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.poll_s)

    # -- one delivery -------------------------------------------------------------------------------------

    async def _deliver(
        self, pool: AsyncConnectionPool[Any], http: httpx.AsyncClient, row: Any, token: str
    ) -> None:
        started = dt.datetime.now(dt.UTC)
        t0 = time.perf_counter()
        outcome = await self._attempt(http, row)
        latency = (time.perf_counter() - t0) * 1000
        params = {
            "id": row.id,
            "token": token,
            "attempt": row.attempts,
            "started": started,
            "latency": latency,
            "state": outcome.state,
            "retry_in": outcome.retry_in,
            "status": outcome.status,
            "error": outcome.error,
            "response": outcome.response,
        }
        for wait in (0.2, 1.0, 5.0, None):
            try:
                # One statement (autocommit): the outcome and its attempt are written together.
                async with pool.connection() as conn:
                    cur = await conn.execute(_RECORD, params, prepare=True)
                    mine = (await cur.fetchone())[0]
                    if outcome.gone and mine:
                        await conn.execute(_GONE, {"id": row.subscription_id})
                return
            except Exception as exc:
                # Unrecorded, the delivery is sent again once its lease runs out: at least once.
                if wait is None:
                    log.warning("%s: could not record delivery %s: %s", self.worker_id, row.id, exc)
                    return
                await asyncio.sleep(wait)

    async def _attempt(self, http: httpx.AsyncClient, row: Any) -> Outcome:
        s = self.settings
        from urllib.parse import urlsplit

        host = urlsplit(row.url).hostname or ""
        if not _host_allowed(host, s.allow_hosts):
            return self._failed(row, None, f"host {host} is not in SMARTCODE_WEBHOOKS_ALLOW_HOSTS", None)
        body = body_of(row.type, row.occurred_at, row.data)
        msg_id = message_id(row.event_id)
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(secret_key(row.secret), msg_id, stamp, body),
        }
        try:
            async with asyncio.timeout(s.timeout_s):
                async with http.stream("POST", row.url, content=body, headers=headers) as answer:
                    got = bytearray()
                    async for chunk in answer.aiter_bytes():
                        got.extend(chunk)
                        if len(got) >= _RESPONSE_READ:
                            break
                    status = answer.status_code
        except TimeoutError:
            return self._failed(row, None, f"no answer within {s.timeout_s:g} s", None)
        except httpx.HTTPError as exc:
            return self._failed(row, None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__, None)
        excerpt = bytes(got[: _RESPONSE_KEPT * 4]).decode("utf-8", "replace")[:_RESPONSE_KEPT]
        if 200 <= status < 300:
            return Outcome("delivered", status, None, excerpt)
        if status == 410:
            return Outcome("dead", status, "410 Gone: the subscription is disabled", excerpt, gone=True)
        return self._failed(row, status, f"HTTP {status}", excerpt)

    def _failed(self, row: Any, status: int | None, error: str, response: str | None) -> Outcome:
        delay = retry_delay(self.settings, row.round_attempts)
        if delay is None:
            return Outcome(
                "dead", status, f"{error} (attempt {row.round_attempts}, retries used up)", response
            )
        return Outcome("pending", status, error, response, retry_in=delay)

    async def _drain(self, pool: AsyncConnectionPool[Any]) -> None:
        """Let requests in flight end for a moment; give the others' leases back at once."""
        if not self._inflight:
            return
        _, pending = await asyncio.wait(list(self._inflight), timeout=min(2.0, self.settings.timeout_s))
        left = [self._inflight[t] for t in pending if t in self._inflight]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if left:
            # Unanswered requests go again at once on the next worker (the receiver may have them).
            with contextlib.suppress(Exception):
                async with pool.connection() as conn:
                    for delivery_id, token in left:
                        await conn.execute(
                            "UPDATE webhook_deliveries SET leased_until = NULL, lease_token = NULL "
                            "WHERE id = %s AND lease_token = %s",
                            (delivery_id, token),
                        )
