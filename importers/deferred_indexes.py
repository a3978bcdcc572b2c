"""The indexes of ``assets`` dropped for a load and built again before it commits.

Filling an index row by row costs far more than building it from the finished table (a million
new assets: about 12 s of index maintenance against 3 s of btree builds; docs/benchmarks.md).
PostgreSQL's DDL is transactional: a load that fails or is killed rolls the drop back with
everything else, so the indexes are never missing outside the load's own transaction.

That includes the unique ones, the primary key and ``code`` (and with the primary key the foreign
keys that reference it, whose tables the load has truncated): they are built again, with their
constraints, before the load commits. A repeated code in the file was rejected by the importer and
the registry was empty, so their build cannot fail on the data; if it ever did, the batch would roll
back like any other failure.

Dropping needs the ACCESS EXCLUSIVE lock on ``assets`` until commit, so it is only waited for
briefly (:func:`lock_assets`): a registry someone is reading is loaded the usual way.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

# ``assets`` and the tables with a foreign key to it: locked, checked empty and truncated together
# (a direct load), or not at all.
ASSET_TABLES = ("assets", "asset_history", "asset_responsibility")
# What a load drops, each with the statement that drops it and the one that builds it again, in the
# order they are built (pg_get_constraintdef and pg_get_indexdef: the migrations' exact definitions,
# names included). Dropped in the reverse order: a foreign key before the key it references. Built
# first: the indexes that carry no constraint, GiST and GIN before btree. Those build on one core
# (btrees take a parallel worker), and the importer hashes the file on the other meanwhile
# (importers.pipeline._Digest).
_DEFINITIONS = """
SELECT 2 AS step, true AS btree, c.oid::bigint AS id,
       format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname),
       format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
              pg_get_constraintdef(c.oid))
FROM pg_constraint c
WHERE c.conrelid = 'assets'::regclass AND c.contype IN ('p', 'u', 'x')
UNION ALL
SELECT 1, am.amname = 'btree', i.indexrelid::bigint, format('DROP INDEX %s', i.indexrelid::regclass),
       pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
WHERE i.indrelid = 'assets'::regclass
  AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conrelid = i.indrelid AND c.conindid = i.indexrelid)
UNION ALL
SELECT 3, false, c.oid::bigint,
       format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname),
       format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
              pg_get_constraintdef(c.oid))
FROM pg_constraint c
WHERE c.confrelid = 'assets'::regclass AND c.contype = 'f'
ORDER BY 1, 2, 3
"""


def owns_assets(session: Session) -> bool:
    """Whether the connected role owns ``assets`` (the owner does; the service's role does not)."""
    return bool(
        session.execute(
            text(
                "SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class "
                "WHERE oid = 'assets'::regclass"
            )
        ).scalar_one()
    )


def lock_assets(session: Session, timeout_ms: int) -> bool:
    """Take the ACCESS EXCLUSIVE lock on ``assets`` and the tables referencing it (history and
    responsibility periods) for the rest of the transaction, waiting at most ``timeout_ms``; False
    (and the transaction as it was) when it is not granted, or the connected role does not own the
    tables (the service's role, which may not truncate history nor drop indexes)."""
    if not owns_assets(session):
        return False
    before = session.execute(text("SELECT current_setting('lock_timeout')")).scalar_one()
    savepoint = session.begin_nested()
    try:
        # Set inside the savepoint: rolling it back restores the session's own value.
        session.execute(text(f"SET LOCAL lock_timeout = {int(timeout_ms)}"))
        session.execute(text(f"LOCK TABLE {', '.join(ASSET_TABLES)} IN ACCESS EXCLUSIVE MODE"))
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        savepoint.rollback()
        return False
    savepoint.commit()
    session.execute(text("SELECT set_config('lock_timeout', :v, true)"), {"v": before})
    return True


@dataclass
class DeferredIndexes:
    """The dropped indexes and constraints, to be built again before commit."""

    builds: list[str]
    seconds: float = 0.0

    def rebuild(self, session: Session, maintenance_work_mem_mb: int) -> None:
        """Build every dropped index and constraint again (sorted builds; btrees with parallel workers)."""
        started = time.perf_counter()
        session.execute(text(f"SET LOCAL maintenance_work_mem = '{int(maintenance_work_mem_mb)}MB'"))
        # The importer's own core is idle while the database builds: let the btree builds use it.
        # The leader sorts too, so one worker per other core: with more processes than cores they
        # only take turns (2 cores: 2.1 s of btree builds with one worker, 2.2-2.8 s with two).
        workers = max(1, min(4, (os.cpu_count() or 2) - 1))
        session.execute(text(f"SET LOCAL max_parallel_maintenance_workers = {workers}"))
        for build in self.builds:
            session.execute(text(build))
        self.seconds = time.perf_counter() - started


def drop_indexes(session: Session) -> DeferredIndexes:
    """Drop every index of ``assets``, with the constraints they carry and the foreign keys that
    reference them (the caller holds the exclusive locks of ``ASSET_TABLES``)."""
    steps = session.execute(text(_DEFINITIONS)).all()
    for *_order, drop, _build in reversed(steps):
        session.execute(text(drop))
    return DeferredIndexes([str(build) for *_order, _drop, build in steps])
