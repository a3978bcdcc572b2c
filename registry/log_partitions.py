"""The resolution log's monthly partitions: created ahead, listed, and old months dropped (retention).

Migration 0023 partitions ``resolution_log`` by month. The service role may only create the coming
months (a SECURITY DEFINER function): it runs :func:`ensure_ahead` at start and daily. Dropping old
months is :func:`drop_expired`, which needs the owner's connection (the CLI), so no service bug can
remove history; each drop is written to the audit log with the rows it held.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from registry import audit
from registry.access import Actor

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Partition:
    """One partition of the log: its name, its time range (``None`` = unbounded), rows and bytes."""

    name: str
    is_default: bool
    lower: dt.datetime | None
    upper: dt.datetime | None
    rows: int
    bytes: int


def ensure_ahead(conn: Connection, months_ahead: int) -> int:
    """Create the partitions of this month and the next ``months_ahead`` that are missing; how many."""
    created = conn.execute(
        text("SELECT smartcode_resolution_log_partitions(:n)"), {"n": months_ahead}
    ).scalar_one()
    return int(created)


def list_partitions(conn: Connection) -> list[Partition]:
    """Every partition, oldest first (the default partition last); rows as the planner estimates them.

    Estimates (``pg_class.reltuples``, kept by autovacuum) because an exact count would read the whole
    log; :func:`drop_expired` counts exactly what it drops.
    """
    rows = conn.execute(
        text(
            "SELECT b.part::text, b.is_default, b.lower_bound, b.upper_bound, "
            "greatest(c.reltuples, 0)::bigint, pg_total_relation_size(b.part) "
            "FROM smartcode_resolution_log_bounds() b JOIN pg_class c ON c.oid = b.part "
            "ORDER BY b.is_default, b.lower_bound NULLS FIRST"
        )
    ).all()
    return [Partition(name, dflt, low, up, int(n), int(size)) for name, dflt, low, up, n, size in rows]


def expiry_cutoff(now: dt.datetime, keep_months: int) -> dt.datetime:
    """The instant before which whole months may go: the start of the month ``keep_months`` back (UTC)."""
    utc = now.astimezone(dt.UTC)
    month_index = utc.year * 12 + utc.month - 1 - keep_months
    return dt.datetime(month_index // 12, month_index % 12 + 1, 1, tzinfo=dt.UTC)


def drop_expired(session: Session, actor: Actor, keep_months: int, now: dt.datetime) -> list[Partition]:
    """Drop the partitions that end before the retention cutoff (owner only); those dropped.

    ``keep_months`` 0 keeps everything. A partition is dropped only when all of it is older than the
    cutoff, so a month partly inside the retention window stays whole.
    """
    if keep_months <= 0:
        return []
    cutoff = expiry_cutoff(now, keep_months)
    conn = session.connection()
    dropped = [
        p for p in list_partitions(conn) if not p.is_default and p.upper is not None and p.upper <= cutoff
    ]
    for index, part in enumerate(dropped):
        # The name comes from the catalogue, not from a caller: safe to quote as an identifier.
        exact = int(conn.execute(text(f'SELECT count(*) FROM "{part.name}"')).scalar_one())
        part = dropped[index] = dataclasses.replace(part, rows=exact)
        conn.execute(text(f'ALTER TABLE resolution_log DETACH PARTITION "{part.name}"'))
        conn.execute(text(f'DROP TABLE "{part.name}"'))
        audit.record(
            session,
            actor,
            "drop_log_partition",
            "resolution_log",
            part.name,
            reason=f"retention: {keep_months} months",
            details={
                "rows": part.rows,
                "from": part.lower.isoformat() if part.lower else None,
                "to": part.upper.isoformat() if part.upper else None,
            },
        )
    return dropped


class PartitionKeeper:
    """Creates the coming months' partitions at start and then daily, on a thread of its own."""

    def __init__(self, engine: Engine, months_ahead: int, every_s: float = 86_400.0) -> None:
        self._engine = engine
        self._months_ahead = months_ahead
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Create what is missing now; 0 when the database cannot be reached (the next round retries)."""
        try:
            with self._engine.begin() as conn:
                return ensure_ahead(conn, self._months_ahead)
        except OperationalError:
            # The default partition takes the rows meanwhile: a missed round costs nothing.
            log.warning("resolution log partitions not checked: database unavailable")
            return 0

    def start(self) -> None:
        """Run a first round now (in the background) and then every ``every_s`` seconds."""
        self._thread = threading.Thread(target=self._loop, name="log-partitions", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self.run_once()
            if self._stop.wait(self._every_s):
                return

    def stop(self) -> None:
        """Stop the loop (waits for a round in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
