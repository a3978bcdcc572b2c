"""Importing inventories into the registry: batches, codes, idempotence, updates, atomicity, rollback.

Fixture files are generated in tmp_path; every test runs on the real test PostGIS.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from common.errors import Conflict, DatabaseUnavailable
from common.settings import Settings
from importers.batches import rollback_batch
from importers.pipeline import ImportOptions, ImportRefused, ImportRejected, ImportReport, run_import
from registry.assets import responsibility_periods
from registry.codes import check_digits, mod11_10_check_digit, parse_code
from registry.db import Actor, transaction
from tests.helpers import make_asset

ADMIN = Actor(name="test-import", admin=True)
POWER = "深圳供电局有限公司"
WATER = "深圳市水务集团有限公司"
CITY = "深圳市坪山区城市管理和综合执法局"


def lamp(lon: float, lat: float, **props: Any) -> dict[str, Any]:
    """A 数字城管 feature (a street lamp unless OBJNAME says otherwise)."""
    base = {
        "OBJCODE": "",
        "OBJNAME": "路灯",
        "DEPTNAME1": CITY,
        "DEPTNAME2": POWER,
        "DEPTNAME3": POWER,
        "OBJSTATE": "完好",
        "ORDATE": "2019-05-01",
    }
    base.update(props)
    return {"type": "Feature", "properties": base, "geometry": {"type": "Point", "coordinates": [lon, lat]}}


def shaped(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    """A feature with any geometry."""
    feature = lamp(0, 0, **props)
    feature["geometry"] = geometry
    return feature


def write_geojson(path: Path, features: list[dict[str, Any]]) -> Path:
    """A FeatureCollection file (no crs member)."""
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False), "utf-8"
    )
    return path


def three_lamps() -> list[dict[str, Any]]:
    """Three lamps in 坪山中心区, no codes."""
    return [lamp(114.3466, 22.6953), lamp(114.3470, 22.6960), lamp(114.3480, 22.6970, DEPTNAME2=WATER)]


def run(db: Engine, settings: Settings, path: Path, actor: Actor = ADMIN, **options: Any) -> ImportReport:
    """Import ``path`` with the test settings."""
    return run_import(db, path, actor, settings, ImportOptions(**options))


def counts(db: Engine) -> dict[str, int]:
    """Row counts of everything an import may write."""
    tables = ("assets", "asset_history", "asset_responsibility", "units", "code_serials", "audit_log")
    with db.connect() as conn:
        out = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}
        out["next_serials"] = conn.execute(
            text("SELECT coalesce(sum(next_serial), 0) FROM code_serials")
        ).scalar_one()
    return out


def run_rejected(db: Engine, settings: Settings, path: Path, **options: Any) -> ImportReport:
    """Import ``path`` expecting every row to be rejected: the batch is 'rejected', nothing written."""
    with pytest.raises(ImportRejected) as caught:
        run(db, settings, path, **options)
    data = caught.value.report
    assert data is not None and data["status"] == "rejected"
    keys = ("file", "sha256", "status", "batch_id", "profile", "dry_run", "strict", "problems")
    report = ImportReport(**{key: data[key] for key in keys})
    for key, value in data["counts"].items():
        setattr(report, key, value)
    return report


def problem(report: ImportReport, row: int) -> dict[str, Any]:
    """The problem reported for ``row``."""
    found = [p for p in report.problems if p["row"] == row]
    assert found, f"no problem for row {row}: {report.problems}"
    return found[0]


# --------------------------------------------------------------------------------------------------


@hsettings(max_examples=50, deadline=None)
@given(
    prefix=st.from_regex(r"[0-9]{10}", fullmatch=True),
    serials=st.lists(st.integers(min_value=0, max_value=999_999), min_size=1, max_size=20),
)
def test_vectorised_check_digits_match_the_scalar_ones(prefix: str, serials: list[int]) -> None:
    digits = check_digits(prefix, np.array(serials))
    assert [int(d) for d in digits] == [int(mod11_10_check_digit(f"{prefix}{s:06d}")) for s in serials]


def test_a_standard_export_loads_with_no_configuration(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "lamps.geojson", three_lamps())
    report = run(db, settings, path)
    assert report.status == "committed" and report.batch_id is not None
    assert report.counts() == {"read": 3, "created": 3, "updated": 0, "unchanged": 0, "rejected": 0}
    assert report.codes_allocated == {"0118": 3}
    assert set(report.units_created) == {POWER, WATER, CITY}
    assert report.crs["origin"] == "detected" and "assumed wgs84" in report.crs["note"]
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.code, a.serial, o.name, o.verified, s.name, a.batch_id, a.installed_on::text "
                "FROM assets a JOIN units o ON o.id = a.owner_id JOIN units s ON s.id = a.supervisor_id "
                "ORDER BY a.serial"
            )
        ).all()
        versions = conn.execute(text("SELECT DISTINCT change_action, batch_id, version FROM assets")).all()
        replaced = conn.execute(text("SELECT count(*) FROM asset_history")).scalar_one()
        batch = conn.execute(text("SELECT status, counts, file_name FROM import_batches")).one()
    assert [r.serial for r in rows] == [1, 2, 3]
    assert all(parse_code(r.code).class_code == "0118" for r in rows)  # valid check digits
    assert rows[2][2] == WATER and rows[0][3] is False and rows[0][4] == CITY
    assert {r.batch_id for r in rows} == {report.batch_id} and rows[0].installed_on == "2019-05-01"
    assert versions == [("import", report.batch_id, 1)] and replaced == 0  # one row per new asset
    assert batch.status == "committed" and batch.counts["created"] == 3 and batch.file_name == "lamps.geojson"


def test_reimporting_the_same_file_changes_nothing(db: Engine, settings: Settings, tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "lamps.geojson", three_lamps())
    run(db, settings, path)
    before = counts(db)
    again = run(db, settings, path)
    assert again.counts() == {"read": 3, "created": 0, "updated": 0, "unchanged": 3, "rejected": 0}
    assert again.units_created == [] and again.codes_allocated == {}
    assert counts(db) == before  # no history rows, no serials, no units


def test_a_changed_file_updates_only_what_changed(db: Engine, settings: Settings, tmp_path: Path) -> None:
    features = three_lamps()
    codes = [f"44031001180000{i:02d}" for i in (11, 12, 13)]
    for feature, code in zip(features, codes, strict=True):
        feature["properties"]["OBJCODE"] = code
    path = write_geojson(tmp_path / "lamps.geojson", features)
    run(db, settings, path)
    codes = [str(parse_code(c)) for c in codes]
    features[0]["properties"]["DEPTNAME2"] = WATER  # new owner
    features[2]["geometry"]["coordinates"] = [114.3481, 22.6971]  # moved
    write_geojson(path, features)
    history_before = counts(db)["asset_history"]
    changed = run(db, settings, path)
    assert changed.counts() == {"read": 3, "created": 0, "updated": 2, "unchanged": 1, "rejected": 0}
    with db.connect() as conn:
        versions = dict(conn.execute(text("SELECT code, version FROM assets")).tuples().all())
        written = (
            conn.execute(text("SELECT code FROM assets WHERE batch_id = :b"), {"b": changed.batch_id})
            .scalars()
            .all()
        )
        periods = conn.execute(
            text(
                "SELECT count(*) FROM asset_responsibility r JOIN assets a ON a.id = r.asset_id "
                "WHERE a.code = :c"
            ),
            {"c": codes[0]},
        ).scalar_one()
    assert sorted(written) == sorted([codes[0], codes[2]])
    assert counts(db)["asset_history"] == history_before + 2  # the two replaced versions
    assert versions[codes[1]] == 1 and versions[codes[0]] == 2 and versions[codes[2]] == 2
    assert periods == 1  # the owner change closed the first responsibility period
    with transaction(db) as session:
        shown = responsibility_periods(session, codes[0])
    assert [p["owner"]["name"] for p in shown] == [POWER, WATER]
    assert shown[0]["valid_to"] == shown[1]["valid_from"] and shown[1]["valid_to"] is None


def test_identifiers_keep_their_serial_and_gain_a_check_digit(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    features = [
        lamp(114.3466, 22.6953, OBJCODE="4403100118000500"),
        lamp(114.3470, 22.6960, OBJCODE="440310-0118-000501-" + mod11_10_check_digit("4403100118000501")),
        lamp(114.3480, 22.6970),
    ]
    report = run(db, settings, write_geojson(tmp_path / "coded.geojson", features))
    assert report.counts()["created"] == 3
    with db.connect() as conn:
        rows = conn.execute(text("SELECT code, source_id FROM assets ORDER BY serial")).all()
    assert rows[0].code == "4403100118000500" + mod11_10_check_digit("4403100118000500")
    assert rows[0].source_id == "4403100118000500"
    assert parse_code(rows[2].code).serial == 502  # allocation continues above the adopted serials


def test_the_batch_records_the_digest_of_the_file_it_read(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "lamps.geojson", three_lamps())
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    report = run(db, settings, path)
    assert report.sha256 == expected
    refused_path = write_geojson(tmp_path / "ufo.geojson", [lamp(114.3466, 22.6953, OBJNAME="飞碟")])
    with pytest.raises(ImportRefused) as caught:
        run(db, settings, refused_path, strict=True)
    assert caught.value.report is not None
    assert caught.value.report["sha256"] == hashlib.sha256(refused_path.read_bytes()).hexdigest()
    with db.connect() as conn:
        recorded = conn.execute(
            text("SELECT file_sha256, report->>'sha256' FROM import_batches ORDER BY id")
        ).all()
    refused = caught.value.report["sha256"]
    assert [tuple(r) for r in recorded] == [(expected, expected), (refused, refused)]
    assert run(db, settings, path, dry_run=True).sha256 == expected


def test_dry_run_writes_nothing(db: Engine, settings: Settings, tmp_path: Path) -> None:
    before = counts(db)
    report = run(db, settings, write_geojson(tmp_path / "lamps.geojson", three_lamps()), dry_run=True)
    assert report.status == "dry_run" and report.batch_id is None
    assert report.counts()["created"] == 3 and set(report.units_created) == {POWER, WATER, CITY}
    assert counts(db) == before
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM import_batches")).scalar_one() == 0


def test_strict_refuses_the_whole_batch(db: Engine, settings: Settings, tmp_path: Path) -> None:
    features = [*three_lamps(), lamp(114.3466, 22.6953, OBJNAME="飞碟")]
    path = write_geojson(tmp_path / "lamps.geojson", features)
    before = counts(db)
    with pytest.raises(ImportRefused, match="1 of 4 rows were rejected") as caught:
        run(db, settings, path, strict=True)
    assert counts(db) == before
    assert caught.value.report is not None and caught.value.report["problems"][0]["row"] == 4
    with db.connect() as conn:
        assert conn.execute(text("SELECT status FROM import_batches")).scalar_one() == "refused"
    relaxed = run(db, settings, path)  # without --strict the valid rows land
    assert relaxed.counts()["created"] == 3 and relaxed.counts()["rejected"] == 1


def test_a_fault_half_way_leaves_the_registry_as_it_was(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    run(db, settings, write_geojson(tmp_path / "first.geojson", [lamp(114.35, 22.70)]))
    before = counts(db)
    features = [*three_lamps(), lamp(114.36, 22.71, OBJNAME="上水井盖", DEPTNAME2="新单位甲")]
    path = write_geojson(tmp_path / "lamps.geojson", features)

    def fail(point: str) -> None:
        if point == "created":  # assets, history, units and serials are written by now
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        run_import(db, path, ADMIN, settings, ImportOptions(), fault=fail)
    assert counts(db) == before
    with db.connect() as conn:
        status, error = conn.execute(
            text("SELECT status, error FROM import_batches ORDER BY id DESC")
        ).first()
    assert status == "failed" and "power cut" in error


def test_a_database_failure_half_way_leaves_the_registry_as_it_was(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    before = counts(db)
    path = write_geojson(tmp_path / "lamps.geojson", three_lamps())

    def kill_backend(point: str) -> None:
        if point == "created":
            # The import's own connection dies (as on a server crash): its batch lock names it.
            with db.begin() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND classid = 1229803604 AND pid <> pg_backend_pid()"
                    )
                )

    with pytest.raises(DatabaseUnavailable, match="nothing was written"):
        run_import(db, path, ADMIN, settings, ImportOptions(), fault=kill_backend)
    assert counts(db) == before
    with db.connect() as conn:
        assert conn.execute(text("SELECT status FROM import_batches")).scalar_one() == "failed"


def test_rollback_decommissions_created_and_restores_updated(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    features = [lamp(114.3466, 22.6953, OBJCODE="4403100118000001"), lamp(114.3470, 22.6960)]
    path = write_geojson(tmp_path / "lamps.geojson", features)
    first = run(db, settings, path)
    features[0]["properties"]["DEPTNAME2"] = WATER
    features.append(lamp(114.3490, 22.6990, OBJNAME="上水井盖"))
    write_geojson(path, features)
    second = run(db, settings, path)
    assert second.counts()["updated"] == 1 and second.counts()["created"] == 1

    with pytest.raises(Conflict, match="changed after it"), transaction(db) as session:
        rollback_batch(session, first.batch_id, ADMIN)  # batch 2 changed one of its assets since
    with transaction(db) as session:
        result = rollback_batch(session, second.batch_id, ADMIN)
    assert result == {
        "batch_id": second.batch_id,
        "status": "rolled_back",
        "decommissioned": 1,
        "restored": 1,
    }
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.class_code, a.in_use, a.decommission_reason, u.name, a.batch_id, a.version "
                "FROM assets a LEFT JOIN units u ON u.id = a.owner_id ORDER BY a.class_code DESC, a.serial"
            )
        ).all()
        actions = set(conn.execute(text("SELECT change_action, change_reason FROM assets")).tuples().all())
        status = conn.execute(text("SELECT status FROM import_batches WHERE id = :b"), {"b": second.batch_id})
        assert status.scalar_one() == "rolled_back"
    assert (
        rows[0].name == POWER
        and rows[0].in_use
        and rows[0].batch_id is None  # version 3 is the rollback's, not a batch's
        and rows[0].version == 3
    )
    assert rows[2].class_code == "0101" and not rows[2].in_use
    assert rows[2].decommission_reason == f"import batch {second.batch_id} rolled back"
    assert actions == {
        ("rollback", f"import batch {second.batch_id} rolled back"),  # the restored and the decommissioned
        (
            "import",
            f"导入 lamps.geojson（批次 {first.batch_id}） / import of lamps.geojson (batch {first.batch_id})",
        ),  # the one batch 2 left alone
    }
    with pytest.raises(Conflict, match="is rolled_back"), transaction(db) as session:
        rollback_batch(session, second.batch_id, ADMIN)


def test_an_asset_registered_by_hand_is_adopted_by_its_code(
    db: Engine, settings: Settings, tmp_path: Path, admin: Actor
) -> None:
    by_hand = make_asset(db, admin, code="4403100118000007")
    features = [lamp(114.3466, 22.6953, OBJCODE="4403100118000007", DEPTNAME2=WATER)]
    report = run(db, settings, write_geojson(tmp_path / "lamps.geojson", features))
    assert report.counts()["updated"] == 1 and report.counts()["created"] == 0
    with db.connect() as conn:
        row = conn.execute(text("SELECT code, source_id, version FROM assets")).one()
    assert row.code == by_hand.code and row.source_id == "4403100118000007" and row.version == 2


def test_lines_and_polygons_load_and_reimport_unchanged(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    rail = {
        "type": "LineString",
        "coordinates": [[114.3466, 22.6953], [114.3476, 22.6958], [114.3486, 22.6953]],
    }
    park = {
        "type": "Polygon",
        "coordinates": [
            [[114.35, 22.70], [114.351, 22.70], [114.351, 22.701], [114.35, 22.701], [114.35, 22.70]]
        ],
    }
    features = [shaped(rail, OBJNAME="交通护栏"), shaped(park, OBJNAME="停车场"), lamp(114.3466, 22.6953)]
    path = write_geojson(tmp_path / "mixed.geojson", features)
    first = run(db, settings, path)
    assert first.counts()["created"] == 3, first.problems
    with db.connect() as conn:
        shapes = dict(conn.execute(text("SELECT class_code, GeometryType(geom) FROM assets")).tuples().all())
    assert shapes == {"0211": "LINESTRING", "0201": "POLYGON", "0118": "POINT"}
    assert run(db, settings, path).counts()["unchanged"] == 3


def test_an_empty_file_is_an_empty_batch(db: Engine, settings: Settings, tmp_path: Path) -> None:
    report = run(db, settings, write_geojson(tmp_path / "empty.geojson", []))
    assert report.status == "committed" and report.counts()["read"] == 0


def test_an_assumed_coordinate_system_is_warned_first_and_strict_refuses_it_until_crs_names_it(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "new-lamps.geojson", three_lamps())
    before = counts(db)
    with pytest.raises(ImportRefused) as caught:
        run(db, settings, path, strict=True)
    assert caught.value.report is not None
    assert "--crs gcj02 或 bd09" in caught.value.report["warnings"][0]
    assert counts(db) == before
    named = run(db, settings, path, strict=True, crs="wgs84")
    assert named.status == "committed" and named.warnings == []
    assert named.crs["strength"] == "given"
