"""The current version lives in the asset row; replaced versions and closed periods in their tables.

Also: references from assets to units and classes are checked per statement (migration 0004), and a
registry migrated from 0003 keeps every version and period it had.
"""

from __future__ import annotations

import datetime as dt
import random

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import IntegrityError

from common.settings import Settings
from gis.area import ServiceArea
from registry import assets
from registry.codes import mod11_10_check_digit
from registry.db import Actor, downgrade, migrate, transaction
from registry.embedded import EmbeddedCluster
from registry.schemas import AssetUpdate, UnitsChange
from tests.helpers import make_asset, make_unit, point

CST = dt.timezone(dt.timedelta(hours=8))


def _insert_sql(owner: str = "NULL", class_code: str = "0118") -> str:
    digits = f"440310{class_code}999999"
    return (
        "INSERT INTO assets (code, county_code, class_code, serial, geom, owner_id) "
        f"VALUES ('{digits}{mod11_10_check_digit(digits)}', '440310', '{class_code}', 999999, "
        f"ST_SetSRID(ST_MakePoint(114.3466, 22.6953), 4326), {owner})"
    )


def test_a_new_asset_is_one_row_that_records_who_and_why(db: Engine, admin: Actor) -> None:
    asset = make_asset(db, admin, installed_on=dt.date(2020, 5, 1), reason="surveyed 2026")
    with db.connect() as conn:
        replaced = conn.execute(text("SELECT count(*) FROM asset_history")).scalar_one()
        closed = conn.execute(text("SELECT count(*) FROM asset_responsibility")).scalar_one()
    assert replaced == 0 and closed == 0
    assert asset.changed_by == admin.name and asset.change_reason == "surveyed 2026"
    assert asset.change_action == "create" and asset.responsible_since is None
    with transaction(db) as session:
        (version,) = assets.history(session, asset.code)
        (period,) = assets.responsibility_periods(session, asset.code)
    assert version["version"] == 1 and version["actor"] == admin.name and version["reason"] == "surveyed 2026"
    assert version["data"]["code"] == asset.code and version["geometry"]["type"] == "Point"
    # The first period starts at installation (local midnight) and was begun by the registration.
    assert dt.datetime.fromisoformat(period["valid_from"]) == dt.datetime(2020, 5, 1, tzinfo=CST)
    assert period["valid_to"] is None and period["reason"] == "surveyed 2026"


def test_updates_move_the_replaced_version_to_history_with_its_own_record(db: Engine, admin: Actor) -> None:
    telecom = make_unit(db, "中国电信深圳分公司", admin)
    tower = make_unit(db, "中国铁塔深圳分公司", admin)
    asset = make_asset(db, admin, owner_id=telecom.id, reason="first survey")
    handover = dt.datetime(2025, 3, 1, tzinfo=CST)
    with transaction(db) as session:
        edit = AssetUpdate(version=1, note="lamp head replaced", reason="repair")
        assets.update_asset(session, asset.code, edit, admin, ServiceArea.from_settings())
        assets.change_units(
            session,
            asset.code,
            UnitsChange(version=2, owner_id=tower.id, effective_at=handover, reason="tower transfer"),
            admin,
        )
    with transaction(db) as session:
        versions = assets.history(session, asset.code)
        periods = assets.responsibility_periods(session, asset.code)
        before = assets.as_of(session, asset.code, handover - dt.timedelta(seconds=1))
        after = assets.as_of(session, asset.code, handover)
    assert [(v["version"], v["action"], v["reason"]) for v in versions] == [
        (1, "create", "first survey"),
        (2, "update", "repair"),
        (3, "change_units", "tower transfer"),
    ]
    assert versions[1]["data"]["note"] == "lamp head replaced" and versions[0]["data"]["note"] is None
    assert [p["owner"]["name"] for p in periods] == ["中国电信深圳分公司", "中国铁塔深圳分公司"]
    assert periods[0]["valid_from"] is None  # no installation date: since ever
    assert (
        dt.datetime.fromisoformat(periods[0]["valid_to"])
        == handover
        == dt.datetime.fromisoformat(periods[1]["valid_from"])
    )
    assert periods[0]["reason"] == "first survey" and periods[1]["reason"] == "tower transfer"
    assert before["responsibility"]["owner"]["name"] == "中国电信深圳分公司"
    assert after["responsibility"]["owner"]["name"] == "中国铁塔深圳分公司"


