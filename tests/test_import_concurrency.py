"""Lookups keep answering while an inventory is imported into a registry that already holds assets."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from common.settings import ImportSettings, Settings
from importers.direct_load import lock_if_empty
from importers.pipeline import ImportOptions, run_import
from registry.db import Actor, session_factory
from tests.helpers import make_asset
from tests.test_import_pipeline import lamp, write_geojson

ADMIN = Actor(name="test-concurrency", admin=True)


def test_lookups_never_wait_for_an_import_into_a_loaded_registry(
    db: Engine, settings: Settings, tmp_path: Path, admin: Actor
) -> None:
    # A file big enough for the direct load to be considered (direct_min_bytes=0), imported into a
    # registry that is not empty: it takes the planned path and must not keep readers out meanwhile.
    direct_wanted = settings.model_copy(
        update={"imports": ImportSettings(direct_min_bytes=0, lock_timeout_ms=2000)}
    )
    known = make_asset(db, admin, code="4403100118000001")
    rng = np.random.default_rng(12)
    lons = rng.uniform(114.30, 114.40, 60_000)
    lats = rng.uniform(22.66, 22.74, 60_000)
    path = write_geojson(
        tmp_path / "many.geojson", [lamp(float(x), float(y)) for x, y in zip(lons, lats, strict=True)]
    )
    importing, done = threading.Event(), threading.Event()
    latencies: list[float] = []
    failures: list[str] = []

    def lookups() -> None:
        with db.connect() as conn:
            # A lookup that would queue behind an exclusive lock fails at once instead of waiting.
            conn.execute(text("SET lock_timeout = '250ms'"))
            conn.commit()
            importing.wait(30)
            while not done.is_set():
                started = time.perf_counter()
                try:
                    row = conn.execute(
                        text(
                            "SELECT a.code, r.owner_id FROM assets a "
                            "LEFT JOIN asset_responsibility r ON r.asset_id = a.id "
                            "WHERE a.code LIKE :c || '%' LIMIT 1"
                        ),
                        {"c": known.code[:16]},
                    ).first()
                    conn.execute(text("SELECT count(*) FROM asset_history WHERE asset_id = 1")).scalar()
                    conn.commit()
                    assert row is not None
                except OperationalError as exc:
                    conn.rollback()
                    failures.append(str(exc.orig).splitlines()[0])
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

    reader = threading.Thread(target=lookups)
    reader.start()
    try:
        importing.set()
        report = run_import(db, path, ADMIN, direct_wanted, ImportOptions(chunk_size=5000))
    finally:
        done.set()
        reader.join(30)
    assert report.created == 60_000
    assert not any("the registry was empty" in note for note in report.notes)
    assert len(latencies) >= 10, "the lookups did not run during the import"
    assert failures == [], f"{len(failures)} lookups waited for a lock held by the import: {failures[0]}"
    assert max(latencies) < 1.0  # no lock waits; the margin is for a busy test machine


def test_a_loaded_registry_is_never_locked_to_see_whether_it_is_empty(db: Engine, admin: Actor) -> None:
    make_asset(db, admin)
    session = session_factory(db)()
    try:
        with session.begin():
            assert not lock_if_empty(session, 1000)
            held = session.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() "
                    "AND mode = 'AccessExclusiveLock' AND locktype = 'relation'"
                )
            ).scalar_one()
            assert held == 0
    finally:
        session.close()
