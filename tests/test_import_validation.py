"""Every row is validated; each problem names the file, the row (feature number), the field and why."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from common.settings import Settings
from registry.codes import mod11_10_check_digit
from registry.db import Actor
from tests.helpers import make_asset
from tests.test_import_pipeline import lamp, problem, run, shaped, write_geojson

BOWTIE = {
    "type": "Polygon",
    "coordinates": [
        [[114.35, 22.70], [114.351, 22.701], [114.351, 22.70], [114.35, 22.701], [114.35, 22.70]]
    ],
}
LINE = {"type": "LineString", "coordinates": [[114.35, 22.70], [114.351, 22.701]]}


def test_each_validation_error_is_reported_with_file_row_and_field(
    db: Engine, settings: Settings, tmp_path: Path, admin: Actor
) -> None:
    taken = make_asset(db, admin, code="4403100118000900", source_id="registered-by-hand")
    features = [
        lamp(114.3466, 22.6953),  # 1: fine
        shaped(BOWTIE, OBJNAME="停车场"),  # 2: self-intersecting polygon
        shaped(LINE),  # 3: a lamp drawn as a line
        lamp(113.93, 22.52),  # 4: 南山, far outside 坪山
        lamp(114.3466, 22.6953, OBJNAME="飞碟", DEPTNAME3="只在坏行出现的单位"),  # 5: no such class
        lamp(114.3466, 22.6953, OBJCODE="44031001180001"),  # 6: 14 digits
        lamp(114.3470, 22.6953, OBJCODE="4403100118000900"),  # 7: another asset's code
        lamp(114.3466, 22.6953, ORDATE="2019-13-45"),  # 8: no such date
        lamp(114.3466, 22.6953, OBJCODE="4403100117000001"),  # 9: a pole's code on a lamp
        lamp(114.3466, 22.6953, OBJCODE="44031001180000021"),  # 10: wrong check digit
        lamp(22.6953, 114.3466),  # 11: lat/lon swapped in one row
        lamp(114.3480, 22.6960, OBJCODE="4403100118000050"),  # 12: fine
        lamp(114.3481, 22.6961, OBJCODE="4403100118000050"),  # 13: same code again in the file
    ]
    report = run(db, settings, write_geojson(tmp_path / "inventory.geojson", features))
    assert report.counts() == {"read": 13, "created": 2, "updated": 0, "unchanged": 0, "rejected": 11}
    assert {p["file"] for p in report.problems} == {"inventory.geojson"}
    assert report.problems_total == 11
    expectations = {
        2: ("geometry", "invalid geometry: Self-intersection"),
        3: ("geometry", "expects a point geometry (Point), got LineString"),
        4: ("geometry", "km outside the service area"),
        5: ("OBJNAME", "unknown class '飞碟'"),
        6: ("OBJCODE", "has 14 digits"),
        7: ("OBJCODE", "already registered to another asset (source id registered-by-hand)"),
        8: ("installed", "ORDATE: no such date"),
        9: ("OBJCODE", "names class 0117, but the row's class is 0118"),
        10: ("OBJCODE", f"expected {mod11_10_check_digit('4403100118000002')}, got 1"),
        11: ("geometry", "latitude and longitude look swapped"),
        13: ("OBJCODE", "appears again: first at row 12"),
    }
    for row, (field, reason) in expectations.items():
        found = problem(report, row)
        assert found["field"] == field, (row, found)
        assert reason in found["reason"], (row, found)
    assert problem(report, 8)["value"] == "2019-13-45"
    assert "只在坏行出现的单位" not in report.units_created  # no unit is made for a rejected row
    with db.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM assets WHERE code <> :c"), {"c": taken.code}
        ).scalar_one()
    assert stored == 2


def test_unknown_units_are_created_unverified_and_listed(
    db: Engine, settings: Settings, tmp_path: Path, admin: Actor
) -> None:
    from tests.helpers import make_unit

    make_unit(db, "深圳供电局有限公司", admin, kind="utility", aliases=["深圳供电局"], verified=True)
    features = [
        lamp(114.3466, 22.6953, DEPTNAME2="深圳供电局", DEPTNAME3="坪山路灯养护公司", DEPTNAME1=""),
        lamp(114.3470, 22.6960, DEPTNAME2="深圳供电局 有限公司", DEPTNAME3="坪山路灯养护公司", DEPTNAME1=""),
    ]
    report = run(db, settings, write_geojson(tmp_path / "lamps.geojson", features))
    assert report.units_created == ["坪山路灯养护公司"]
    with db.connect() as conn:
        owners = conn.execute(
            text("SELECT DISTINCT u.name, u.verified FROM assets a JOIN units u ON u.id = a.owner_id")
        ).all()
        maintainer = conn.execute(
            text("SELECT DISTINCT u.verified, u.kind FROM assets a JOIN units u ON u.id = a.maintainer_id")
        ).all()
        audit = conn.execute(
            text("SELECT count(*) FROM audit_log WHERE entity = 'unit' AND action = 'create'")
        )
        assert audit.scalar_one() == 2  # the registered one and the new one
    assert owners == [("深圳供电局有限公司", True)]  # matched by alias and by name with a blank
    assert maintainer == [(False, "other")]


def test_zone_restriction_rejects_rows_outside_the_zone(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO zones (county_code, level, name, actor, geom) "
                "VALUES ('440310', 'pilot', '坪山中心区', 'test', "
                "ST_Multi(ST_MakeEnvelope(114.340, 22.690, 114.350, 22.700, 4326)))"
            )
        )
    features = [lamp(114.3466, 22.6953), lamp(114.3700, 22.7200)]
    report = run(db, settings, write_geojson(tmp_path / "lamps.geojson", features), zone="坪山中心区")
    assert report.counts()["created"] == 1 and report.zone == "坪山中心区 (pilot)"
    assert "outside the zone 坪山中心区" in problem(report, 2)["reason"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT zone_name, zone_id IS NOT NULL FROM import_batches")).one() == (
            "坪山中心区",
            True,
        )
