"""The first inventory of an empty registry is written while it is read (importers.direct_load):
the same assets, codes, rejections and report as the planned path, and nothing left behind on failure."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from common.errors import DatabaseUnavailable
from common.settings import ImportSettings, Settings
from importers import pipeline
from importers.direct_load import FirstRows, _distinct
from importers.pipeline import ImportOptions, ImportRefused, ImportReport, run_import
from registry.codes import parse_code
from registry.db import Actor
from tests.test_import_pipeline import counts, lamp, shaped, three_lamps, write_geojson

ADMIN = Actor(name="test-direct", admin=True)
DIRECT_NOTE = "the registry was empty"


@pytest.fixture
def db(db: Engine, owner_engine: Engine) -> Engine:
    """The direct load is the owner's (``smartcode import``): it truncates the empty history tables and
    drops indexes, which the service's role may not."""
    return owner_engine


@pytest.fixture
def direct(settings: Settings) -> Settings:
    """Settings under which any file imported into an empty registry takes the direct path."""
    return settings.model_copy(update={"imports": ImportSettings(direct_min_bytes=0, lock_timeout_ms=200)})


@pytest.fixture
def planned(settings: Settings) -> Settings:
    """Settings under which every import takes the planned path."""
    return settings.model_copy(update={"imports": ImportSettings(direct_min_bytes=-1)})


def run(db: Engine, settings: Settings, path: Path, **options: Any) -> ImportReport:
    """Import ``path`` as an administrator."""
    return run_import(db, path, ADMIN, settings, ImportOptions(**options))


def asset_schema(db: Engine) -> dict[str, str]:
    """Every index of assets, every constraint of assets and every foreign key referencing it, each
    with its definition (and whether it is validated)."""
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
                "WHERE indrelid = 'assets'::regclass "
                "UNION ALL "
                "SELECT conrelid::regclass::text || '.' || conname, "
                "pg_get_constraintdef(oid) || CASE WHEN convalidated THEN '' ELSE ' (not validated)' END "
                "FROM pg_constraint WHERE conrelid = 'assets'::regclass OR confrelid = 'assets'::regclass"
            )
        ).all()
    return {name: definition for name, definition in rows}


def registry(db: Engine) -> list[tuple[Any, ...]]:
    """What the registry holds, in a form two imports can be compared by."""
    with db.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT a.code, a.class_code, a.serial, ST_AsText(a.geom), o.name, m.name, s.name, "
                    "a.state, a.in_use, a.decommissioned_at IS NOT NULL, a.decommission_reason, "
                    "a.installed_on, a.attributes, a.source_id, a.change_action, a.changed_by, a.version, "
                    "a.responsible_since, a.created_at = a.changed_at, "
                    "regexp_replace(a.change_reason, 'batch [0-9]+', 'batch N'), "
                    "a.changed_at = (SELECT max(changed_at) FROM assets) "
                    "FROM assets a LEFT JOIN units o ON o.id = a.owner_id "
                    "LEFT JOIN units m ON m.id = a.maintainer_id LEFT JOIN units s ON s.id = a.supervisor_id "
                    "ORDER BY a.code"
                )
            ).all()
        ]


def messy() -> list[dict[str, Any]]:
    """Lamps, covers and a cable, with repeats, an unknown class, an out-of-use row and an identifier."""
    cable = {"type": "LineString", "coordinates": [[114.351, 22.701], [114.352, 22.702]]}
    return [
        *three_lamps(),  # rows 1-3
        lamp(114.3500, 22.7000, OBJNAME="上水井盖"),
        lamp(114.3500, 22.7000, OBJNAME="上水井盖"),  # 5: the same class at the same position
        lamp(114.3466, 22.6953),  # 6: the first lamp again
        lamp(114.3502, 22.7002, OBJNAME="上水井盖", OBJUPTODAT="作废", CHDATE="2024-03-01"),
        lamp(114.3503, 22.7003, OBJNAME="污水井盖", OBJCODE="4403100102000123"),
        lamp(114.3504, 22.7004, OBJNAME="污水井盖", OBJCODE="4403100102000123"),  # 9: the code again
        lamp(114.3505, 22.7005, OBJNAME="不存在的部件"),  # 10
        shaped(cable, OBJNAME="架空线缆"),
    ]


