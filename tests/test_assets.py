"""Asset services on a real PostGIS: registration, codes, validation, locking, history, as-of."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError

from common.errors import (
    CheckDigitMismatch,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    OutsideServiceArea,
    SerialExhausted,
    StaleVersion,
)
from gis.area import ServiceArea
from registry import assets
from registry.codes import mod11_10_check_digit, parse_code
from registry.db import Actor, transaction
from registry.schemas import AssetCreate, AssetUpdate, Decommission, UnitsChange
from registry.serials import allocate_serials
from tests.helpers import COUNTY, PINGSHAN, make_asset, make_unit, point

CST = dt.timezone(dt.timedelta(hours=8))


def test_registration_allocates_a_checked_code(db: Engine, admin: Actor) -> None:
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", credit_code="9144030071526726XG")
    first = make_asset(db, admin, owner_id=power.id)
    second = make_asset(db, admin, owner_id=power.id)
    assert first.code == "4403100118000001" + mod11_10_check_digit("4403100118000001")
    assert parse_code(second.code).serial == 2
    with transaction(db) as session:
        view = assets.asset_view(session, assets.get_by_code(session, parse_code(first.code).formatted))
    assert view["owner"]["name"] == "深圳供电局有限公司"
    assert view["owner"]["credit_code"] == "9144030071526726XG"
    assert view["class"]["name"] == "路灯"


def test_inventory_identifier_keeps_its_serial_and_gains_a_check_digit(db: Engine, admin: Actor) -> None:
    asset = make_asset(db, admin, code="4403100118000500")
    assert asset.code == "4403100118000500" + mod11_10_check_digit("4403100118000500")
    # Allocation continues above an adopted serial, so it can never hand out 000500 again.
    assert parse_code(make_asset(db, admin).code).serial == 501
    with pytest.raises(Conflict, match="already registered"):
        make_asset(db, admin, code="4403100118000500")
    with pytest.raises(InvalidInput, match="names class 0117"):
        make_asset(db, admin, code="4403100117000001")


def test_concurrent_registration_never_duplicates_serials(db: Engine, admin: Actor) -> None:
    def register(_: int) -> str:
        return make_asset(db, admin, class_code="0117").code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(register, range(80)))
    serials = sorted(parse_code(c).serial for c in codes)
    assert serials == list(range(1, 81))


def test_concurrent_bulk_allocation_gives_disjoint_ranges(db: Engine) -> None:
    def allocate(_: int) -> range:
        with transaction(db) as session:
            return allocate_serials(session, COUNTY, "0101", 250)

    with ThreadPoolExecutor(max_workers=6) as pool:
        ranges = list(pool.map(allocate, range(12)))
    numbers = [n for r in ranges for n in r]
    assert len(numbers) == len(set(numbers)) == 3000


def test_exhausted_serial_range_is_a_clear_error(db: Engine, admin: Actor) -> None:
    make_asset(db, admin, code="4403100118999998")
    make_asset(db, admin)  # takes 999999, the last one
    with pytest.raises(SerialExhausted, match="顺序码已满"):
        make_asset(db, admin)


@pytest.mark.parametrize(
    ("geometry", "class_code", "message"),
    [
        ({"type": "LineString", "coordinates": [PINGSHAN, (114.35, 22.70)]}, "0118", "expects a point"),
        (point(114.40, 22.71), "2105", "expects a line"),
        (
            {
                "type": "Polygon",
                "coordinates": [
                    [(114.34, 22.69), (114.35, 22.70), (114.35, 22.69), (114.34, 22.70), (114.34, 22.69)]
                ],
            },
            "0405",
            "invalid: Self-intersection",
        ),
        ({"type": "Point"}, "0118", "not valid GeoJSON"),
    ],
)
def test_geometry_problems_are_refused_with_the_reason(
    db: Engine, admin: Actor, geometry: dict, class_code: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        make_asset(db, admin, class_code=class_code, geometry=geometry)


def test_coordinates_far_outside_the_district_are_refused(db: Engine, admin: Actor) -> None:
    with pytest.raises(OutsideServiceArea):
        make_asset(db, admin, geometry=point(116.40, 39.90))  # Beijing
    with pytest.raises(InvalidInput, match="swapped"):
        make_asset(db, admin, geometry=point(PINGSHAN[1], PINGSHAN[0]))


def test_a_line_asset_registers_with_a_metric_twin(db: Engine, admin: Actor) -> None:
    cable = make_asset(
        db,
        admin,
        class_code="2105",
        geometry={"type": "LineString", "coordinates": [(114.340, 22.690), (114.350, 22.690)]},
    )
    with db.connect() as conn:
        length = conn.execute(
            text("SELECT ST_Length(geom_m) FROM assets WHERE id = :i"), {"i": cable.id}
        ).scalar()
    # 0.01 degree of longitude at 22.69 N is about 1027 m.
    assert 1000 < length < 1050


def test_stale_update_is_refused_and_nothing_is_merged(db: Engine, admin: Actor) -> None:
    asset = make_asset(db, admin)
    area = ServiceArea.from_settings()
    with transaction(db) as session:
        assets.update_asset(
            session, asset.code, AssetUpdate(version=1, state="破损", reason="巡查发现灯罩破损"), admin, area
        )
    with pytest.raises(StaleVersion, match="version 2, not 1"), transaction(db) as session:
        assets.update_asset(session, asset.code, AssetUpdate(version=1, note="stale writer"), admin, area)
    with transaction(db) as session:
        current = assets.get_by_code(session, asset.code)
        assert (current.version, current.state, current.note) == (2, "破损", None)


def test_racing_writers_with_the_same_version_only_one_wins(db: Engine, admin: Actor) -> None:
    asset = make_asset(db, admin)
    area = ServiceArea.from_settings()

    def write(note: str) -> str:
        try:
            with transaction(db) as session:
                assets.update_asset(session, asset.code, AssetUpdate(version=1, note=note), admin, area)
            return "ok"
        except StaleVersion:
            return "stale"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(write, [f"writer {i}" for i in range(4)]))
    assert sorted(outcomes) == ["ok", "stale", "stale", "stale"]


def test_history_keeps_who_when_why(db: Engine, admin: Actor) -> None:
    asset = make_asset(db, admin, reason="首次普查登记")
    worker = Actor(name="token:grid-worker-7", admin=True)
    with transaction(db) as session:
        assets.update_asset(
            session,
            asset.code,
            AssetUpdate(version=1, state="丢失", reason="井盖被盗"),
            worker,
            ServiceArea.from_settings(),
        )
    with transaction(db) as session:
        versions = assets.history(session, asset.code)
    assert [(v["version"], v["action"], v["actor"], v["reason"]) for v in versions] == [
        (1, "create", "test-admin", "首次普查登记"),
        (2, "update", "token:grid-worker-7", "井盖被盗"),
    ]
    assert versions[0]["data"]["state"] == "完好" and versions[1]["data"]["state"] == "丢失"


def test_who_owned_it_on_a_past_date(db: Engine, admin: Actor) -> None:
    telecom = make_unit(db, "中国电信深圳分公司", admin, kind="telecom")
    tower = make_unit(db, "中国铁塔深圳分公司", admin, kind="telecom")
    pole = make_asset(db, admin, class_code="0117", owner_id=telecom.id, installed_on=dt.date(2019, 5, 1))
    handover = dt.datetime(2025, 3, 2, tzinfo=CST)
    with transaction(db) as session:
        assets.change_units(
            session,
            pole.code,
            UnitsChange(version=1, owner_id=tower.id, effective_at=handover, reason="存量杆塔移交铁塔公司"),
            admin,
        )
    with transaction(db) as session:
        before = assets.as_of(session, pole.code, dt.datetime(2025, 3, 1, 12, tzinfo=CST))
        after = assets.as_of(session, pole.code, dt.datetime(2025, 3, 2, 9, tzinfo=CST))
        ancient = assets.as_of(session, pole.code, dt.datetime(2018, 1, 1, tzinfo=CST))
        periods = assets.responsibility_periods(session, pole.code)
    assert before["responsibility"]["owner"]["name"] == "中国电信深圳分公司"
    assert after["responsibility"]["owner"]["name"] == "中国铁塔深圳分公司"
    assert ancient["responsibility"] is None  # before it was installed nobody owned it
    with transaction(db) as session:
        # The installation date is a Beijing-time calendar day: owned from its local midnight.
        first_hour = assets.as_of(session, pole.code, dt.datetime(2019, 5, 1, 0, 30, tzinfo=CST))
    assert first_hour["responsibility"]["owner"]["name"] == "中国电信深圳分公司"
    assert [p["reason"] for p in periods] == [None, "存量杆塔移交铁塔公司"]
    assert dt.datetime.fromisoformat(periods[0]["valid_to"]) == handover
    assert dt.datetime.fromisoformat(periods[1]["valid_from"]) == handover
    assert periods[1]["valid_to"] is None


def test_backdating_before_the_current_period_is_refused(db: Engine, admin: Actor) -> None:
    a = make_unit(db, "坪山区城市管理和综合执法局", admin, kind="government")
    b = make_unit(db, "坪山街道办事处", admin, kind="street_office")
    lamp = make_asset(db, admin, owner_id=a.id, installed_on=dt.date(2024, 1, 1))
    with pytest.raises(InvalidInput, match="not after the start"), transaction(db) as session:
        assets.change_units(
            session,
            lamp.code,
            UnitsChange(
                version=1, owner_id=b.id, effective_at=dt.datetime(2023, 1, 1, tzinfo=CST), reason="移交"
            ),
            admin,
        )


def test_decommissioned_asset_keeps_its_last_parties_and_is_never_deleted(db: Engine, admin: Actor) -> None:
    water = make_unit(db, "深圳市坪山区水务局", admin, kind="government")
    cover = make_asset(db, admin, class_code="0101", owner_id=water.id)
    with transaction(db) as session:
        assets.decommission_asset(session, cover.code, Decommission(version=1, reason="道路改造拆除"), admin)
    with transaction(db) as session:
        view = assets.asset_view(session, assets.get_by_code(session, cover.code))
    assert view["in_use"] is False and view["decommission_reason"] == "道路改造拆除"
    assert view["owner"]["name"] == "深圳市坪山区水务局"
    with pytest.raises(Conflict, match="already decommissioned"), transaction(db) as session:
        assets.decommission_asset(session, cover.code, Decommission(version=2, reason="again"), admin)
    with pytest.raises(DBAPIError, match="never deleted"), db.begin() as conn:
        conn.execute(text("DELETE FROM assets WHERE id = :i"), {"i": cover.id})


def test_a_utility_changes_only_its_own_assets(db: Engine, admin: Actor) -> None:
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility")
    gas = make_unit(db, "深圳市燃气集团股份有限公司", admin, kind="utility")
    box = make_asset(db, admin, class_code="0134", owner_id=power.id)
    gas_actor = Actor(name="token:gas", unit_id=gas.id)
    area = ServiceArea.from_settings()
    with pytest.raises(Forbidden), transaction(db) as session:
        assets.update_asset(session, box.code, AssetUpdate(version=1, state="破损"), gas_actor, area)
    with pytest.raises(Forbidden), transaction(db) as session:
        assets.register_asset(
            session,
            AssetCreate(class_code="0111", geometry=point(), owner_id=power.id),
            gas_actor,
            area,
            COUNTY,
        )
    power_actor = Actor(name="token:power", unit_id=power.id)
    with transaction(db) as session:
        assert (
            assets.update_asset(
                session, box.code, AssetUpdate(version=1, state="破损"), power_actor, area
            ).version
            == 2
        )


def test_unknown_and_mistyped_codes_are_different_answers(db: Engine, admin: Actor) -> None:
    lamp = make_asset(db, admin)
    good = parse_code(lamp.code)
    with pytest.raises(NotFound, match="well-formed but not registered"), transaction(db) as session:
        assets.get_by_code(session, "440310-0118-000777-" + mod11_10_check_digit("4403100118000777"))
    typo = lamp.code[:12] + ("9" if lamp.code[12] != "9" else "8") + lamp.code[13:]
    with pytest.raises(CheckDigitMismatch) as err, transaction(db) as session:
        assets.get_by_code(session, typo)
    assert err.value.details["did_you_mean"] == [good.formatted]


def test_list_filters_by_class_unit_and_bbox_with_total(db: Engine, admin: Actor) -> None:
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility")
    for i in range(5):
        make_asset(db, admin, owner_id=power.id, geometry=point(114.34 + i * 0.001, 22.69))
    make_asset(db, admin, class_code="0117", geometry=point(114.40, 22.72))
    with transaction(db) as session:
        rows, total = assets.list_assets(session, assets.AssetFilter(class_codes=("0118",)), limit=2)
        assert total == 5 and len(rows) == 2
        _, in_box = assets.list_assets(session, assets.AssetFilter(bbox=(114.3395, 22.68, 114.3425, 22.70)))
        assert in_box == 3
        _, owned = assets.list_assets(session, assets.AssetFilter(unit_id=power.id))
        assert owned == 5


def test_a_unit_lists_the_assets_it_answers_for_in_any_role_through_one_index(
    db: Engine, admin: Actor
) -> None:
    water = make_unit(db, "深圳市水务集团有限公司", admin, kind="utility")
    other = make_unit(db, "坪山街道办事处", admin, kind="street_office")
    make_asset(db, admin, owner_id=water.id, geometry=point(114.340, 22.69))
    make_asset(db, admin, maintainer_id=water.id, owner_id=other.id, geometry=point(114.341, 22.69))
    make_asset(db, admin, supervisor_id=water.id, geometry=point(114.342, 22.69))
    make_asset(db, admin, owner_id=other.id, geometry=point(114.343, 22.69))
    statements: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(db, "before_cursor_execute", keep)
    try:
        with transaction(db) as session:
            rows, total = assets.list_assets(session, assets.AssetFilter(unit_id=water.id))
    finally:
        event.remove(db, "before_cursor_execute", keep)
    assert total == 3
    assert {(r.owner_id, r.maintainer_id, r.supervisor_id) for r in rows} == {
        (water.id, None, None),
        (other.id, water.id, None),
        (None, None, water.id),
    }
    listing, parameters = next((s, p) for s, p in statements if "FROM assets" in s and "ORDER BY" in s)
    with db.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + listing, parameters))
    assert "assets_units_gin" in plan
