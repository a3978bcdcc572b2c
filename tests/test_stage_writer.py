"""The staging writer COPYs chunks on its thread, in order, and reports its failures to the caller."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy import Engine, text

from common.errors import DatabaseUnavailable
from common.settings import Settings
from importers import merge, stage_writer
from importers.pipeline import ImportOptions, run_import
from importers.stage_writer import StageWriter
from importers.validate import STAGE_COLUMNS, ValidChunk
from registry.db import session_factory
from tests.test_import_pipeline import ADMIN, lamp, write_geojson


def _chunk(first: int, n: int) -> ValidChunk:
    columns: dict[str, object] = {name: None for name, _ in STAGE_COLUMNS}
    columns["row"] = np.arange(first, first + n)
    columns["class_code"] = np.array(["0118"] * n, dtype=object)
    return ValidChunk(columns=columns, problems=[], rejected_rows=0, read_rows=n)


def test_chunks_arrive_in_order_while_the_caller_goes_on(db: Engine) -> None:
    with session_factory(db)() as session, session.begin():
        merge.create_stage(session)
        raw = session.connection().connection.driver_connection
        with StageWriter(raw, depth=1) as writer:
            for first in range(1, 5001, 1000):
                writer.put(_chunk(first, 1000))
            writer.finish()
        rows = [r for (r,) in session.connection().exec_driver_sql("SELECT row FROM import_stage")]
    assert rows == list(range(1, 5001))


def test_a_failed_copy_is_raised_in_the_caller(db: Engine) -> None:
    with session_factory(db)() as session, session.begin():
        raw = session.connection().connection.driver_connection  # no staging table: COPY fails
        with pytest.raises(psycopg.errors.UndefinedTable), StageWriter(raw) as writer:
            writer.put(_chunk(1, 10))
            writer.finish()


def test_the_writers_error_wins_over_its_consequence(db: Engine) -> None:
    with session_factory(db)() as session, session.begin():
        raw = session.connection().connection.driver_connection
        with pytest.raises(psycopg.errors.UndefinedTable), StageWriter(raw) as writer:
            writer.put(_chunk(1, 10))
            deadline = time.monotonic() + 10
            while not writer.failed and time.monotonic() < deadline:
                time.sleep(0.01)
            raw.execute("SELECT 1")  # fails too (the transaction is aborted), but is not the cause


def test_a_failed_copy_fails_the_import_cleanly(
    db: Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_copy(connection: psycopg.Connection, chunk: ValidChunk) -> None:
        connection.execute("SELECT 1 / 0")  # a real database error, raised on the writer's thread

    monkeypatch.setattr(stage_writer, "copy_chunk", broken_copy)
    path = write_geojson(tmp_path / "lamps.geojson", [lamp(114.3466, 22.6953)])
    with pytest.raises(DatabaseUnavailable, match="division by zero"):
        run_import(db, path, ADMIN, settings, ImportOptions())
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM assets")).scalar_one() == 0
        assert conn.execute(text("SELECT status FROM import_batches")).scalar_one() == "failed"


def test_the_gil_is_handed_over_promptly_while_writers_run_and_the_setting_comes_back(db: Engine) -> None:
    before = sys.getswitchinterval()
    with session_factory(db)() as session, session.begin():
        merge.create_stage(session)
        raw = session.connection().connection.driver_connection
        with StageWriter(raw) as first:
            assert sys.getswitchinterval() <= 0.0001
            with StageWriter(raw) as second:  # two imports at once in one process
                second.finish()
            assert sys.getswitchinterval() <= 0.0001  # the first one still runs
            first.finish()
        assert sys.getswitchinterval() == before
        with pytest.raises(RuntimeError), StageWriter(raw):
            raise RuntimeError("the import failed")
    assert sys.getswitchinterval() == before