def test_a_first_load_gives_what_the_planned_path_gives(
    db: Engine, direct: Settings, planned: Settings, tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "messy.geojson", messy())
    first = run(db, planned, path)
    expected, expected_report = registry(db), first.as_dict()
    db_after_planned = counts(db)

    with db.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE assets, asset_history, asset_responsibility, units, code_serials, import_batches, "
                "audit_log RESTART IDENTITY CASCADE"
            )
        )
    second = run(db, direct, path)
    assert any(DIRECT_NOTE in note for note in second.notes)
    assert not any(DIRECT_NOTE in note for note in first.notes)
    assert registry(db) == expected
    got = second.as_dict()
    for key in (
        "counts",
        "problems",
        "problems_total",
        "problems_by_field",
        "units_created",
        "codes_allocated",
    ):
        assert got[key] == expected_report[key], key
    assert counts(db) == db_after_planned
    assert second.counts() == {"read": 11, "created": 7, "updated": 0, "unchanged": 0, "rejected": 4}
    assert [p["row"] for p in second.problems] == [5, 6, 9, 10]
    assert sum(not row[8] for row in expected) == 1  # the row marked 作废 is out of use, in both


def test_indexes_are_the_migrations_own_after_a_direct_load(
    db: Engine, direct: Settings, tmp_path: Path
) -> None:
    before = asset_schema(db)
    report = run(db, direct, write_geojson(tmp_path / "a.geojson", three_lamps()))
    assert any(DIRECT_NOTE in note for note in report.notes)
    assert asset_schema(db) == before
    with db.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            conn.execute(text("EXPLAIN SELECT id FROM assets WHERE source_id = 'x'")).scalars().all()
        )
        found = conn.execute(
            text("SELECT count(*) FROM assets WHERE source_id IN (SELECT source_id FROM assets)")
        ).scalar_one()
    assert "assets_source_id_idx" in plan and found == 3


def test_the_unique_code_and_the_references_hold_after_a_direct_load(
    db: Engine, direct: Settings, tmp_path: Path
) -> None:
    # The primary key and the unique code are built again at the end of the load, and with the
    # key the foreign keys that reference it: they must be enforced again, not only listed.
    run(db, direct, write_geojson(tmp_path / "a.geojson", three_lamps()))
    with db.connect() as conn:
        first, second = conn.execute(text("SELECT code FROM assets ORDER BY id LIMIT 2")).scalars().all()
    with pytest.raises(IntegrityError, match="assets_code_key"), db.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))  # past the update triggers
        conn.execute(
            text(
                "UPDATE assets SET (code, serial) = (SELECT code, serial FROM assets WHERE code = :c) "
                "WHERE code = :d"
            ),
            {"c": first, "d": second},
        )
    with pytest.raises(IntegrityError, match="asset_responsibility_asset_id_fkey"), db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO asset_responsibility (asset_id, valid_from, valid_to, recorded_at, actor) "
                "VALUES ((SELECT max(id) + 1 FROM assets), now() - interval '1 day', now(), now(), 't')"
            )
        )


def test_reimporting_after_a_direct_load_changes_nothing(
    db: Engine, direct: Settings, tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "messy.geojson", messy())
    run(db, direct, path)
    again = run(db, direct, path)
    assert not any(DIRECT_NOTE in note for note in again.notes)  # the registry is no longer empty
    assert again.counts()["created"] == 0 and again.counts()["unchanged"] == 7


def test_a_failure_in_a_direct_load_leaves_the_registry_and_its_indexes_as_they_were(
    db: Engine, direct: Settings, tmp_path: Path
) -> None:
    before_indexes, before_rows = asset_schema(db), counts(db)

    def fail(point: str) -> None:
        if point == "created":
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        run_import(
            db, write_geojson(tmp_path / "a.geojson", messy()), ADMIN, direct, ImportOptions(), fault=fail
        )
    assert asset_schema(db) == before_indexes
    assert counts(db) == before_rows


def test_strict_refuses_a_direct_load_with_rejected_rows(
    db: Engine, direct: Settings, tmp_path: Path
) -> None:
    before = counts(db)
    with pytest.raises(ImportRefused):
        run(db, direct, write_geojson(tmp_path / "a.geojson", messy()), strict=True)
    assert counts(db) == before


def test_an_explicit_code_inside_a_range_already_handed_out_restarts_on_the_planned_path(
    db: Engine, direct: Settings, planned: Settings, tmp_path: Path
) -> None:
    # Chunks of 2 rows: the first chunk's two code-less covers get serials 1 and 2; the third row
    # names serial 2 explicitly. The planned path numbers the code-less rows above it instead.
    features = [
        lamp(114.3500, 22.7000, OBJNAME="上水井盖"),
        lamp(114.3501, 22.7001, OBJNAME="上水井盖"),
        lamp(114.3502, 22.7002, OBJNAME="上水井盖", OBJCODE="4403100101000002"),
    ]
    path = write_geojson(tmp_path / "a.geojson", features)
    report = run(db, direct, path, chunk_size=2)
    assert any("read twice" in note for note in report.notes)
    assert report.counts() == {"read": 3, "created": 3, "updated": 0, "unchanged": 0, "rejected": 0}
    serials = sorted(parse_code(row[0]).serial for row in registry(db))
    assert serials == [2, 3, 4]