def test_a_written_record_cannot_be_forged_by_an_update(db: Engine, admin: Actor) -> None:
    asset = make_asset(db, admin, reason="first survey")
    with db.begin() as conn:
        conn.execute(text("SELECT set_config('smartcode.actor', 'clerk', true)"))
        conn.execute(
            text(
                "UPDATE assets SET note = 'x', changed_by = 'someone else', version = 7, "
                "responsible_since = '2000-01-01' WHERE id = :i"
            ),
            {"i": asset.id},
        )
        row = conn.execute(
            text("SELECT changed_by, version, responsible_since FROM assets WHERE id = :i"), {"i": asset.id}
        ).one()
    assert row.changed_by == "clerk" and row.version == 2 and row.responsible_since is None


def test_references_to_units_and_classes_are_checked_per_statement(db: Engine, admin: Actor) -> None:
    with pytest.raises(IntegrityError, match="assets_owner_id_fkey"), db.begin() as conn:
        conn.execute(text(_insert_sql(owner="424242")))
    with pytest.raises(IntegrityError, match="assets_class_code_fkey"), db.begin() as conn:
        conn.execute(text(_insert_sql(class_code="0199")))
    owner = make_unit(db, "坪山区路灯管理所", admin)
    spare = make_unit(db, "未使用单位", admin)
    asset = make_asset(db, admin, owner_id=owner.id)
    with pytest.raises(IntegrityError, match="maintainer_id"), db.begin() as conn:
        conn.execute(text("UPDATE assets SET maintainer_id = 424242 WHERE id = :i"), {"i": asset.id})
    with pytest.raises(IntegrityError, match="named by assets"), db.begin() as conn:
        conn.execute(text("DELETE FROM units WHERE id = :i"), {"i": owner.id})
    with pytest.raises(IntegrityError, match="named by assets"), db.begin() as conn:
        conn.execute(text("UPDATE units SET id = 999 WHERE id = :i"), {"i": owner.id})
    # Named in one role only, on another asset: still named.
    maintainer, supervisor = make_unit(db, "坪山区市政养护所", admin), make_unit(db, "坪山区城管局", admin)
    make_asset(db, admin, maintainer_id=maintainer.id, geometry=point(114.3500, 22.7000))
    make_asset(db, admin, supervisor_id=supervisor.id, geometry=point(114.3501, 22.7001))
    for unit in (maintainer, supervisor):
        with pytest.raises(IntegrityError, match="named by assets"), db.begin() as conn:
            conn.execute(text("DELETE FROM units WHERE id = :i"), {"i": unit.id})
    with pytest.raises(IntegrityError, match="has assets"), db.begin() as conn:
        conn.execute(text("DELETE FROM component_classes WHERE code = '0118'"))
    with db.begin() as conn:  # nothing names this one
        assert conn.execute(text("DELETE FROM units WHERE id = :i"), {"i": spare.id}).rowcount == 1


