"""``smartcode export`` and GET /api/v1/assets/export: each 智慧码 beside the utility's own 编号."""

from __future__ import annotations

import csv
import io
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from common.settings import Settings
from importers.pipeline import ImportOptions, run_import
from registry import export, tokens
from registry.assets import AssetFilter
from registry.db import Actor, transaction
from tests.conftest import ADMIN_TOKEN
from tests.helpers import make_asset, make_unit, point
from tests.test_cli import run
from tests.test_resolve import add_zone, box


@pytest.fixture
def env(migrated_url: str) -> dict[str, str]:
    """The console script's environment on the test database."""
    return {**os.environ, "SMARTCODE_DATABASE_URL": migrated_url, "SMARTCODE_API_TOKEN": ADMIN_TOKEN}


@pytest.fixture
def ledger(db: Engine, admin: Actor) -> dict[str, Any]:
    """Two lamps of 供电局 (one with the utility's own 编号) and a cover of 水务集团, in and out of a zone."""
    power = make_unit(db, "深圳供电局有限公司", admin)
    water = make_unit(db, "深圳市水务集团有限公司", admin)
    crew = make_unit(db, "深圳市路灯养护有限公司", admin)
    lamp = make_asset(
        db, admin, owner_id=power.id, maintainer_id=crew.id, source_id="台账:LD-0001", address="坪山大道1号"
    )
    far_lamp = make_asset(db, admin, owner_id=power.id, geometry=point(114.3600, 22.7100))
    cover = make_asset(db, admin, "0101", owner_id=water.id, geometry=point(114.3468, 22.6955))
    add_zone(db, admin, "community", "六联社区", box(-100, -100, 100, 100))
    return {"power": power, "water": water, "lamp": lamp, "far_lamp": far_lamp, "cover": cover}


def read_csv(data: bytes) -> list[dict[str, str]]:
    """The rows of an exported CSV (UTF-8 with a byte-order mark)."""
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def test_the_csv_gives_back_the_utilitys_own_identifier_beside_the_smart_code(
    ledger: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "路灯.csv"
    result = run("export", "--output", str(out), "--class", "0118", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"已导出 2 个设施到 {out}"
    rows = read_csv(out.read_bytes())
    assert list(rows[0])[:9] == [
        "智慧码",
        "印刷码",
        "原编号",
        "来源系统",
        "设施类型代码",
        "设施类型",
        "权属单位",
        "养护单位",
        "主管部门",
    ]
    by_code = {r["智慧码"]: r for r in rows}
    lamp = by_code[ledger["lamp"].code]
    assert (lamp["原编号"], lamp["来源系统"]) == ("LD-0001", "台账")
    assert (lamp["设施类型"], lamp["权属单位"], lamp["养护单位"]) == (
        "路灯",
        "深圳供电局有限公司",
        "深圳市路灯养护有限公司",
    )
    assert (lamp["经度"], lamp["纬度"], lamp["在用"], lamp["地址"]) == (
        "114.3466",
        "22.6953",
        "是",
        "坪山大道1号",
    )
    assert lamp["更新时间"].endswith("+08:00")  # local time, with its offset
    assert by_code[ledger["far_lamp"].code]["原编号"] == ""
    assert lamp["印刷码"].count("-") == 3 and lamp["印刷码"].replace("-", "") == lamp["智慧码"]


def test_xlsx_and_geojson_carry_the_same_columns(
    ledger: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    book_path = tmp_path / "assets.xlsx"
    assert run("export", "-o", str(book_path), env=env).returncode == 0
    sheet = openpyxl.load_workbook(book_path, read_only=True).active
    assert sheet is not None
    table = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert tuple(table[0]) == export.COLUMNS and len(table) == 4
    assert [r[0] for r in table[1:]] == sorted(
        a.code for a in (ledger["lamp"], ledger["far_lamp"], ledger["cover"])
    )

    geo = run("export", "--format", "geojson", "--unit", "深圳市水务集团有限公司", env=env)
    assert geo.returncode == 0, geo.stderr
    collection = json.loads(geo.stdout)
    (feature,) = collection["features"]
    assert feature["properties"]["智慧码"] == ledger["cover"].code
    assert feature["properties"]["设施类型"] == "上水井盖"
    assert feature["geometry"] == {"type": "Point", "coordinates": [114.3468, 22.6955]}  # WGS84


def test_filters_by_zone_bbox_batch_and_unit(
    ledger: dict[str, Any], db: Engine, settings: Settings, env: dict[str, str], tmp_path: Path
) -> None:
    def codes(*args: str) -> set[str]:
        result = run("export", *args, env=env)
        assert result.returncode == 0, result.stderr
        return {r["智慧码"] for r in read_csv(result.stdout.encode("utf-8"))}

    near = {ledger["lamp"].code, ledger["cover"].code}
    assert codes("--zone", "六联社区") == near
    assert codes("--bbox", "114.34,22.69,114.35,22.70") == near
    assert codes("--unit", str(ledger["power"].id)) == {ledger["lamp"].code, ledger["far_lamp"].code}
    missing = run("export", "--zone", "不存在社区", env=env)
    assert missing.returncode == 1 and "不存在社区" in missing.stderr

    geojson = tmp_path / "batch.geojson"
    feature = {
        "type": "Feature",
        "properties": {"OBJNAME": "路灯", "DEPTNAME2": "深圳供电局有限公司", "OBJSTATE": "完好"},
        "geometry": {"type": "Point", "coordinates": [114.3500, 22.7000]},
    }
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}, ensure_ascii=False))
    report = run_import(db, geojson, Actor(name="test-import", admin=True), settings, ImportOptions())
    (batch_code,) = codes("--batch", str(report.batch_id))
    assert batch_code not in near


