"""Every supported format end to end into the registry, and coordinate systems that are not declared."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import pytest
import shapely
from openpyxl import Workbook
from sqlalchemy import Engine, text

from common.settings import Settings
from gis.crs import crs_from_epsg, from_wgs84_arrays
from tests.test_import_pipeline import POWER, WATER, run, run_rejected

LONS = [114.3466, 114.3470, 114.3480]
LATS = [22.6953, 22.6960, 22.6970]
NAMES = ["路灯", "上水井盖", "立杆"]
OWNERS = [POWER, WATER, POWER]


def stored(db: Engine) -> list[tuple[Any, ...]]:
    """(class, owner name, lon, lat) of every asset, by class."""
    with db.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT a.class_code, u.name, round(ST_X(a.geom)::numeric, 6)::float, "
                    "round(ST_Y(a.geom)::numeric, 6)::float FROM assets a "
                    "LEFT JOIN units u ON u.id = a.owner_id ORDER BY a.class_code"
                )
            ).all()
        ]


EXPECTED = [
    ("0101", WATER, 114.347, 22.696),
    ("0117", POWER, 114.348, 22.697),
    ("0118", POWER, 114.3466, 22.6953),
]


def write_shapefile(path: Path, xs: list[float], ys: list[float], *, encoding: str, crs: str) -> Path:
    pyogrio.raw.write(
        path,
        geometry=np.array(shapely.to_wkb(shapely.points(xs, ys)), dtype=object),
        field_data=[np.array(NAMES, dtype=object), np.array(OWNERS, dtype=object)],
        fields=["OBJNAME", "DEPTNAME2"],
        geometry_type="Point",
        crs=crs,
        encoding=encoding,
        driver="ESRI Shapefile",
    )
    return path


def test_gbk_shapefile_without_cpg(db: Engine, settings: Settings, tmp_path: Path) -> None:
    shp = write_shapefile(tmp_path / "部件.shp", LONS, LATS, encoding="GBK", crs="EPSG:4326")
    (tmp_path / "部件.cpg").unlink()
    report = run(db, settings, shp)
    assert report.counts()["created"] == 3 and report.encoding == "GBK"
    assert report.crs == {
        "used": "wgs84",
        "origin": "declared",
        "strength": "declared",
        "note": "由文件声明 / declared by the file",
    }
    assert stored(db) == EXPECTED


def test_projected_shapefile_without_prj_is_detected_and_said(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    xs, ys = from_wgs84_arrays(LONS, LATS, crs_from_epsg(4547))
    shp = write_shapefile(tmp_path / "surveyed.shp", list(xs), list(ys), encoding="UTF-8", crs="EPSG:4547")
    (tmp_path / "surveyed.prj").unlink()
    report = run(db, settings, shp)
    assert report.crs["origin"] == "detected" and report.crs["used"] == "EPSG:4547"
    assert "declares no coordinate system" in report.crs["note"] and "assumed EPSG:4547" in report.crs["note"]
    assert any("no .prj" in note for note in report.notes)
    assert stored(db) == EXPECTED


def features() -> list[dict[str, Any]]:
    return [
        {
            "type": "Feature",
            "properties": {"OBJCODE": "", "OBJNAME": name, "DEPTNAME2": owner},
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
        }
        for name, owner, lon, lat in zip(NAMES, OWNERS, LONS, LATS, strict=True)
    ]


def test_geojson(db: Engine, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "inventory.geojson"
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": features()}, ensure_ascii=False), "utf-8"
    )
    assert run(db, settings, path).counts()["created"] == 3
    assert stored(db) == EXPECTED


def test_geojsonseq(db: Engine, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "inventory.geojsonl"
    path.write_text("\n".join(json.dumps(f, ensure_ascii=False) for f in features()) + "\n", "utf-8")
    report = run(db, settings, path)
    assert report.format == "geojsonseq" and report.counts()["created"] == 3
    assert stored(db) == EXPECTED


def test_geopackage_in_cgcs2000(db: Engine, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "inventory.gpkg"
    pyogrio.raw.write(
        path,
        geometry=np.array(shapely.to_wkb(shapely.points(LONS, LATS)), dtype=object),
        field_data=[np.array(NAMES, dtype=object), np.array(OWNERS, dtype=object)],
        fields=["OBJNAME", "DEPTNAME2"],
        layer="部件",
        geometry_type="Point",
        crs="EPSG:4490",
        driver="GPKG",
    )
    report = run(db, settings, path)
    assert report.crs["used"] == "EPSG:4490" and report.crs["origin"] == "declared"
    assert stored(db) == EXPECTED


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv(db: Engine, settings: Settings, tmp_path: Path) -> None:
    rows = [[n, o, x, y] for n, o, x, y in zip(NAMES, OWNERS, LONS, LATS, strict=True)]
    path = write_csv(tmp_path / "inventory.csv", ["OBJNAME", "DEPTNAME2", "经度", "纬度"], rows)
    report = run(db, settings, path)
    assert report.format == "csv" and report.counts()["created"] == 3
    assert stored(db) == EXPECTED


def test_csv_with_latitude_and_longitude_swapped_is_detected(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    rows = [[n, o, y, x] for n, o, x, y in zip(NAMES, OWNERS, LONS, LATS, strict=True)]
    path = write_csv(tmp_path / "swapped.csv", ["OBJNAME", "DEPTNAME2", "经度", "纬度"], rows)
    report = run(db, settings, path)
    assert report.crs["swapped"] is True and "swapped" in report.crs["note"]
    assert report.counts()["created"] == 3
    assert stored(db) == EXPECTED


def dms(value: float) -> str:
    degrees = int(value)
    minutes_float = (value - degrees) * 60
    minutes = int(minutes_float)
    return f"{degrees}°{minutes}'{(minutes_float - minutes) * 60:.4f}\""


def test_excel_with_dms_text(db: Engine, settings: Settings, tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["坪山区部件台账"])  # a title row above the header
    sheet.append(["OBJNAME", "DEPTNAME2", "经度", "纬度", "ORDATE"])
    for name, owner, lon, lat in zip(NAMES, OWNERS, LONS, LATS, strict=True):
        sheet.append([name, owner, dms(lon), dms(lat), "2019/5/1"])
    path = tmp_path / "inventory.xlsx"
    workbook.save(path)
    report = run(db, settings, path)
    assert report.format == "xlsx" and report.counts()["created"] == 3, report.problems
    assert stored(db) == EXPECTED
    with db.connect() as conn:
        assert (
            conn.execute(text("SELECT DISTINCT installed_on::text FROM assets")).scalar_one() == "2019-05-01"
        )


@pytest.mark.parametrize("bad", ["EPSG:4326"])
def test_declared_crs_that_puts_points_far_away_is_rejected_row_by_row(
    db: Engine, settings: Settings, tmp_path: Path, bad: str
) -> None:
    xs, ys = from_wgs84_arrays(LONS, LATS, crs_from_epsg(4547))
    rows = [[n, o, x, y] for n, o, x, y in zip(NAMES, OWNERS, xs, ys, strict=True)]
    path = write_csv(tmp_path / "metres.csv", ["OBJNAME", "DEPTNAME2", "X", "Y"], rows)
    report = run_rejected(db, settings, path, crs=bad)
    assert report.counts()["rejected"] == 3
    assert "declare the right coordinate system" in report.problems[0]["reason"]


def test_gcj02_coordinates_are_recognised_against_registered_assets(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    from gis.crs import wgs84_to_gcj02

    rng = np.random.default_rng(7)
    lons = 114.33 + rng.random(40) * 0.04
    lats = 22.68 + rng.random(40) * 0.04
    rows = [["路灯", POWER, x, y] for x, y in zip(lons, lats, strict=True)]
    run(db, settings, write_csv(tmp_path / "lamps.csv", ["OBJNAME", "DEPTNAME2", "经度", "纬度"], rows))
    # The poles beside those lamps, digitised on AMap: GCJ-02, about 600 m off if read as WGS84.
    g_lons, g_lats = wgs84_to_gcj02(lons + 0.00005, lats)
    poles = [["立杆", POWER, x, y] for x, y in zip(g_lons, g_lats, strict=True)]
    report = run(
        db, settings, write_csv(tmp_path / "poles.csv", ["OBJNAME", "DEPTNAME2", "经度", "纬度"], poles)
    )
    assert report.crs["used"] == "gcj02" and "chose gcj02" in report.crs["note"]
    with db.connect() as conn:
        placed = conn.execute(
            text("SELECT ST_X(geom), ST_Y(geom) FROM assets WHERE class_code = '0117' ORDER BY id")
        ).all()
    got = np.array(sorted(placed))
    want = np.array(sorted(zip(lons + 0.00005, lats, strict=True)))
    assert np.abs(got - want).max() < 1e-7  # converted back to WGS84 to the centimetre
