"""Secondary indexes of ``assets`` dropped for a load and built again before it commits.

Filling an index row by row costs far more than building it from the finished table (a million
new assets: about 12 s of index maintenance against 3 s of btree builds; docs/benchmarks.md).
PostgreSQL's DDL is transactional: a load that fails or is killed rolls the drop back with
everything else, so the indexes are never missing outside the load's own transaction. The unique
indexes (primary key, code) stay: they are the registry's guarantees, checked row by row.

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
# The non-unique indexes with the statement that builds each (pg_get_indexdef: the migration's
# exact definition, name included).
_SECONDARY = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
FROM pg_index i
WHERE i.indrelid = 'assets'::regclass AND NOT i.indisunique AND NOT i.indisprimary
ORDER BY i.indexrelid
"""


def lock_assets(session: Session, timeout_ms: int) -> bool:
    """Take the ACCESS EXCLUSIVE lock on ``assets`` and the tables referencing it (history and
    responsibility periods) for the rest of the transaction, waiting at most ``timeout_ms``; False
    (and the transaction as it was) when it is not granted."""
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
    """The dropped indexes, to be built again before commit."""

    definitions: list[tuple[str, str]]
    seconds: float = 0.0

    def rebuild(self, session: Session, maintenance_work_mem_mb: int) -> None:
        """Build every dropped index again (sorted builds; btrees with parallel workers)."""
        started = time.perf_counter()
        session.execute(text(f"SET LOCAL maintenance_work_mem = '{int(maintenance_work_mem_mb)}MB'"))
        # The importer's own core is idle while the database builds: let the btree builds use it.
        # The leader sorts too, so one worker per other core: with more processes than cores they
        # only take turns (2 cores: 2.1 s of btree builds with one worker, 2.2-2.8 s with two).
        workers = max(1, min(4, (os.cpu_count() or 2) - 1))
        session.execute(text(f"SET LOCAL max_parallel_maintenance_workers = {workers}"))
        for _name, definition in self.definitions:
            session.execute(text(definition))
        self.seconds = time.perf_counter() - started


def drop_secondary_indexes(session: Session) -> DeferredIndexes:
    """Drop the non-unique indexes of ``assets`` (the caller holds its exclusive lock)."""
    definitions = [(str(n), str(d)) for n, d in session.execute(text(_SECONDARY)).all()]
    for name, _definition in definitions:
        session.execute(text(f"DROP INDEX {name}"))
    return DeferredIndexes(definitions)
