"""Durable background work: rows of a work table, taken one at a time by a worker thread.

A work table has at least ``seq bigint`` (unique), ``state`` ('queued', 'running', then whatever the
handler sets: 'done', 'failed'...; 'interrupted' is set here), ``started_at`` and ``finished_at``.
The worker claims the oldest queued row with ``SELECT ... FOR UPDATE SKIP LOCKED`` (several servers
on one database never take the same row) and, before the claim commits, takes a session advisory
lock on the row's ``seq`` on a connection it keeps until the row is finished. So a row is
'running' only while some live server holds its lock: when the server dies its connection closes,
the lock goes, and the next worker to start marks the row 'interrupted' (:meth:`TableWorker.recover`).

Import jobs are the first user (``importers.jobs``); an outbox of webhook deliveries can be another:
it needs only its own table, lock namespace and handler.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

log = logging.getLogger("smartcode.work")

# Advisory lock keys are (namespace, int4): seq is folded into int4 (a table would need two billion
# rows before two live ones could share a key, and then one of them would only wait).
_INT4 = 2**31


@dataclass(frozen=True)
class WorkTable:
    """A work table and the advisory-lock namespace of its rows."""

    name: str
    lock_key: int


Handler = Callable[[int], None]
OnInterrupted = Callable[[Connection, int], None]
# Housekeeping run by the worker's thread whenever the queue is empty (it keeps its own schedule).
OnIdle = Callable[[], None]


class TableWorker:
    """One thread that runs the queued rows of a work table, oldest first, one at a time."""

    def __init__(
        self,
        engine: Engine,
        table: WorkTable,
        handle: Handler,
        *,
        on_interrupted: OnInterrupted | None = None,
        on_idle: OnIdle | None = None,
        poll_seconds: float = 2.0,
        name: str = "smartcode-worker",
    ) -> None:
        self.engine = engine
        self.table = table
        self.handle = handle
        self.on_interrupted = on_interrupted
        self.on_idle = on_idle
        self.poll_seconds = poll_seconds
        self.name = name
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread: it first marks the rows of dead servers interrupted, then takes work."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Take no more rows and wait for the running one to end (at most ``timeout`` seconds)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look for queued rows now (a row was just queued)."""
        self._wake.set()

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                # Also while idle, not only at start-up: a row whose holder lost its connection (the
                # database restarted under a running job) would otherwise stay 'running'.
                self.recover()
                while not self._stop.is_set() and self.run_one():
                    pass
                if self.on_idle is not None and not self._stop.is_set():
                    self.on_idle()
                failing = False
            except Exception as exc:  # the database may be down: try again at the next poll
                if not failing:
                    log.exception("%s: could not take work from %s", self.name, self.table.name)
                else:
                    log.warning("%s: still cannot take work from %s: %s", self.name, self.table.name, exc)
                failing = True
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def run_one(self) -> bool:
        """Claim the oldest queued row and run it; False when none was waiting."""
        claimed = self._claim()
        if claimed is None:
            return False
        conn, seq = claimed
        try:
            try:
                self.handle(seq)
            except Exception:  # the handler records its own failures; this is the last resort
                log.exception("%s: %s row %s failed", self.name, self.table.name, seq)
            # A handler that returned without finishing its row leaves it failed, never running.
            conn.execute(
                text(
                    f"UPDATE {self.table.name} SET state = 'failed', finished_at = now() "
                    "WHERE seq = :s AND state = 'running'"
                ),
                {"s": seq},
            )
            conn.commit()
            conn.execute(text("SELECT pg_advisory_unlock(CAST(:k AS int), CAST(:s AS int))"), self._key(seq))
            conn.commit()
        except Exception:
            conn.invalidate()  # closing the connection lets the lock go whatever state it is in
            raise
        finally:
            conn.close()
        return True

    def _key(self, seq: int) -> dict[str, int]:
        return {"k": self.table.lock_key, "s": seq % _INT4}

    def _claim(self) -> tuple[Connection, int] | None:
        conn = self.engine.connect()
        try:
            seq = conn.execute(
                text(
                    f"SELECT seq FROM {self.table.name} WHERE state = 'queued' ORDER BY seq "
                    "LIMIT 1 FOR UPDATE SKIP LOCKED"
                )
            ).scalar()
            if seq is None:
                conn.rollback()
                conn.close()
                return None
            # Taken before 'running' commits: a running row always has a live holder or none at all.
            conn.execute(text("SELECT pg_advisory_lock(CAST(:k AS int), CAST(:s AS int))"), self._key(seq))
            conn.execute(
                text(f"UPDATE {self.table.name} SET state = 'running', started_at = now() WHERE seq = :s"),
                {"s": seq},
            )
            conn.commit()
        except Exception:
            conn.invalidate()
            conn.close()
            raise
        return conn, int(seq)

    def recover(self) -> list[int]:
        """Mark 'interrupted' every running row whose server is gone; returns their seqs."""
        done: list[int] = []
        with self.engine.connect() as conn:
            seqs = (
                conn.execute(text(f"SELECT seq FROM {self.table.name} WHERE state = 'running'"))
                .scalars()
                .all()
            )
            conn.commit()
            for seq in seqs:
                key = self._key(seq)
                if not conn.execute(
                    text("SELECT pg_try_advisory_lock(CAST(:k AS int), CAST(:s AS int))"), key
                ).scalar():
                    conn.commit()
                    continue  # a live server is running it
                try:
                    still = conn.execute(
                        text(
                            f"SELECT 1 FROM {self.table.name} WHERE seq = :s AND state = 'running' FOR UPDATE"
                        ),
                        {"s": seq},
                    ).first()
                    if still is not None:
                        if self.on_interrupted is not None:
                            self.on_interrupted(conn, seq)
                        conn.execute(
                            text(
                                f"UPDATE {self.table.name} SET state = 'interrupted', "
                                "finished_at = now() WHERE seq = :s"
                            ),
                            {"s": seq},
                        )
                        done.append(seq)
                    conn.commit()
                except Exception:
                    conn.rollback()
                    raise
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(CAST(:k AS int), CAST(:s AS int))"), key)
                    conn.commit()
        return done
