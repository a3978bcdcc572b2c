"""Import identity: the same asset keeps its identity however its code is written, whatever its
neighbours in the file, and after a rolled-back batch a re-import starts afresh."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from common.settings import Settings
from importers.batches import rollback_batch
from registry.codes import mod11_10_check_digit
from registry.db import transaction
from tests.test_import_pipeline import (
    ADMIN,
    WATER,
    lamp,
    problem,
    run,
    run_rejected,
    shaped,
    write_geojson,
)

IDENT = "4403100118000123"
CODE = IDENT + mod11_10_check_digit(IDENT)
RAIL = {"type": "LineString", "coordinates": [[114.3466, 22.6953], [114.3476, 22.6958]]}


def assets(db: Engine) -> list[tuple[str, str | None, bool]]:
    with db.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(text("SELECT code, source_id, in_use FROM assets ORDER BY id")).all()
        ]


def test_a_code_written_differently_matches_its_own_asset(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    first = run(db, settings, write_geojson(tmp_path / "a.geojson", [lamp(114.3466, 22.6953, OBJCODE=IDENT)]))
    assert first.counts()["created"] == 1
    assert assets(db) == [(CODE, IDENT, True)]  # the 16-digit form keeps its stored source id
    spellings = [CODE, f"{CODE[:6]}-{CODE[6:10]}-{CODE[10:16]}-{CODE[16]}", IDENT]
    for k, spelling in enumerate(spellings):
        path = write_geojson(tmp_path / f"b{k}.geojson", [lamp(114.3466, 22.6953, OBJCODE=spelling)])
        report = run(db, settings, path)
        assert report.counts()["unchanged"] == 1, (spelling, report.problems)
    changed = write_geojson(tmp_path / "c.geojson", [lamp(114.3466, 22.6953, OBJCODE=CODE, DEPTNAME2=WATER)])
    assert run(db, settings, changed).counts()["updated"] == 1
    assert [(c, s) for c, s, _ in assets(db)] == [(CODE, IDENT)]


def test_a_source_id_stored_by_an_older_import_as_written_still_matches(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    run(db, settings, write_geojson(tmp_path / "a.geojson", [lamp(114.3466, 22.6953, OBJCODE=CODE)]))
    with db.begin() as conn:  # what imports before the fix stored: the code as written
        conn.execute(text("UPDATE assets SET source_id = :s"), {"s": CODE})
    report = run(db, settings, write_geojson(tmp_path / "b.geojson", [lamp(114.3466, 22.6953, OBJCODE=CODE)]))
    assert report.counts()["unchanged"] == 1, report.problems


def test_a_point_has_the_same_identity_with_or_without_other_shapes_beside_it(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    a, b = lamp(114.3466, 22.6953), lamp(114.3470, 22.6960)
    mixed = run(
        db, settings, write_geojson(tmp_path / "mixed.geojson", [a, b, shaped(RAIL, OBJNAME="交通护栏")])
    )
    assert mixed.counts()["created"] == 3, mixed.problems
    points = run(db, settings, write_geojson(tmp_path / "points.geojson", [a, b]))
    assert points.counts()["unchanged"] == 2 and points.counts()["created"] == 0
    again = run(
        db, settings, write_geojson(tmp_path / "again.geojson", [shaped(RAIL, OBJNAME="交通护栏"), b, a])
    )
    assert again.counts()["unchanged"] == 3
    with db.connect() as conn:
        keys = conn.execute(
            text("SELECT source_id FROM assets WHERE class_code = '0118' ORDER BY source_id")
        ).scalars()
        assert list(keys) == ["geom:0118:1143466000:226953000", "geom:0118:1143470000:226960000"]
    assert len(assets(db)) == 3


def test_a_point_keeps_its_identity_beside_a_row_without_geometry(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    a, b, broken = lamp(114.3466, 22.6953), lamp(114.3470, 22.6960), lamp(114.3480, 22.6970)
    broken["geometry"] = None
    first = run(db, settings, write_geojson(tmp_path / "f1.geojson", [a, b, broken]))
    assert first.counts()["created"] == 2 and first.counts()["rejected"] == 1
    second = run(db, settings, write_geojson(tmp_path / "f2.geojson", [a, b]))
    assert second.counts()["unchanged"] == 2 and len(assets(db)) == 2


def test_reimporting_after_a_rollback_creates_fresh_assets(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "lamps.geojson", [lamp(114.3466, 22.6953), lamp(114.3470, 22.6960)])
    first = run(db, settings, path)
    with transaction(db) as session:
        assert rollback_batch(session, first.batch_id, ADMIN)["decommissioned"] == 2
    with db.connect() as conn:
        parked = conn.execute(text("SELECT source_id FROM assets ORDER BY source_id")).scalars().all()
    assert parked == [
        f"rolledback:{first.batch_id}:geom:0118:1143466000:226953000",
        f"rolledback:{first.batch_id}:geom:0118:1143470000:226960000",
    ]
    again = run(db, settings, path)
    assert again.counts()["created"] == 2 and again.counts()["unchanged"] == 0, again.problems
    assert sorted(in_use for _, _, in_use in assets(db)) == [False, False, True, True]
    assert run(db, settings, path).counts()["unchanged"] == 2


def test_a_future_installation_date_is_a_row_problem(db: Engine, settings: Settings, tmp_path: Path) -> None:
    features = [lamp(114.3466, 22.6953, ORDATE="2091-05-01"), lamp(114.3470, 22.6960, ORDATE=2019)]
    report = run_rejected(db, settings, write_geojson(tmp_path / "future.geojson", features))
    assert report.counts()["rejected"] == 2 and report.counts()["created"] == 0
    future, year = problem(report, 1), problem(report, 2)
    assert future["field"] == "installed" and "ORDATE" in future["reason"]
    assert "2091-05-01 is in the future" in future["reason"] and future["value"] == "2091-05-01"
    assert year["field"] == "installed" and "a year alone is not a date" in year["reason"]


def test_an_owner_change_closes_a_period_that_starts_in_the_future(
    db: Engine, owner_engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    first = run(db, settings, write_geojson(tmp_path / "a.geojson", [lamp(114.3466, 22.6953, OBJCODE=IDENT)]))
    assert first.counts()["created"] == 1
    with owner_engine.begin() as conn:  # what an import before the check could leave: a period from 2091
        conn.execute(text("ALTER TABLE assets DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE assets SET responsible_since = '2091-04-30 16:00+00'"))
        conn.execute(text("ALTER TABLE assets ENABLE TRIGGER USER"))
    changed = [lamp(114.3466, 22.6953, OBJCODE=IDENT, DEPTNAME2=WATER)]
    report = run(db, settings, write_geojson(tmp_path / "b.geojson", changed))
    assert report.counts()["updated"] == 1, report.problems
    with db.connect() as conn:
        closed = conn.execute(text("SELECT valid_from, valid_to FROM asset_responsibility")).one()
        current_from = conn.execute(text("SELECT responsible_since FROM assets")).scalar_one()
    assert closed.valid_to > closed.valid_from and current_from == closed.valid_to


def test_a_class_change_is_refused_since_the_class_is_part_of_the_code(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    mapping = tmp_path / "ids.toml"
    mapping.write_text('name = "ids"\nextends = "szcg"\n[fields]\nsource_id = ["ZCBH"]\n', "utf-8")
    first = [lamp(114.3466, 22.6953, ZCBH="ZC-1")]
    report = run(db, settings, write_geojson(tmp_path / "a.geojson", first), mapping=str(mapping))
    assert report.counts()["created"] == 1, report.problems
    moved = [lamp(114.3466, 22.6953, ZCBH="ZC-1", OBJNAME="上水井盖")]
    again = run_rejected(db, settings, write_geojson(tmp_path / "b.geojson", moved), mapping=str(mapping))
    assert again.counts()["rejected"] == 1 and again.counts()["updated"] == 0
    refused = problem(again, 1)
    assert refused["field"] == "OBJNAME" and "registered as class 0118" in refused["reason"]
    assert "never changes" in refused["reason"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT class_code, version FROM assets")).one() == ("0118", 1)


def test_a_coded_asset_rolled_back_comes_back_with_its_code(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "a.geojson", [lamp(114.3466, 22.6953, OBJCODE=IDENT)])
    first = run(db, settings, path)
    with transaction(db) as session:
        rollback_batch(session, first.batch_id, ADMIN)
    assert assets(db) == [(CODE, f"rolledback:{first.batch_id}:{IDENT}", False)]
    fixed = write_geojson(tmp_path / "b.geojson", [lamp(114.3466, 22.6953, OBJCODE=IDENT, DEPTNAME2=WATER)])
    again = run(db, settings, fixed)
    assert again.counts()["updated"] == 1 and again.counts()["rejected"] == 0, again.problems
    assert assets(db) == [(CODE, IDENT, True)]  # the same asset, in use again under its own source id
    with db.connect() as conn:
        row = conn.execute(
            text(
                "SELECT u.name, a.decommissioned_at, a.decommission_reason FROM assets a "
                "JOIN units u ON u.id = a.owner_id"
            )
        ).one()
    assert row == (WATER, None, None)
    assert run(db, settings, fixed).counts()["unchanged"] == 1
