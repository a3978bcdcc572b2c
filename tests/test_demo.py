"""``smartcode demo`` end to end: the synthetic pilot loads through the real importers, once, and resolves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from common.errors import Conflict
from common.settings import Settings
from importers.demo.generate import POWER_SHAPEFILE, read_manifest
from importers.demo.load import DemoReport, load_demo
from importers.demo.world import OWNERLESS_SPOTS, UNITS, build_world, ownerless_points, unit_name
from registry.credit_code import is_valid_credit_code
from registry.db import Actor
from registry.resolution import LocationQuery, Resolver, conninfo_from_url, run_lookup
from tests.conftest import ADMIN_TOKEN
from tests.helpers import make_asset, make_unit

SMARTCODE = str(Path(sys.executable).parent / "smartcode")


@pytest.fixture
def loaded(db: Engine, settings: Settings, tmp_path: Path) -> DemoReport:
    """The demo of the default seed, loaded into the emptied test registry."""
    return load_demo(db, settings, folder=tmp_path / "demo")


def _scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def _resolve_code(settings: Settings, migrated_url: str, code: str) -> dict[str, Any]:
    resolver = Resolver(settings)
    answer, _ = run_lookup(
        conninfo_from_url(migrated_url),
        lambda conn, log: resolver.resolve_code(conn, code, log=log, actor="test", channel="test"),
    )
    return answer


def _resolve_at(
    settings: Settings, migrated_url: str, lon: float, lat: float, category: str
) -> dict[str, Any]:
    resolver = Resolver(settings)
    query = LocationQuery(x=lon, y=lat, category=category)
    answer, _ = run_lookup(
        conninfo_from_url(migrated_url),
        lambda conn, log: resolver.resolve_location(conn, query, log=log, actor="test", channel="test"),
    )
    return answer


def test_every_file_goes_through_the_importers(db: Engine, loaded: DemoReport) -> None:
    expected = read_manifest(Path(loaded.folder)).expected  # type: ignore[union-attr]
    assert loaded.status == "loaded"
    assert loaded.assets == expected["assets"]
    assert {code: entry["count"] for code, entry in loaded.assets_per_class.items()} == expected[
        "assets_per_class"
    ]
    assert loaded.zones == expected["zones_per_level"]
    assert loaded.rules == expected["rules"]

    asset_batches = [b for b in loaded.batches if b["kind"] == "assets"]
    assert {b["file"]: b["created"] for b in asset_batches} == expected["assets_per_file"]
    for batch in asset_batches:
        assert batch["status"] == "committed", batch
        assert batch["rejected"] == 0 and batch["problems"] == 0, batch
        assert batch["units_created"] == [], batch
    power = next(b for b in asset_batches if b["file"] == POWER_SHAPEFILE)
    assert power["encoding"] == "GBK" and power["crs"] == "EPSG:4547"
    assert power["codes_allocated"] == power["created"] - expected["prefilled_codes"]
    # One import batch per file, each recorded with the file's hash.
    assert _scalar(db, "SELECT count(*) FROM import_batches WHERE status = 'committed'") == len(asset_batches)
    assert _scalar(db, "SELECT count(DISTINCT file_sha256) FROM import_batches") == len(asset_batches)
    for batch in [b for b in loaded.batches if b["kind"] != "assets"]:
        assert batch["units_created"] == [], batch


def test_units_are_the_verified_demo_units_and_matched_by_alias(db: Engine, loaded: DemoReport) -> None:
    assert sorted(loaded.units["created"]) == sorted(u.name for u in UNITS)
    with db.connect() as conn:
        rows = conn.execute(text("SELECT name, credit_code, verified, note FROM units")).all()
    # Every unit an inventory, zone or rule names was matched (by name or alias): none was invented.
    assert len(rows) == len(UNITS)
    for name, credit_code, verified, note in rows:
        assert verified and is_valid_credit_code(credit_code) and "合成演示数据" in note, name
    world = build_world(loaded.seed)
    lamps_of_lighting = sum(
        1 for a in world.assets if a.class_code == "0118" and a.owner and "路灯管理所" in a.owner
    )
    assert lamps_of_lighting == _scalar(
        db,
        "SELECT count(*) FROM assets a JOIN units u ON u.id = a.owner_id WHERE a.class_code = '0118' "
        "AND u.name = :n",
        n=unit_name("lighting"),
    )
    assert _scalar(db, "SELECT count(*) FROM assets WHERE data_source IS DISTINCT FROM '合成演示数据'") == 0
    assert _scalar(db, "SELECT count(*) FROM assets WHERE class_code = '0114' AND owner_id IS NOT NULL") == 0


def test_a_second_run_loads_nothing(db: Engine, settings: Settings, loaded: DemoReport) -> None:
    before = _scalar(db, "SELECT count(*) FROM assets"), _scalar(db, "SELECT count(*) FROM import_batches")
    again = load_demo(db, settings, folder=Path(loaded.folder))
    assert again.status == "already_loaded"
    assert again.fingerprint == loaded.fingerprint and again.loaded_at == loaded.loaded_at
    assert again.assets == loaded.assets and again.examples == loaded.examples
    after = _scalar(db, "SELECT count(*) FROM assets"), _scalar(db, "SELECT count(*) FROM import_batches")
    assert after == before
    assert _scalar(db, "SELECT count(*) FROM audit_log WHERE entity = 'demo'") == 1


def test_another_seed_is_refused_once_a_demo_is_loaded(
    db: Engine, settings: Settings, loaded: DemoReport, tmp_path: Path
) -> None:
    with pytest.raises(Conflict, match="already holds the demo with seed 440310"):
        load_demo(db, settings, seed=7, folder=tmp_path / "other")
    assert _scalar(db, "SELECT count(*) FROM assets") == loaded.assets


def test_a_registry_with_real_data_is_refused(
    db: Engine, settings: Settings, admin: Actor, tmp_path: Path
) -> None:
    make_unit(db, "深圳市坪山区某真实单位", admin)
    with pytest.raises(Conflict, match="1 units that are not demo data"):
        load_demo(db, settings, folder=tmp_path / "demo")
    make_asset(db, admin, data_source="实测")
    with pytest.raises(Conflict, match="1 assets, 1 units that are not demo data"):
        load_demo(db, settings, folder=tmp_path / "demo")
    assert _scalar(db, "SELECT count(*) FROM assets") == 1
    assert _scalar(db, "SELECT count(*) FROM units") == 1
    assert _scalar(db, "SELECT count(*) FROM zones") == 0


def test_a_demo_from_an_older_generator_counts_as_loaded(
    db: Engine, owner_engine: Engine, settings: Settings, loaded: DemoReport
) -> None:
    # The service's role cannot rewrite the audit log; only the owner can stage an older demo's entry.
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET entity_id = 'older' WHERE entity = 'demo'"))
    again = load_demo(db, settings, folder=Path(loaded.folder))
    assert again.status == "already_loaded" and again.fingerprint == "older"
    assert "older smartcode" in again.notes[0]
    assert _scalar(db, "SELECT count(*) FROM assets") == loaded.assets


def test_a_known_asset_resolves(settings: Settings, migrated_url: str, loaded: DemoReport) -> None:
    lamp = next(e for e in loaded.examples if e["class"]["code"] == "0118")
    answer = _resolve_code(settings, migrated_url, lamp["code_display"])
    assert answer["status"] == "resolved"
    assert answer["owner"]["name"] == unit_name("lighting")
    assert answer["asset"]["class"]["name"] == "路灯"

    # An identifier the utility's shapefile already carried keeps its serial.
    power = _resolve_code(settings, migrated_url, "4403100105005001")
    assert power["owner"]["name"] == unit_name("power")
    assert power["supervisor"]["name"] == unit_name("drc")

    # A complaint at the lamp finds it as the nearest asset of the category.
    at_lamp = _resolve_at(settings, migrated_url, lamp["lon"], lamp["lat"], "路灯不亮")
    assert at_lamp["status"] == "resolved" and at_lamp["rule"] == "nearest_asset"
    assert at_lamp["asset"]["code"] == lamp["code"]


def test_ownerless_covers_go_to_the_street_office(
    settings: Settings, migrated_url: str, loaded: DemoReport
) -> None:
    world = build_world(loaded.seed)
    outcomes: Counter[str] = Counter()
    for (road, _), point in zip(OWNERLESS_SPOTS, ownerless_points(world), strict=True):
        lonlat = world.to_wgs84(point)
        answer = _resolve_at(settings, migrated_url, lonlat.x, lonlat.y, "井盖破损")
        assert answer["asset"]["class"]["code"] == "0114", (road, answer["explanation"])
        zones = {(z["level"], z["name"]) for z in answer["zones"]}
        if ("pilot", "坪山中心区") in zones:
            # The pilot's rule for 无主井盖 decides, even in the pilot's strip of 马峦街道.
            assert answer["status"] == "resolved" and answer["rule"] == "responsibility_rule", road
            assert answer["owner"]["name"] == unit_name("so_pingshan")
            outcomes["pilot rule"] += 1
            if ("street", "马峦街道") in zones:
                outcomes["pilot rule over 马峦街道"] += 1
        else:
            # Elsewhere nothing claims it: the street office of the place (属地兜底).
            assert answer["status"] == "fallback" and answer["rule"] == "jurisdiction", road
            street = next(name for level, name in zones if level == "street")
            expected = {"坪山街道": "so_pingshan", "碧岭街道": "so_biling", "马峦街道": "so_maluan"}[street]
            assert answer["owner"]["name"] == unit_name(expected)
            outcomes[f"fallback {street}"] += 1
    assert outcomes["pilot rule"] == 3 and outcomes["pilot rule over 马峦街道"] == 1
    assert outcomes["fallback 坪山街道"] == 2 and outcomes["fallback 碧岭街道"] == 1


def test_the_cli_loads_once_and_says_it_is_synthetic(db: Engine, migrated_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SMARTCODE_DATABASE_URL": migrated_url,
        "SMARTCODE_API_TOKEN": ADMIN_TOKEN,
        "SMARTCODE_DATA_DIR": str(tmp_path / "var" / "pgdata"),
    }
    first = subprocess.run(
        [SMARTCODE, "demo", "--json"], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["synthetic"] is True and data["status"] == "loaded"
    assert data["folder"] == str(tmp_path / "var" / "demo")
    assert any(command.startswith("smartcode resolve --code ") for command in data["try"])
    assert any("--category 井盖破损" in command for command in data["try"])

    second = subprocess.run(
        [SMARTCODE, "demo"], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert second.returncode == 0, second.stderr
    assert "SYNTHETIC" in second.stdout and "合成演示数据" in second.stdout
    assert "本次未载入新数据" in second.stdout and "示例：" in second.stdout
    english = subprocess.run(
        [SMARTCODE, "--lang", "en", "demo"], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert "already loaded" in english.stdout and "nothing new loaded" in english.stdout
    assert "示例" not in english.stdout and "(a street lamp in 坪山中心区" in english.stdout
    assert _scalar(db, "SELECT count(*) FROM assets") == data["assets"]