def test_a_registry_in_use_is_loaded_the_planned_way(db: Engine, direct: Settings, tmp_path: Path) -> None:
    reading, release = threading.Event(), threading.Event()

    def reader() -> None:
        # A dispatcher's lookup in a long transaction holds a share lock on assets.
        with db.connect() as conn, conn.begin():
            conn.execute(text("SELECT count(*) FROM assets")).scalar_one()
            reading.set()
            release.wait(30)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert reading.wait(10)
        report = run(db, direct, write_geojson(tmp_path / "a.geojson", three_lamps()))
    finally:
        release.set()
        thread.join()
    assert report.created == 3
    assert not any(DIRECT_NOTE in note for note in report.notes)


def test_first_rows_finds_repeats_within_and_across_chunks() -> None:
    seen = FirstRows()
    first = seen.first_rows(np.array([5, 7, 5], dtype=np.int64), np.array([1, 2, 3], dtype=np.int64))
    assert first.tolist() == [-1, -1, 1]
    later = seen.first_rows(np.array([7, 9, 9, 5], dtype=np.int64), np.array([4, 5, 6, 7], dtype=np.int64))
    assert later.tolist() == [2, -1, 5, 1]
    # Many runs are merged without losing any key.
    for start in range(10, 200, 10):
        seen.first_rows(
            np.arange(start, start + 10, dtype=np.int64), np.arange(start, start + 10, dtype=np.int64)
        )
    again = seen.first_rows(np.array([9, 150, 5], dtype=np.int64), np.array([900, 901, 902], dtype=np.int64))
    assert again.tolist() == [5, 150, 1]


def test_distinct_keys_are_found_first_where_np_unique_finds_them() -> None:
    # The default sort is not stable: copies of a key come out in any order, yet the first is found.
    keys = np.random.default_rng(7).integers(0, 50, size=5_000).astype(np.int64)
    got = _distinct(keys)
    expected = np.unique(keys, return_index=True, return_inverse=True)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_a_database_error_while_writing_directly_fails_cleanly(
    db: Engine, direct: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_copy(connection: Any, rows: Any) -> None:
        connection.execute("SELECT 1 / 0")  # a real database error, on the writer's thread

    monkeypatch.setattr(pipeline, "copy_assets", broken_copy)
    before_indexes, before_rows = asset_schema(db), counts(db)
    with pytest.raises(DatabaseUnavailable, match="division by zero"):
        run(db, direct, write_geojson(tmp_path / "a.geojson", three_lamps()))
    assert asset_schema(db) == before_indexes
    assert counts(db) == before_rows


def test_an_explicit_code_above_the_numbering_moves_it_on_and_no_serial_is_lost(
    db: Engine, direct: Settings, tmp_path: Path
) -> None:
    features = [
        lamp(114.3500, 22.7000, OBJNAME="上水井盖"),
        lamp(114.3501, 22.7001, OBJNAME="上水井盖", OBJCODE="4403100101000005"),
        lamp(114.3502, 22.7002, OBJNAME="上水井盖"),
    ]
    report = run(db, direct, write_geojson(tmp_path / "a.geojson", features), chunk_size=1)
    assert any(DIRECT_NOTE in note for note in report.notes)
    assert sorted(parse_code(row[0]).serial for row in registry(db)) == [1, 5, 6]
    with db.connect() as conn:
        # The block taken for the batch went back down to just above the last serial used.
        assert (
            conn.execute(text("SELECT next_serial FROM code_serials WHERE class_code = '0101'")).scalar() == 7
        )


def test_the_service_role_loads_the_planned_way(
    db: Engine, engine: Engine, direct: Settings, tmp_path: Path
) -> None:
    # The API's role may not truncate history or drop indexes: an import through it takes the usual path.
    report = run(engine, direct, write_geojson(tmp_path / "a.geojson", three_lamps()))
    assert report.created == 3
    assert not any(DIRECT_NOTE in note for note in report.notes)
    # ... and says why, and what would have been faster.
    assert any("smartcode import" in note and "owner" in note for note in report.notes)
    # A registry that holds assets takes the usual path with any role: nothing to say then.
    again = run(engine, direct, write_geojson(tmp_path / "b.geojson", [lamp(114.3510, 22.7010)]))
    assert again.created == 1 and not any("smartcode import" in note for note in again.notes)
