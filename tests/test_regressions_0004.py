"""Regressions found in review of migration 0004 and the faster importer, each fixed.

Period metadata across the upgrade and downgrade, the staging writer's error precedence, the
bounding-box prefilter on the metric column, releasing the reader of a failed import, and unit
deletion beside an uncommitted insert at REPEATABLE READ.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text

from common.settings import Settings
from importers import merge, stage_writer
from importers.pipeline import ImportOptions, run_import
from importers.stage_writer import StageWriter
from registry import assets
from registry.codes import mod11_10_check_digit
from registry.db import Actor, downgrade, migrate, session_factory, transaction
from registry.embedded import EmbeddedCluster
from tests.helpers import make_asset, make_unit
from tests.test_import_pipeline import ADMIN, lamp, write_geojson
from tests.test_stage_writer import _chunk
from tests.test_versioning import _insert_sql

CST = dt.timezone(dt.timedelta(hours=8))
_DIGITS = "4403100118999999"
CODE = _DIGITS + mod11_10_check_digit(_DIGITS)


@contextmanager
def _scratch_db(cluster: EmbeddedCluster, name: str) -> Iterator[str]:
    with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    yield cluster.url().replace("/smartcode_test?", f"/{name}?")


def _ctx(conn, **values: str) -> None:  # type: ignore[no-untyped-def]
    for key, value in values.items():
        conn.execute(text("SELECT set_config(:k, :v, true)"), {"k": f"smartcode.{key}", "v": value})


def _first_survey(conn, *units: str) -> None:  # type: ignore[no-untyped-def]
    """Register ``units`` and, as alice's first survey, asset CODE owned by the first of them."""
    for name in units:
        conn.execute(text("INSERT INTO units (name, county_code) VALUES (:n, '440310')"), {"n": name})
    _ctx(conn, actor="alice", reason="first survey")
    conn.execute(text(_insert_sql(owner="1")))


# --------------------------------------------------------------------------------------------------
# 0004 upgrade: the metadata of responsibility periods changes meaning but is not converted


def test_upgrade_keeps_who_began_each_responsibility_period(
    cluster: EmbeddedCluster, settings: Settings
) -> None:
    """0003 records on each period the change that OPENED it; 0004 (and registry.assets._periods)
    reads a closed period's recorded_at/actor/reason as the change that CLOSED it. The upgrade
    copies the closed rows unchanged and deletes the open rows, so after upgrading, every period
    but the first is shown with the wrong change, and the record of the last hand-over (who and
    why the current units took over) is deleted from asset_responsibility."""
    with _scratch_db(cluster, "review_s2_up") as url:
        migrate(url, "0003_imports", settings=settings)
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                _first_survey(conn, "甲", "乙", "丙")
            with engine.begin() as conn:
                _ctx(conn, actor="bob", reason="transfer to 乙", effective_at="2025-03-01T00:00+08")
                conn.execute(text("UPDATE assets SET owner_id = 2"))
            with engine.begin() as conn:
                _ctx(conn, actor="carol", reason="transfer to 丙", effective_at="2025-06-01T00:00+08")
                conn.execute(text("UPDATE assets SET owner_id = 3"))
            with engine.connect() as conn:  # 0003: each period with the change that opened it
                before = [
                    tuple(r)
                    for r in conn.execute(
                        text("SELECT actor, reason FROM asset_responsibility ORDER BY valid_from")
                    ).all()
                ]
            migrate(url, settings=settings)
            with transaction(engine) as session:
                after = [(p["actor"], p["reason"]) for p in assets.responsibility_periods(session, CODE)]
        finally:
            engine.dispose()
    assert before == [("alice", "first survey"), ("bob", "transfer to 乙"), ("carol", "transfer to 丙")]
    assert after == before


def test_downgrade_keeps_who_began_each_responsibility_period(
    cluster: EmbeddedCluster, settings: Settings
) -> None:
    """The reverse: the downgrade leaves the 0004 closed rows (recorded with the change that closed
    them) as they are, where 0003 reads them as the change that opened the period, and gives the
    re-created open period the asset's LAST change of any kind (here a note edit), not the hand-over."""
    with _scratch_db(cluster, "review_s2_down") as url:
        migrate(url, settings=settings)
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                _first_survey(conn, "甲", "乙")
            with engine.begin() as conn:
                _ctx(conn, actor="bob", reason="transfer to 乙", effective_at="2025-03-01T00:00+08")
                conn.execute(text("UPDATE assets SET owner_id = 2"))
            with engine.begin() as conn:
                _ctx(conn, actor="dave", reason="repair")
                conn.execute(text("UPDATE assets SET note = 'lamp head replaced'"))
            downgrade(url, "0003_imports", settings=settings)
            with engine.connect() as conn:
                periods = conn.execute(
                    text("SELECT owner_id, actor, reason FROM asset_responsibility ORDER BY valid_from")
                ).all()
        finally:
            engine.dispose()
    # 0003 semantics: each period carries the change that began it.
    assert [tuple(p) for p in periods] == [(1, "alice", "first survey"), (2, "bob", "transfer to 乙")]


# --------------------------------------------------------------------------------------------------
# StageWriter: the writer's error replaces the caller's even when the caller failed first