def test_the_api_streams_each_format_and_holds_a_unit_token_to_its_unit(
    ledger: dict[str, Any], db: Engine, client: TestClient, auth: dict[str, str], admin: Actor
) -> None:
    everything = client.get("/api/v1/assets/export", headers=auth)
    assert everything.status_code == 200, everything.text
    assert everything.headers["content-type"].startswith("text/csv")
    assert "attachment" in everything.headers["content-disposition"]
    assert len(read_csv(everything.content)) == 3

    with transaction(db) as session:
        secret = tokens.create_token(session, "水务", "unit", admin, unit_id=ledger["water"].id)
    unit = {"Authorization": f"Bearer {secret}"}
    own = client.get("/api/v1/assets/export", params={"format": "geojson"}, headers=unit)
    assert own.status_code == 200
    assert [f["properties"]["智慧码"] for f in own.json()["features"]] == [ledger["cover"].code]
    other = client.get("/api/v1/assets/export", params={"unit": ledger["power"].id}, headers=unit)
    assert other.status_code == 403
    assert client.get("/api/v1/assets/export").status_code == 401

    book = client.get("/api/v1/assets/export", params={"format": "xlsx", "class": "0118"}, headers=auth)
    assert book.status_code == 200 and book.headers["content-type"].startswith("application/vnd.openxml")
    sheet = openpyxl.load_workbook(io.BytesIO(book.content), read_only=True).active
    assert sheet is not None and len(list(sheet.iter_rows(values_only=True))) == 3
    bad = client.get("/api/v1/assets/export", params={"format": "pdf"}, headers=auth)
    assert bad.status_code == 400 and "csv, xlsx or geojson" in bad.text


def _lamps(path: Path, n: int, lat0: float) -> Path:
    features = [
        {
            "type": "Feature",
            "properties": {"OBJNAME": "路灯", "DEPTNAME2": "深圳供电局有限公司", "OBJSTATE": "完好"},
            "geometry": {
                "type": "Point",
                "coordinates": [114.30 + (i % 100) * 0.0005, lat0 + (i // 100) * 0.0005],
            },
        }
        for i in range(n)
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False))
    return path


class _Sink(io.RawIOBase):
    """A writable that keeps only the byte count."""

    size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.size += len(data)
        return len(data)


def _peak(db: Engine, fmt: str) -> tuple[int, int]:
    """Peak Python memory while exporting everything in ``fmt``, and the bytes written."""
    sink = _Sink()
    with transaction(db) as session:
        job = export.prepare(session, Actor(name="t", admin=True), AssetFilter(), fmt, "Asia/Shanghai")
        tracemalloc.start()
        try:
            export.write(session, job, sink)  # type: ignore[arg-type]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return peak, sink.size


@pytest.mark.slow
def test_memory_stays_flat_as_the_export_grows(db: Engine, settings: Settings, tmp_path: Path) -> None:
    importer = Actor(name="test-import", admin=True)
    run_import(db, _lamps(tmp_path / "a.geojson", 2000, 22.65), importer, settings, ImportOptions())
    small = {fmt: _peak(db, fmt) for fmt in ("csv", "geojson", "xlsx")}
    run_import(db, _lamps(tmp_path / "b.geojson", 6000, 22.70), importer, settings, ImportOptions())
    large = {fmt: _peak(db, fmt) for fmt in ("csv", "geojson", "xlsx")}
    for fmt in ("csv", "geojson", "xlsx"):
        (small_peak, small_size), (large_peak, large_size) = small[fmt], large[fmt]
        assert large_size > 3.5 * small_size  # four times the assets were written...
        # ...in the same memory: bounded by one cursor fetch (1,000 rows), not by the total.
        assert large_peak < 1.25 * small_peak, (fmt, small_peak, large_peak)
