"""Zones and responsibility rules: file imports with validation and repair, versions, API and CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import pytest
import shapely
from fastapi.testclient import TestClient
from shapely.geometry import mapping
from sqlalchemy import Engine

from common.errors import InvalidInput
from gis.area import ServiceArea
from gis.crs import crs_from_epsg, geometry_from_wgs84
from importers import zone_files
from registry import rules, zones
from registry.db import Actor, transaction
from registry.validity import Versions
from tests.conftest import ADMIN_TOKEN
from tests.helpers import COUNTY, PINGSHAN, make_asset, make_unit
from tests.test_cli import run
from tests.test_resolve import at_m, box, pt


def feature(name: str | None, polygon: Any, **props: Any) -> dict[str, Any]:
    """A GeoJSON feature with a name and more properties."""
    geometry = polygon if isinstance(polygon, dict) else mapping(polygon)
    return {"type": "Feature", "properties": {"NAME": name, **props}, "geometry": geometry}


def write_geojson(path: Path, features: list[dict[str, Any]]) -> Path:
    """Write a FeatureCollection."""
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False))
    return path


def bowtie(x0: float, y0: float, size: float) -> dict[str, Any]:
    """A self-intersecting polygon (figure eight) in metres around PINGSHAN: invalid, repairable."""
    ring = [at_m(x0, y0), at_m(x0 + size, y0 + size), at_m(x0 + size, y0), at_m(x0, y0 + size), at_m(x0, y0)]
    return {"type": "Polygon", "coordinates": [ring]}


def import_file(db: Engine, admin: Actor, path: Path, **kwargs: Any) -> zones.ZoneImportReport:
    """Run a zone import in its own transaction."""
    with transaction(db) as session:
        return zone_files.import_zones(
            session, admin, path, area=ServiceArea.from_settings(), county=COUNTY, **kwargs
        )


def import_rules(db: Engine, admin: Actor, content: str) -> rules.RuleImportReport:
    """Run a rules import in its own transaction."""
    with transaction(db) as session:
        return rules.import_rules_csv(session, admin, content, county=COUNTY)


def test_zone_import_creates_units_repairs_polygons_and_versions_boundaries(
    db: Engine, admin: Actor, tmp_path: Path
) -> None:
    make_unit(db, "坪山街道办事处", admin, kind="street_office", aliases=["坪山街道办"])
    path = write_geojson(
        tmp_path / "streets.geojson",
        [
            feature("坪山街道", box(-1000, -1000, 0, 1000), OFFICE="坪山街道办"),  # matched by alias
            feature("马峦街道", bowtie(0, -1000, 1000), OFFICE="马峦街道办事处"),  # new, unverified unit
        ],
    )
    report = import_file(db, admin, path, level="street", name_field="NAME", unit_field="OFFICE")
    assert report.created == ["坪山街道", "马峦街道"] and report.units_created == ["马峦街道办事处"]
    assert report.repaired[0]["name"] == "马峦街道" and "Self-intersection" in report.repaired[0]["note"]
    with transaction(db) as session:
        listed, total = zones.list_zones(session, level="street")
        assert total == 2
        assert {z["name"]: z["unit"]["name"] for z in listed} == {
            "坪山街道": "坪山街道办事处",
            "马峦街道": "马峦街道办事处",
        }
        repaired = next(z for z in listed if z["name"] == "马峦街道")
        assert repaired["repair_note"].startswith("repaired with make_valid")
        geometry = zones.get_zone(session, repaired["id"], with_geometry=True)["geometry"]
        assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 2
    # Importing the same file again changes nothing; a moved boundary makes a new generation.
    assert import_file(db, admin, path, level="street", name_field="NAME", unit_field="OFFICE").unchanged == [
        "坪山街道",
        "马峦街道",
    ]
    moved = write_geojson(
        tmp_path / "streets2.geojson",
        [feature("坪山街道", box(-1000, -1000, 100, 1000), OFFICE="坪山街道办")],
    )
    assert import_file(db, admin, moved, level="street", name_field="NAME", unit_field="OFFICE").replaced == [
        "坪山街道"
    ]
    with transaction(db) as session:
        versions, _ = zones.list_zones(session, name="坪山街道", versions=Versions(all_versions=True))
    assert len(versions) == 2 and versions[0]["valid_to"] == versions[1]["valid_from"]
    assert versions[0]["valid_from"] is None  # the first boundary holds since ever


def test_zone_import_refuses_the_whole_file_with_row_numbers(
    db: Engine, admin: Actor, tmp_path: Path
) -> None:
    flat = {"type": "Polygon", "coordinates": [[at_m(0, 0), at_m(10, 0), at_m(20, 0), at_m(0, 0)]]}
    path = write_geojson(
        tmp_path / "bad.geojson",
        [
            feature("好社区", box(0, 0, 100, 100)),
            feature(None, box(0, 0, 50, 50)),
            feature("零面积社区", flat),
            feature("远方社区", shapely.Polygon([(113.0, 22.0), (113.01, 22.0), (113.01, 22.01)])),
            feature("线社区", {"type": "LineString", "coordinates": [at_m(0, 0), at_m(10, 10)]}),
        ],
    )
    with pytest.raises(InvalidInput) as refused:
        import_file(db, admin, path, level="community", name_field="NAME")
    message = refused.value.message
    assert message.startswith("bad.geojson：未导入任何区域：第 2 行：NAME 为空")
    # Each problem names its row, in Chinese first (the English half follows after " / ").
    rows = [p.split("：")[0] for p in refused.value.details["problems"]]
    assert rows == ["第 2 行", "第 3 行（零面积社区）", "第 4 行（远方社区）", "第 5 行（线社区）"]
    assert " / bad.geojson: nothing imported: row 2: empty NAME; " in message
    assert "row 3 (零面积社区)" in message and "no area" in message
    assert "outside the service area" in message
    assert "row 5 (线社区): a zone must be a Polygon" in message
    with transaction(db) as session:
        assert zones.list_zones(session)[1] == 0
    with pytest.raises(InvalidInput, match="no field 'MINGCHENG'"):
        import_file(db, admin, path, level="community", name_field="MINGCHENG")
    with pytest.raises(InvalidInput, match="unknown zone level 'county'"):
        import_file(db, admin, path, level="county", name_field="NAME")


def test_zone_import_reads_a_projected_geopackage(db: Engine, admin: Actor, tmp_path: Path) -> None:
    metric = crs_from_epsg(4547)
    polygon = geometry_from_wgs84(box(-200, -200, 200, 200), metric)
    path = tmp_path / "grids.gpkg"
    pyogrio.raw.write(
        path,
        np.array([shapely.to_wkb(polygon)], dtype=object),
        [np.array(["44031000100101"], dtype=object), np.array(["六联社区工作站"], dtype=object)],
        fields=["BGCODE", "DEPT"],
        driver="GPKG",
        geometry_type="Polygon",
        crs="EPSG:4547",
    )
    report = import_file(
        db, admin, path, level="grid", name_field="BGCODE", code_field="BGCODE", unit_field="DEPT"
    )
    assert report.crs == "EPSG:4547" and report.created == ["44031000100101"]
    with transaction(db) as session:
        zone = zones.list_zones(session, level="grid")[0][0]
        stored = shapely.geometry.shape(zones.get_zone(session, zone["id"], with_geometry=True)["geometry"])
    assert stored.contains(shapely.Point(*PINGSHAN)) and not stored.contains(shapely.Point(*at_m(250)))


def test_rules_csv_import_all_or_nothing(db: Engine, admin: Actor, tmp_path: Path) -> None:
    import_file(
        db,
        admin,
        write_geojson(tmp_path / "s.geojson", [feature("坪山街道", box(-1000, -1000, 1000, 1000))]),
        level="street",
        name_field="NAME",
    )
    good = (
        "zone,level,class,category,unit,priority\n"
        "坪山街道,street,路灯,,坪山区路灯管理所,5\n"
        "坪山街道,,,占道经营,坪山区城市管理和综合执法局,\n"
        ",,0114,,坪山区水务局,0\n"
    )
    report = import_rules(db, admin, "\ufeff" + good)
    assert len(report.created) == 3 and set(report.units_created) == {
        "坪山区路灯管理所",
        "坪山区城市管理和综合执法局",
        "坪山区水务局",
    }
    assert len(import_rules(db, admin, good).unchanged) == 3
    changed = good.replace("坪山区路灯管理所,5", "坪山区城市管理和综合执法局,5")
    assert len(import_rules(db, admin, changed).replaced) == 1
    with transaction(db) as session:
        current, _ = rules.list_rules(session)
        every, _ = rules.list_rules(session, versions=Versions(all_versions=True))
    assert len(current) == 3 and len(every) == 4
    district_rule = next(r for r in current if r["zone"] is None)
    assert district_rule["class"] == {"code": "0114", "name": "无主井盖"}
    bad = (
        "zone,level,class,category,unit,priority\n"
        "不存在街道,street,0118,,某单位,1\n"
        "坪山街道,street,lamp,,某单位,1\n"
        "坪山街道,street,,不存在类别,某单位,1\n"
        "坪山街道,street,0305,,某单位,high\n"
        "坪山街道,street,0117,,,1\n"
    )
    with pytest.raises(InvalidInput) as refused:
        import_rules(db, admin, bad)
    problems = refused.value.details["problems"]
    assert problems[0].startswith("第 2 行：没有名为 '不存在街道' 的街道区域：请先导入区域 / ")
    assert [p.split(" / ", 1)[1] for p in problems] == [
        "row 2: no street zone named '不存在街道': import the zones first",
        "row 3: unknown component class 'lamp'",
        "row 4: unknown complaint category '不存在类别'",
        "row 5: priority 'high' is not a whole number",
        "row 6: a rule needs the responsible unit",
    ]
    with transaction(db) as session:
        assert rules.list_rules(session)[1] == 3  # nothing of the bad file was kept
    with pytest.raises(InvalidInput, match="missing column"):
        import_rules(db, admin, "zone,unit\nA,B\n")


def test_zones_and_rules_over_http(client: TestClient, auth: dict[str, str], tmp_path: Path) -> None:
    body = {
        "level": "street",
        "name": "坪山街道",
        "geometry": mapping(box(-1000, -1000, 1000, 1000)),
        "unit": "坪山街道办事处",
    }
    assert client.post("/api/v1/zones", json=body).status_code == 401
    created = client.post("/api/v1/zones", json=body, headers=auth)
    assert created.status_code == 201 and created.json()["outcome"] == "created"
    metric = geometry_from_wgs84(box(-300, -300, 300, 300), crs_from_epsg(4547))
    community = client.post(
        "/api/v1/zones",
        json={"level": "community", "name": "六联社区", "geometry": mapping(metric), "crs": "EPSG:4547"},
        headers=auth,
    )
    assert community.status_code == 201, community.text
    upload = write_geojson(tmp_path / "contracts.geojson", [feature("一标段", bowtie(-500, -500, 1000))])
    with upload.open("rb") as handle:
        imported = client.post(
            "/api/v1/zones/import",
            files={"file": ("contracts.geojson", handle, "application/geo+json")},
            data={"level": "contract", "name_field": "NAME"},
            headers=auth,
        )
    assert imported.status_code == 200, imported.text
    assert imported.json()["created"] == ["一标段"] and imported.json()["repaired"]
    csv_text = "zone,level,class,category,unit,priority\n六联社区,community,0118,,坪山区路灯管理所,1\n"
    rules_response = client.post(
        "/api/v1/rules/import", files={"file": ("rules.csv", csv_text.encode(), "text/csv")}, headers=auth
    )
    assert rules_response.status_code == 200 and len(rules_response.json()["created"]) == 1
    lon, lat = PINGSHAN
    answer = client.get(
        "/api/v1/resolve", params={"lon": lon, "lat": lat, "class": "0118"}, headers=auth
    ).json()
    assert answer["rule"] == "responsibility_rule" and answer["owner"]["name"] == "坪山区路灯管理所"
    rule_id = answer["matched_rule"]["rule_id"]
    closed = client.post(f"/api/v1/rules/{rule_id}/close", json={"reason": "移交街道"}, headers=auth)
    assert closed.status_code == 200 and closed.json()["valid_to"] is not None
    fallback = client.get(
        "/api/v1/resolve", params={"lon": lon, "lat": lat, "class": "0118"}, headers=auth
    ).json()
    assert fallback["status"] == "fallback" and fallback["owner"]["name"] == "坪山街道办事处"
    listed = client.get("/api/v1/zones", headers=auth).json()
    assert listed["total"] == 3
    bad = client.post("/api/v1/zones", json={**body, "level": "county"}, headers=auth)
    assert bad.status_code == 400 and "unknown zone level" in bad.json()["error"]["message"]
    point_zone = client.post(
        "/api/v1/zones",
        json={**body, "name": "点", "geometry": {"type": "Point", "coordinates": [lon, lat]}},
        headers=auth,
    )
    assert (
        point_zone.status_code == 400 and "Polygon or MultiPolygon" in point_zone.json()["error"]["message"]
    )


def test_cli_imports_and_resolves(db: Engine, admin: Actor, migrated_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "SMARTCODE_DATABASE_URL": migrated_url, "SMARTCODE_API_TOKEN": ADMIN_TOKEN}
    path = write_geojson(
        tmp_path / "streets.geojson", [feature("坪山街道", box(-1000, -1000, 1000, 1000), O="坪山街道办事处")]
    )
    imported = run(
        "zones",
        "import",
        str(path),
        "--level",
        "street",
        "--name-field",
        "NAME",
        "--unit-field",
        "O",
        "--json",
        env=env,
    )
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["created"] == ["坪山街道"]
    lamp = make_asset(db, admin, geometry=pt(4))
    lon, lat = PINGSHAN
    text_answer = run("resolve", "--at", f"{lon},{lat}", "--class", "0305", env=env)
    assert text_answer.returncode == 0, text_answer.stderr
    assert text_answer.stdout.startswith("属地兜底（依据：街道属地")
    assert "坪山街道办事处" in text_answer.stdout
    by_code = json.loads(run("resolve", "--code", lamp.code, "--json", env=env).stdout)
    assert by_code["asset"]["code"] == lamp.code and by_code["rule"] == "code"
    swapped = run("resolve", "--at", f"{lat},{lon}", env=env)
    assert swapped.returncode == 1 and "look swapped" in swapped.stderr


def test_nearest_asset_beats_rules(
    db: Engine, admin: Actor, client: TestClient, auth: dict[str, str]
) -> None:
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility")
    lamp = make_asset(db, admin, owner_id=power.id, geometry=pt(10))
    client.post(
        "/api/v1/zones",
        json={
            "level": "street",
            "name": "坪山街道",
            "geometry": mapping(box(-1000, -1000, 1000, 1000)),
            "unit": "坪山街道办事处",
        },
        headers=auth,
    )
    client.post(
        "/api/v1/rules", json={"zone": "坪山街道", "class": "0118", "unit": "坪山区路灯管理所"}, headers=auth
    )
    lon, lat = PINGSHAN
    answer = client.get(
        "/api/v1/resolve", params={"lon": lon, "lat": lat, "class": "0118"}, headers=auth
    ).json()
    assert answer["rule"] == "nearest_asset" and answer["asset"]["code"] == lamp.code