def test_a_main_thread_error_is_not_replaced_by_its_consequence_in_the_writer(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the import's own (main-thread) statement fails, the transaction is aborted; __exit__
    then lets the writer COPY the chunks still queued, which fail with InFailedSqlTransaction, and
    raises THAT instead of the real error. The same happens to a Ctrl-C that arrives during a
    main-thread query (psycopg cancels the query, aborting the transaction): the import then
    fails with 'current transaction is aborted' instead of KeyboardInterrupt, and the batch's
    recorded error names the consequence, not the cause."""
    release = threading.Event()
    real_copy = stage_writer.copy_chunk

    def slow_copy(connection, chunk):  # type: ignore[no-untyped-def]
        release.wait(10)  # the chunk is still queued/pending when the caller fails
        real_copy(connection, chunk)

    monkeypatch.setattr(stage_writer, "copy_chunk", slow_copy)
    with session_factory(db)() as session, session.begin():
        merge.create_stage(session)
        raw = session.connection().connection.driver_connection
        with pytest.raises(psycopg.errors.DivisionByZero), StageWriter(raw) as writer:
            writer.put(_chunk(1, 10))
            try:
                raw.execute("SELECT 1 / 0")  # the caller's own failure comes first
            finally:
                release.set()


# --------------------------------------------------------------------------------------------------
# list_assets: the bbox prefilter on geom_m transforms only the bbox's corners


def test_a_world_bbox_lists_every_asset(db: Engine, admin: Actor) -> None:
    """Before 0004 the bbox was tested on geom (WGS84) and a world-wide box listed everything. Now
    the candidates come from ``geom_m && smartcode_metric_envelope(box)``, and the envelope of the
    projected corners of a world-wide box is a 20 m wide sliver around the central meridian."""
    make_asset(db, admin)
    with transaction(db) as session:
        _, total = assets.list_assets(session, assets.AssetFilter(bbox=(-180, -90, 180, 90)))
    assert total == 1


def test_a_bbox_across_the_central_meridian_keeps_assets_near_its_bottom_edge(db: Engine) -> None:
    """A parallel is curved in the Gauss-Kruger projection of geom_m (EPSG:4547, central meridian
    114 E): the bottom edge of a box that spans the meridian dips below its projected corners by
    far more than the 10 m margin (70 m for 113.5-114.6 E at 22.5 N), so an asset 33 m inside the
    box is not listed."""
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO assets (code, county_code, class_code, serial, geom) VALUES "
                "(:c, '440310', '0118', 999999, ST_SetSRID(ST_MakePoint(114.25, 22.5003), 4326))"
            ),
            {"c": CODE},
        )
    with transaction(db) as session:
        _, total = assets.list_assets(session, assets.AssetFilter(bbox=(113.5, 22.5, 114.6, 22.9)))
    assert total == 1


# --------------------------------------------------------------------------------------------------
# Importer cleanup: the pipeline's close() never reaches the reader (chunks is an itertools.chain)


def test_a_failed_import_releases_the_reader_and_its_read_ahead_thread(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    """run_import's ``finally`` closes ``chunks`` with ``getattr(chunks, "close", None)``, but
    every reader returns ``chain([first], stream)``, which has no close(): the GeoJSON generator,
    its open file and the 'geojson-arrow' ThreadPoolExecutor stay alive as long as anything holds
    the exception (its traceback references the frames), instead of being released when the
    import ends."""
    path = write_geojson(tmp_path / "lamps.geojson", [lamp(114.3466 + i * 1e-4, 22.6953) for i in range(40)])

    def fail(point: str) -> None:
        if point == "chunk":
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut") as caught:  # e.g. an error reporter keeps it
        run_import(db, path, ADMIN, settings, ImportOptions(chunk_size=5), fault=fail)
    assert caught.value is not None
    assert [t.name for t in threading.enumerate() if t.name.startswith("geojson-arrow")] == []


# --------------------------------------------------------------------------------------------------
# units_keep_referenced: not what a foreign key does under REPEATABLE READ


def test_a_unit_deleted_at_repeatable_read_beside_an_uncommitted_insert_is_refused(
    db: Engine, admin: Actor
) -> None:
    """The insert's statement trigger locks the unit FOR KEY SHARE, so the DELETE waits for it; but
    once the insert commits, units_keep_referenced looks for assets with the deleter's
    REPEATABLE READ snapshot, does not see the new asset, and the unit is deleted: the asset
    names a unit that does not exist (a real foreign key raises a serialization failure here)."""
    unit = make_unit(db, "坪山区路灯管理所", admin)
    dsn = db.url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn) as inserter, psycopg.connect(dsn) as deleter:
        deleter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        deleter.execute("SELECT 1")  # the snapshot is taken
        inserter.execute(
            "INSERT INTO assets (code, county_code, class_code, serial, geom, owner_id) VALUES "
            "(%s, '440310', '0118', 999999, ST_SetSRID(ST_MakePoint(114.3466, 22.6953), 4326), %s)",
            (CODE, unit.id),
        )
        outcome: dict[str, str] = {}

        def delete() -> None:
            try:
                deleter.execute("DELETE FROM units WHERE id = %s", (unit.id,))
                deleter.commit()
                outcome["r"] = "deleted"
            except psycopg.Error as exc:
                deleter.rollback()
                outcome["r"] = type(exc).__name__

        thread = threading.Thread(target=delete)
        thread.start()
        thread.join(1)  # waits on the insert's KEY SHARE lock
        inserter.commit()
        thread.join(10)
    with db.connect() as conn:
        dangling = conn.execute(
            text(
                "SELECT count(*) FROM assets a WHERE NOT EXISTS (SELECT FROM units u WHERE u.id = a.owner_id)"
            )
        ).scalar_one()
    assert outcome["r"] != "deleted" and dangling == 0