def test_a_registry_migrated_from_0003_keeps_its_versions_and_periods(
    cluster: EmbeddedCluster, settings: Settings
) -> None:
    with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS versioning_check")
        conn.execute("CREATE DATABASE versioning_check")
    url = cluster.url().replace("/smartcode_test?", "/versioning_check?")
    migrate(url, "0003_imports", settings=settings)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:  # written by the 0003 triggers: a version row and a period per change
            conn.execute(
                text("INSERT INTO units (name, county_code) VALUES ('甲', '440310'), ('乙', '440310')")
            )
            conn.execute(text("SELECT set_config('smartcode.reason', 'first survey', true)"))
            conn.execute(text(_insert_sql(owner="1")))
        with engine.begin() as conn:
            conn.execute(text("SELECT set_config('smartcode.reason', 'transfer', true)"))
            conn.execute(text("SELECT set_config('smartcode.effective_at', '2025-03-01T00:00+08', true)"))
            conn.execute(text("UPDATE assets SET owner_id = 2"))
        migrate(url, settings=settings)
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT version, change_reason, change_action, responsible_since FROM assets")
            ).one()
            history = conn.execute(text("SELECT version, reason FROM asset_history")).all()
            periods = conn.execute(text("SELECT owner_id, valid_to FROM asset_responsibility")).all()
        assert row.version == 2 and row.change_reason == "transfer" and row.change_action == "update"
        assert row.responsible_since == dt.datetime(2025, 3, 1, tzinfo=CST)
        assert [(h.version, h.reason) for h in history] == [(1, "first survey")]
        assert len(periods) == 1 and periods[0].owner_id == 1 and periods[0].valid_to == row.responsible_since
        downgrade(url, "0003_imports", settings=settings)
        with engine.connect() as conn:
            history = conn.execute(text("SELECT version, reason FROM asset_history ORDER BY version")).all()
            periods = conn.execute(
                text("SELECT owner_id, valid_to FROM asset_responsibility ORDER BY valid_from")
            ).all()
        assert [(h.version, h.reason) for h in history] == [(1, "first survey"), (2, "transfer")]
        assert [p.owner_id for p in periods] == [1, 2] and periods[1].valid_to is None
    finally:
        engine.dispose()


def test_the_database_refuses_a_wrong_check_digit(db: Engine) -> None:
    good = "4403100118999999" + mod11_10_check_digit("4403100118999999")
    bad = good[:16] + str((int(good[16]) + 1) % 10)
    with pytest.raises(IntegrityError, match="assets_check_digit"), db.begin() as conn:
        conn.execute(text(_insert_sql().replace(good, bad)))
    with db.begin() as conn:  # the right digit passes, and the same serial cannot come twice
        conn.execute(text(_insert_sql()))
    with pytest.raises(IntegrityError, match="assets_code_key"), db.begin() as conn:
        conn.execute(text(_insert_sql()))


def test_the_database_check_digit_agrees_with_the_code_module_on_every_digit(db: Engine) -> None:
    # Random counties, classes and serials, each with all ten possible last digits: the database's
    # check (migration 0006, from the code's parts) accepts exactly the digit registry.codes computes.
    rng = random.Random(6)
    cases = []
    for _ in range(300):
        county, cls, serial = (
            f"{rng.randrange(10**6):06d}",
            f"{rng.randrange(10**4):04d}",
            rng.randrange(10**6),
        )
        prefix = f"{county}{cls}{serial:06d}"
        cases += [
            (county, cls, serial, f"{prefix}{digit}", str(digit) == mod11_10_check_digit(prefix))
            for digit in range(10)
        ]
    with db.connect() as conn:
        answers = (
            conn.execute(
                text(
                    "SELECT smartcode_check_digit_matches(c, k, s, code) FROM unnest(CAST(:c AS text[]), "
                    "CAST(:k AS text[]), CAST(:s AS int[]), CAST(:code AS text[])) AS t(c, k, s, code)"
                ),
                {name: [case[i] for case in cases] for i, name in enumerate(("c", "k", "s", "code"))},
            )
            .scalars()
            .all()
        )
    assert answers == [case[4] for case in cases]


def test_the_database_refuses_a_code_that_is_not_17_digits(db: Engine) -> None:
    good = "4403100118999999" + mod11_10_check_digit("4403100118999999")
    for bad in (good[:16] + "x", " " + good[1:], good[:16]):
        refused = pytest.raises(IntegrityError, match=r"assets_(check_digit|code_digits|code_matches_parts)")
        with refused, db.begin() as conn:
            conn.execute(text(_insert_sql().replace(good, bad)))
