"""The standard address register (标准地址库) and Open311's address_id: load a CSV, post by address id."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from common.errors import Forbidden, InvalidInput
from common.settings import Settings
from gis.crs import wgs84_to_gcj02
from importers.addresses import read_address_csv
from registry import tokens
from registry.addresses import load_addresses
from registry.db import Actor, transaction
from tests.conftest import ADMIN_TOKEN
from tests.helpers import make_asset, make_unit
from tests.test_cli import run
from tests.test_open311 import BASE, conforms
from tests.test_resolve import at_m, pt


def _gcj(dx: float, dy: float = 0.0) -> tuple[float, float]:
    lon, lat = at_m(dx, dy)
    glon, glat = wgs84_to_gcj02([lon], [lat])
    return float(glon[0]), float(glat[0])


def write_csv(
    path: Path, rows: list[tuple[str, str, str, str]], header: str = "地址编码,标准地址,经度,纬度"
) -> Path:
    """A register export: the header, then one line per (id, address, x, y)."""
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def gcj_rows() -> list[tuple[str, str, str, str]]:
    """Two addresses 1 m and 40 m east of PINGSHAN, written in GCJ-02 as a 高德-based register writes them."""
    return [
        ("4403100010001", "坪山区坪山大道 1 号", *(f"{v:.9f}" for v in _gcj(1))),
        ("4403100010002", "坪山区坪山大道 3 号", *(f"{v:.9f}" for v in _gcj(40))),
    ]


def load(db: Engine, actor: Actor, settings: Settings, path: Path, **kw: Any) -> dict[str, Any]:
    """Read and load an address file as ``smartcode addresses import`` does."""
    rows, fields = read_address_csv(path)
    with transaction(db) as session:
        return load_addresses(session, actor, rows, file=path.name, settings=settings, fields=fields, **kw)


def register(db: Engine) -> dict[str, tuple[str, float, float]]:
    """The register as stored: id -> (text, lon, lat)."""
    with db.connect() as conn:
        rows = conn.execute(text("SELECT address_id, name, ST_X(geom), ST_Y(geom) FROM addresses"))
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


@pytest.fixture
def lamp(db: Engine, admin: Actor) -> Any:
    """A street lamp 3 m east of PINGSHAN owned by the power company."""
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    return make_asset(db, admin, owner_id=power.id, geometry=pt(3))


@pytest.fixture
def api_key(db: Engine, admin: Actor) -> str:
    """A reader token, as the case system would hold."""
    with transaction(db) as session:
        return tokens.create_token(session, "12345-case-system", "reader", admin)


def test_a_gcj02_register_is_stored_in_wgs84_and_audited(
    db: Engine, admin: Actor, settings: Settings, tmp_path: Path
) -> None:
    summary = load(db, admin, settings, write_csv(tmp_path / "地址库.csv", gcj_rows()), crs="gcj02")
    assert (summary["rows"], summary["added"], summary["updated"], summary["unchanged"]) == (2, 2, 0, 0)
    stored = register(db)
    lon, lat = at_m(1)
    assert stored["4403100010001"][0] == "坪山区坪山大道 1 号"
    # Back to WGS84 within centimetres (GCJ-02 is ~300 m off here: the transform was applied).
    assert stored["4403100010001"][1] == pytest.approx(lon, abs=1e-6)
    assert stored["4403100010001"][2] == pytest.approx(lat, abs=1e-6)
    with db.connect() as conn:
        audited = conn.execute(
            text("SELECT actor, details FROM audit_log WHERE entity = 'addresses' AND action = 'import'")
        ).one()
        county, by = conn.execute(text("SELECT DISTINCT county_code, loaded_by FROM addresses")).one()
    assert audited[0] == admin.name and audited[1]["added"] == 2 and audited[1]["crs"] == "gcj02"
    assert (county, by) == (settings.area.county_code, admin.name)


def test_a_case_posted_by_address_id_is_placed_and_resolved_at_the_address(
    client: TestClient, db: Engine, admin: Actor, settings: Settings, tmp_path: Path, lamp: Any, api_key: str
) -> None:
    load(db, admin, settings, write_csv(tmp_path / "a.csv", gcj_rows()), crs="gcj02")
    posted = client.post(
        f"{BASE}/requests.json",
        data={"api_key": api_key, "service_code": "路灯不亮", "address_id": "4403100010001"},
    )
    assert posted.status_code == 200, posted.text
    created = conforms(posted.json(), "request-created")[0]
    assert "深圳供电局有限公司" in created["service_notice"]
    reference = created["service_request_id"]

    one = conforms(client.get(f"{BASE}/requests/{reference}.json").json(), "requests")[0]
    lon, lat = at_m(1)
    assert one["agency_responsible"] == "深圳供电局有限公司"
    assert one["address_id"] == "4403100010001" and one["address"] == "坪山区坪山大道 1 号"
    assert one["lat"] == pytest.approx(lat, abs=1e-6) and one["long"] == pytest.approx(lon, abs=1e-6)
    listed = client.get(f"{BASE}/requests.xml", params={"service_request_id": reference})
    assert ET.fromstring(listed.content).findtext("request/address_id") == "4403100010001"

    # Resolved by location exactly as a lat/long post at that point is.
    by_point = client.post(
        f"{BASE}/requests.json",
        data={"api_key": api_key, "service_code": "路灯不亮", "lat": str(lat), "long": str(lon)},
    ).json()[0]["service_request_id"]
    with db.connect() as conn:
        rules = conn.execute(
            text("SELECT resolution_rule, owner_id FROM complaints WHERE reference = ANY(:r) ORDER BY id"),
            {"r": [reference, by_point]},
        ).all()
    assert rules[0] == rules[1]


def test_lat_long_win_over_an_address_id(
    client: TestClient, db: Engine, admin: Actor, settings: Settings, tmp_path: Path, lamp: Any, api_key: str
) -> None:
    load(db, admin, settings, write_csv(tmp_path / "a.csv", gcj_rows()), crs="gcj02")
    lon, lat = at_m(1)
    posted = client.post(
        f"{BASE}/requests.json",
        data={
            "api_key": api_key,
            "service_code": "路灯不亮",
            "lat": str(lat),
            "long": str(lon),
            "address_id": "4403100010002",
        },
    )
    reference = posted.json()[0]["service_request_id"]
    one = client.get(f"{BASE}/requests/{reference}.json").json()[0]
    assert one["address_id"] is None and one["lat"] == pytest.approx(lat, abs=1e-6)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_an_unknown_address_id_is_400_in_georeports_shape(
    client: TestClient, db: Engine, api_key: str, fmt: str
) -> None:
    posted = client.post(
        f"{BASE}/requests.{fmt}",
        data={"api_key": api_key, "service_code": "路灯不亮", "address_id": "NO-SUCH-1"},
    )
    assert posted.status_code == 400
    if fmt == "json":
        description = conforms(posted.json(), "errors")[0]["description"]
    else:
        root = ET.fromstring(posted.content)
        assert root.tag == "errors" and root.findtext("error/code") == "400"
        description = root.findtext("error/description") or ""
    assert description.startswith("address_id：标准地址库中没有") and "NO-SUCH-1" in description
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM complaints")).scalar() == 0


@pytest.mark.parametrize(
    ("bad", "row", "field"),
    [
        (("4403100010009", "坪山区某路 9 号", "", "22.7"), 4, "经度"),  # x missing
        (("4403100010001", "重复", "114.35", "22.7"), 4, "地址编码"),  # id repeats row 2
        (("4403100010009", "北京某处", "116.4", "39.9"), 4, "经度/纬度"),  # far outside the area
    ],
)
def test_a_file_with_a_bad_row_changes_nothing_and_names_file_row_and_field(
    db: Engine,
    admin: Actor,
    settings: Settings,
    tmp_path: Path,
    bad: tuple[str, str, str, str],
    row: int,
    field: str,
) -> None:
    load(db, admin, settings, write_csv(tmp_path / "first.csv", gcj_rows()), crs="gcj02")
    before = register(db)
    moved = (gcj_rows()[1][0], "坪山区坪山大道 3 号之一", *(f"{v:.9f}" for v in _gcj(60)))
    bad_file = write_csv(tmp_path / "bad.csv", [gcj_rows()[0], moved, bad])
    with pytest.raises(InvalidInput) as refused:
        load(db, admin, settings, bad_file, crs="gcj02", replace=True)
    message = refused.value.message
    assert message.startswith(f"bad.csv 第 {row} 行，{field}：") and "地址库未作任何修改" in message
    assert refused.value.details == {"file": "bad.csv", "row": row, "field": field}
    assert register(db) == before
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log WHERE entity = 'addresses'")).scalar() == 1


def test_reimport_counts_every_row_and_replace_removes_the_rest(
    db: Engine, admin: Actor, settings: Settings, tmp_path: Path
) -> None:
    lon1, lat1 = at_m(1)
    lon2, lat2 = at_m(40)
    english = "id,address,lon,lat"
    first = [
        ("A-1", "坪山大道 1 号", f"{lon1:.8f}", f"{lat1:.8f}"),
        ("A-2", "坪山大道 3 号", f"{lon2:.8f}", f"{lat2:.8f}"),
        ("A-3", "坪山大道 5 号", f"{lon2:.8f}", f"{lat1:.8f}"),
    ]
    load(db, admin, settings, write_csv(tmp_path / "v1.csv", first, english))
    second = [
        first[0],
        ("A-2", "坪山大道 3 号（新）", first[1][2], first[1][3]),
        ("A-4", "新 7 号", *first[2][2:]),
    ]
    merged = load(db, admin, settings, write_csv(tmp_path / "v2.csv", second, english))
    assert {k: merged[k] for k in ("rows", "added", "updated", "unchanged", "removed")} == {
        "rows": 3,
        "added": 1,
        "updated": 1,
        "unchanged": 1,
        "removed": 0,
    }
    assert sorted(register(db)) == ["A-1", "A-2", "A-3", "A-4"]

    replaced = load(db, admin, settings, write_csv(tmp_path / "v2.csv", second, english), replace=True)
    assert {k: replaced[k] for k in ("rows", "added", "updated", "unchanged", "removed")} == {
        "rows": 3,
        "added": 0,
        "updated": 0,
        "unchanged": 3,
        "removed": 1,
    }
    assert sorted(register(db)) == ["A-1", "A-2", "A-4"]
    assert register(db)["A-2"][0] == "坪山大道 3 号（新）"


@pytest.mark.parametrize("actor", [Actor("token:12345", role="reader"), Actor("token:unit", unit_id=1)])
def test_only_administrators_load_the_register(
    db: Engine, settings: Settings, tmp_path: Path, actor: Actor
) -> None:
    with pytest.raises(Forbidden):
        load(db, actor, settings, write_csv(tmp_path / "a.csv", gcj_rows()), crs="gcj02")
    assert register(db) == {}


def test_the_command_loads_a_cgcs2000_file_and_names_a_bad_row(
    db: Engine, migrated_url: str, tmp_path: Path
) -> None:
    import os

    env = {**os.environ, "SMARTCODE_DATABASE_URL": migrated_url, "SMARTCODE_API_TOKEN": ADMIN_TOKEN}
    env.pop("SMARTCODE_LANG", None)
    lon, lat = at_m(1)
    good = write_csv(tmp_path / "cgcs.csv", [("B-1", "坪山大道 1 号", f"{lon:.8f}", f"{lat:.8f}")])
    done = run("addresses", "import", str(good), "--crs", "cgcs2000", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 1 and json.loads(done.stdout)["crs"] == "EPSG:4490"
    again = run("addresses", "import", str(good), "--crs", "cgcs2000", env=env)
    assert again.returncode == 0, again.stderr
    assert "未变" in again.stdout and "新增" in again.stdout and "unchanged" not in again.stdout

    bad = write_csv(tmp_path / "bad.csv", [("B-2", "坪山大道 2 号", "abc", f"{lat:.8f}")])
    refused = run("addresses", "import", str(bad), env=env)
    assert refused.returncode == 1
    assert "bad.csv 第 2 行，经度：坐标须为数字" in refused.stderr and str(tmp_path) not in refused.stderr
    assert sorted(register(db)) == ["B-1"]
