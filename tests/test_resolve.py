"""Ownership resolution on a real PostGIS: each rule step, ambiguity, as-of time, each CRS, geometry kinds."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
import shapely
from shapely.geometry import mapping
from sqlalchemy import Engine, text

from common.errors import CheckDigitMismatch, InvalidCode, InvalidInput, NotFound, OutsideServiceArea
from common.settings import Settings
from gis.crs import BD09, GCJ02, crs_from_epsg, from_wgs84
from gis.metric import metric_projector
from registry import resolution_sql, rules, zones
from registry.db import Actor, transaction
from registry.resolution import LocationQuery, Resolver, conninfo_from_url, run_lookup
from registry.schemas import Decommission, UnitsChange
from tests.helpers import COUNTY, PINGSHAN, make_asset, make_unit, point

CST = dt.timezone(dt.timedelta(hours=8))
PROJ = metric_projector(4547)
ORIGIN_M = PROJ.project_point(*PINGSHAN)


def at_m(dx: float, dy: float = 0.0) -> tuple[float, float]:
    """WGS84 lon/lat of the point dx metres east and dy metres north of PINGSHAN."""
    lon, lat = PROJ.unproject_arrays([ORIGIN_M[0] + dx], [ORIGIN_M[1] + dy])
    return float(lon[0]), float(lat[0])


def pt(dx: float, dy: float = 0.0) -> dict[str, Any]:
    """A GeoJSON point dx/dy metres from PINGSHAN."""
    return point(*at_m(dx, dy))


def box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    """A WGS84 rectangle given in metres around PINGSHAN."""
    return shapely.Polygon([at_m(x0, y0), at_m(x1, y0), at_m(x1, y1), at_m(x0, y1)])


@pytest.fixture
def resolver(settings: Settings) -> Resolver:
    """A resolver on the test deployment's settings."""
    return Resolver(settings)


@pytest.fixture
def conninfo(migrated_url: str) -> str:
    """libpq connection string of the test database."""
    return conninfo_from_url(migrated_url)


def locate(conninfo: str, resolver: Resolver, x: float, y: float, **fields: Any) -> dict[str, Any]:
    """Resolve a location synchronously, logging directly."""
    query = LocationQuery(x=x, y=y, **fields)
    answer, _ = run_lookup(
        conninfo,
        lambda conn, log: resolver.resolve_location(conn, query, log=log, actor="test", channel="test"),
    )
    return answer


def by_code(conninfo: str, resolver: Resolver, code: str, at: Any = None) -> dict[str, Any]:
    """Resolve a code synchronously."""
    answer, _ = run_lookup(
        conninfo,
        lambda conn, log: resolver.resolve_code(conn, code, at=at, log=log, actor="test", channel="test"),
    )
    return answer


def add_zone(
    db: Engine, admin: Actor, level: str, name: str, polygon: shapely.Polygon, **fields: Any
) -> dict:
    """Save a zone in its own transaction."""
    with transaction(db) as session:
        view, _ = zones.save_zone(
            session,
            admin,
            zones.ZoneInput(level=level, name=name, geometry=polygon, **fields),
            area=_area(),
            county=COUNTY,
        )
        return view


def add_rule(db: Engine, admin: Actor, **fields: Any) -> dict:
    """Save a rule in its own transaction."""
    with transaction(db) as session:
        view, _, _ = rules.save_rule(session, admin, rules.RuleInput(**fields), county=COUNTY)
        return view


def _area():  # type: ignore[no-untyped-def]
    from gis.area import ServiceArea

    return ServiceArea.from_settings()


# --- by code -----------------------------------------------------------------------------------------


def test_code_names_asset_class_state_and_all_three_parties(
    db: Engine, admin: Actor, conninfo, resolver
) -> None:
    power = make_unit(
        db, "深圳供电局有限公司", admin, kind="utility", phone="95598", credit_code="9144030071526726XG"
    )
    city = make_unit(db, "坪山区城市管理和综合执法局", admin, kind="government", phone="0755-12319")
    crew = make_unit(db, "深圳市路灯养护有限公司", admin, kind="contractor")
    lamp = make_asset(db, admin, owner_id=power.id, maintainer_id=crew.id, supervisor_id=city.id)
    grouped = f"{lamp.code[:6]}-{lamp.code[6:10]}-{lamp.code[10:16]}-{lamp.code[16]}"
    for form in (lamp.code, grouped, f"https://sc.example/c/{grouped}?s=abc123"):
        answer = by_code(conninfo, resolver, form)
        assert answer["status"] == "resolved" and answer["rule"] == "code"
        assert answer["asset"]["code"] == lamp.code and answer["asset"]["class"]["name"] == "路灯"
        assert answer["asset"]["state"] == "完好" and answer["asset"]["in_use"] is True
        assert answer["owner"] == {
            "id": power.id,
            "name": "深圳供电局有限公司",
            "credit_code": "9144030071526726XG",
            "phone": "95598",
            "verified": False,
        }
        assert answer["maintainer"]["name"] == "深圳市路灯养护有限公司"
        assert answer["supervisor"]["phone"] == "0755-12319"
        assert answer["id"] > 0 and answer["explanation"]
    with db.connect() as conn:
        logged = conn.execute(text("SELECT count(*), min(status), min(asset_code) FROM resolution_log")).one()
    assert tuple(logged) == (3, "resolved", lamp.code)


def test_wrong_check_digit_and_unknown_code_are_different_answers(
    db: Engine, admin: Actor, conninfo, resolver
) -> None:
    lamp = make_asset(db, admin)
    wrong = lamp.code[:16] + str((int(lamp.code[16]) + 1) % 10)
    with pytest.raises(CheckDigitMismatch) as mismatch:
        by_code(conninfo, resolver, wrong)
    assert mismatch.value.details["did_you_mean"] == [
        f"{lamp.code[:6]}-{lamp.code[6:10]}-{lamp.code[10:16]}-{lamp.code[16]}"
    ]
    unknown = "4403100118000999"
    with pytest.raises(NotFound, match="well-formed but not registered"):
        by_code(conninfo, resolver, unknown)
    with pytest.raises(InvalidCode, match="has 10 digits"):
        by_code(conninfo, resolver, "4403100118")


def test_decommissioned_asset_says_so_and_names_its_last_parties(
    db: Engine, admin: Actor, conninfo, resolver
) -> None:
    from registry import assets

    owner = make_unit(db, "中国联通深圳分公司", admin, kind="telecom")
    pole = make_asset(db, admin, class_code="0117", owner_id=owner.id)
    with transaction(db) as session:
        assets.decommission_asset(session, pole.code, Decommission(version=1, reason="道路改造拆除"), admin)
    answer = by_code(conninfo, resolver, pole.code)
    assert answer["status"] == "resolved"
    assert answer["asset"]["in_use"] is False and answer["asset"]["decommission_reason"] == "道路改造拆除"
    assert answer["owner"]["name"] == "中国联通深圳分公司"
    assert any("注销" in line for line in answer["explanation"])
    assert any("显示其最后的责任单位" in line for line in answer["explanation"])


def test_code_as_of_a_time_names_the_owner_then(db: Engine, admin: Actor, conninfo, resolver) -> None:
    from registry import assets

    old = make_unit(db, "中国电信深圳分公司", admin, kind="telecom")
    new = make_unit(db, "中国铁塔股份有限公司深圳市分公司", admin, kind="telecom")
    pole = make_asset(db, admin, class_code="0117", owner_id=old.id, installed_on=dt.date(2020, 1, 1))
    with transaction(db) as session:
        assets.change_units(
            session,
            pole.code,
            UnitsChange(
                version=1, owner_id=new.id, effective_at=dt.datetime(2025, 3, 2, tzinfo=CST), reason="移交"
            ),
            admin,
        )
    assert by_code(conninfo, resolver, pole.code)["owner"]["id"] == new.id
    before = by_code(conninfo, resolver, pole.code, at="2025-01-15T10:00:00+08:00")
    assert before["owner"]["id"] == old.id and before["query"]["at"].startswith("2025-01-15T10:00:00")
    naive = by_code(conninfo, resolver, pole.code, at="2025-03-02 08:00")  # read as Asia/Shanghai
    assert naive["owner"]["id"] == new.id
    too_early = by_code(conninfo, resolver, pole.code, at="2019-06-01")
    assert too_early["status"] == "unresolved" and too_early["owner"] is None


# --- step 1: nearest asset ------------------------------------------------------------------------------


def test_nearest_asset_of_the_class_decides_and_candidates_are_ranked(
    db: Engine, admin: Actor, conninfo, resolver
) -> None:
    a = make_unit(db, "深圳供电局有限公司", admin, kind="utility")
    b = make_unit(db, "坪山区城市管理和综合执法局", admin, kind="government")
    near = make_asset(db, admin, owner_id=a.id, geometry=pt(5))
    far = make_asset(db, admin, owner_id=b.id, geometry=pt(-20))
    make_asset(db, admin, class_code="0117", owner_id=b.id, geometry=pt(1))  # a pole: other class
    answer = locate(conninfo, resolver, *PINGSHAN, classes=["0118"])
    assert answer["status"] == "resolved" and answer["rule"] == "nearest_asset"
    assert answer["asset"]["code"] == near.code
    assert answer["asset"]["distance_m"] == pytest.approx(5.0, abs=0.05)
    assert answer["owner"]["id"] == a.id
    assert [c["code"] for c in answer["candidates"]] == [near.code, far.code]
    assert answer["candidates"][1]["distance_m"] == pytest.approx(20.0, abs=0.05)
    assert answer["explanation"][1].startswith("第1步 最近设施：路灯")
    # The class may be named, and several classes may be asked for.
    by_name = locate(conninfo, resolver, *PINGSHAN, classes=["路灯", "0117"])
    assert by_name["asset"]["class"]["code"] == "0117" and by_name["asset"]["distance_m"] == pytest.approx(
        1, abs=0.05
    )


def test_nearest_of_a_class_is_a_knn_scan_of_that_class_plane_only(
    db: Engine, admin: Actor, conninfo: str
) -> None:
    # Plenty of lamps right at the point and one manhole cover 25 m away: the scan for covers in
    # the class-plane index must find the cover without visiting the lamps.
    for i in range(30):
        make_asset(db, admin, geometry=pt(0.1 * i))
    cover = make_asset(db, admin, class_code="0101", geometry=pt(25))
    sql = resolution_sql.nearest_sql(4547, by_class=True, at=False)
    params = {"classes": "{0101}", "tolerances": "{30}", "x": ORIGIN_M[0], "y": ORIGIN_M[1], "k": 5}
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET enable_seqscan = off")
        rows = conn.execute(sql, params).fetchall()
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params))
    assert [r[0] for r in rows] == [cover.code] and rows[0][4] == pytest.approx(25.0, abs=0.05)
    assert "assets_class_plane_gist" in plan and "Order By" in plan
    assert "Rows Removed by Filter" not in plan  # no lamp came out of the index


def test_point_tolerance_line_band_and_polygon_inside(db: Engine, admin: Actor, conninfo, resolver) -> None:
    telecom = make_unit(db, "中国移动深圳分公司", admin, kind="telecom")
    city = make_unit(db, "坪山区交通运输局", admin, kind="government")
    make_asset(db, admin, owner_id=telecom.id, geometry=pt(40))  # a lamp 40 m away: beyond 30 m
    assert locate(conninfo, resolver, *PINGSHAN, classes=["0118"])["rule"] != "nearest_asset"
    # A cable running north-south 8 m east of the point: inside the 10 m band for lines.
    cable = make_asset(
        db,
        admin,
        class_code="2105",
        owner_id=telecom.id,
        geometry={"type": "LineString", "coordinates": [at_m(8, -100), at_m(8, 100)]},
    )
    answer = locate(conninfo, resolver, *PINGSHAN, classes=["2105"])
    assert answer["asset"]["code"] == cable.code and answer["asset"]["distance_m"] == pytest.approx(
        8, abs=0.05
    )
    assert "线状设施容差 10 米" in answer["explanation"][1]
    # 12 m from the cable is outside the band, although a point asset would still qualify there.
    assert locate(conninfo, resolver, *at_m(-4), classes=["2105"])["asset"] is None
    # A car park polygon: inside it the distance is 0.
    park = make_asset(
        db, admin, class_code="0201", owner_id=city.id, geometry=mapping(box(-50, -50, -10, 50))
    )
    inside = locate(conninfo, resolver, *at_m(-30), classes=["停车场"])
    assert inside["asset"]["code"] == park.code and inside["asset"]["distance_m"] == 0
    near_edge = locate(conninfo, resolver, *at_m(2), classes=["0201"])  # 12 m from the edge
    assert near_edge["asset"]["code"] == park.code
    assert locate(conninfo, resolver, *at_m(10), classes=["0201"])["asset"] is None  # 20 m: too far


def test_without_class_any_asset_within_its_own_tolerance_counts(
    db: Engine, admin: Actor, conninfo, resolver
) -> None:
    a = make_unit(db, "深圳市水务集团有限公司", admin, kind="utility")
    cover = make_asset(db, admin, class_code="0101", owner_id=a.id, geometry=pt(3))
    make_asset(
        db,
        admin,
        class_code="2105",
        owner_id=a.id,
        geometry={"type": "LineString", "coordinates": [at_m(20, -50), at_m(20, 50)]},  # 20 m: beyond 10 m
    )
    answer = locate(conninfo, resolver, *PINGSHAN)
    assert answer["asset"]["code"] == cover.code and len(answer["candidates"]) == 1


# --- step 2: ambiguity ------------------------------------------------------------------------------------


def test_assets_of_different_owners_nearly_equally_close_are_ambiguous(
    db: Engine, admin: Actor, conninfo, resolver
) -> None:
    water = make_unit(db, "深圳市水务集团有限公司", admin, kind="utility")
    gas = make_unit(db, "深圳市燃气集团股份有限公司", admin, kind="utility")
    w = make_asset(db, admin, class_code="0101", owner_id=water.id, geometry=pt(4))
    g = make_asset(db, admin, class_code="0111", owner_id=gas.id, geometry=pt(-6))
    answer = locate(conninfo, resolver, *PINGSHAN, category="井盖破损")
    assert answer["status"] == "ambiguous" and answer["rule"] == "ambiguity"
    assert answer["owner"] is None
    assert [(c["code"], c["owner"]["id"]) for c in answer["candidates"]] == [
        (w.code, water.id),
        (g.code, gas.id),
    ]
    assert answer["candidates"][0]["distance_m"] == pytest.approx(4, abs=0.05)
    assert answer["candidates"][1]["distance_m"] == pytest.approx(6, abs=0.05)
    assert answer["explanation"][2].startswith("第2步 歧义：距最近设施")
    # Far apart relative to their distance: the nearest wins (margin max(3 m, 25% of 4 m) = 3 m < 6 m).
    clear = locate(conninfo, resolver, *at_m(4, 0), category="井盖破损")
    assert clear["status"] == "resolved" and clear["owner"]["id"] == water.id


def test_two_equally_close_assets_of_the_same_owner_are_not_ambiguous(
    db: Engine, admin: Actor, conninfo, resolver
) -> None:
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility")
    make_asset(db, admin, owner_id=power.id, geometry=pt(5))
    make_asset(db, admin, owner_id=power.id, geometry=pt(-5.5))
    answer = locate(conninfo, resolver, *PINGSHAN, classes=["0118"])
    assert answer["status"] == "resolved" and answer["owner"]["id"] == power.id


# --- steps 3-5: rules, jurisdiction, unresolved ------------------------------------------------------------


@pytest.fixture
def district(db: Engine, admin: Actor) -> dict[str, Any]:
    """A street with its office, a community inside it and a contract area, around PINGSHAN."""
    office = make_unit(db, "坪山街道办事处", admin, kind="street_office", phone="0755-28000000")
    add_zone(db, admin, "street", "坪山街道", box(-1000, -1000, 1000, 1000), unit="坪山街道办事处")
    add_zone(db, admin, "community", "六联社区", box(-300, -300, 300, 300), unit="六联社区工作站")
    add_zone(db, admin, "contract", "路灯养护一标段", box(-500, -500, 0, 500))
    return {"office": office}


def test_rule_for_the_class_in_the_zone_decides_when_no_asset_qualifies(
    db: Engine, admin: Actor, conninfo, resolver, district
) -> None:
    lamps = make_unit(db, "坪山区路灯管理所", admin, kind="government", phone="0755-84600000")
    roads = make_unit(db, "坪山区交通运输局", admin, kind="government")
    add_rule(db, admin, zone="六联社区", level="community", class_="0118", unit="坪山区路灯管理所")
    add_rule(db, admin, zone="坪山街道", level="street", unit="坪山区交通运输局")  # any class
    answer = locate(conninfo, resolver, *PINGSHAN, classes=["0118"])
    assert answer["status"] == "resolved" and answer["rule"] == "responsibility_rule"
    assert answer["owner"]["id"] == lamps.id and answer["owner"]["phone"] == "0755-84600000"
    assert answer["matched_rule"]["zone"] == {"level": "community", "name": "六联社区"}
    assert len(answer["candidates"]) == 2  # both rules applied; the class-specific one won
    assert {z["name"] for z in answer["zones"]} == {"坪山街道", "六联社区", "路灯养护一标段"}
    assert answer["explanation"][2].startswith("第3步 职责清单规则 #")
    # Another class: only the street-wide any-class rule applies.
    other = locate(conninfo, resolver, *PINGSHAN, classes=["0305"])
    assert other["owner"]["id"] == roads.id
    # An explicit priority beats specificity.
    add_rule(db, admin, zone="路灯养护一标段", level="contract", unit="坪山区交通运输局", priority=10)
    assert locate(conninfo, resolver, *at_m(-100), classes=["0118"])["owner"]["id"] == roads.id


def test_category_rules_and_aliases(db: Engine, admin: Actor, conninfo, resolver, district) -> None:
    add_rule(
        db, admin, zone="坪山街道", level="street", category="占道经营", unit="坪山区城市管理和综合执法局"
    )
    answer = locate(conninfo, resolver, *PINGSHAN, category="流动摊贩")  # an alias of 占道经营
    assert answer["query"]["category"] == "占道经营" and answer["query"]["classes"] == []
    assert answer["rule"] == "responsibility_rule" and answer["owner"]["name"] == "坪山区城市管理和综合执法局"
    # The category's classes are searched first: a lamp nearby decides 路灯不亮.
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility")
    make_asset(db, admin, owner_id=power.id, geometry=pt(3))
    assert locate(conninfo, resolver, *PINGSHAN, category="路灯不亮")["owner"]["id"] == power.id


def test_category_without_classes_skips_the_nearest_asset(
    db: Engine, admin: Actor, conninfo, resolver, district
) -> None:
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility")
    make_asset(db, admin, owner_id=power.id, geometry=pt(3))  # a lamp 3 m away
    # 道路破损 concerns no class: not the power company's lamp, but the street office (no rule yet).
    road = locate(conninfo, resolver, *PINGSHAN, category="道路破损")
    assert road["query"]["classes"] == [] and road["asset"] is None and road["candidates"] == []
    assert road["status"] == "fallback" and road["rule"] == "jurisdiction"
    assert road["owner"]["id"] == district["office"].id
    assert road["explanation"][1].startswith("第1步 最近设施：跳过：案件类别 道路破损 不涉及部件类别")
    # With a rule for the category, the rule decides.
    add_rule(
        db, admin, zone="坪山街道", level="street", category="占道经营", unit="坪山区城市管理和综合执法局"
    )
    vending = locate(conninfo, resolver, *PINGSHAN, category="占道经营")
    assert vending["rule"] == "responsibility_rule" and vending["asset"] is None
    assert vending["owner"]["name"] == "坪山区城市管理和综合执法局"
    # Neither class nor category: any class, so the lamp still decides.
    anything = locate(conninfo, resolver, *PINGSHAN)
    assert anything["rule"] == "nearest_asset" and anything["owner"]["id"] == power.id


def test_rules_of_equal_rank_naming_different_units_are_ambiguous(
    db: Engine, admin: Actor, conninfo, resolver, district
) -> None:
    add_zone(db, admin, "contract", "路灯养护二标段", box(-200, -500, 500, 500))
    add_rule(db, admin, zone="路灯养护一标段", class_="0118", unit="甲养护公司")
    add_rule(db, admin, zone="路灯养护二标段", class_="0118", unit="乙养护公司")
    answer = locate(conninfo, resolver, *at_m(-100), classes=["0118"])  # in both contract areas
    assert answer["status"] == "ambiguous" and answer["rule"] == "responsibility_rule"
    assert {c["unit"]["name"] for c in answer["candidates"]} == {"甲养护公司", "乙养护公司"}
    assert locate(conninfo, resolver, *at_m(200), classes=["0118"])["owner"]["name"] == "乙养护公司"


def test_ownerless_nearest_asset_falls_to_the_rule_for_its_class(
    db: Engine, admin: Actor, conninfo, resolver, district
) -> None:
    cover = make_asset(db, admin, class_code="0114", geometry=pt(2))  # 无主井盖
    add_rule(db, admin, zone="坪山街道", level="street", class_="无主井盖", unit="坪山区水务局")
    answer = locate(conninfo, resolver, *PINGSHAN, category="井盖破损")
    assert answer["asset"]["code"] == cover.code
    assert answer["rule"] == "responsibility_rule" and answer["owner"]["name"] == "坪山区水务局"
    assert any("没有登记权属单位（无主）" in line for line in answer["explanation"])


def test_street_office_is_the_fallback_and_outside_every_zone_is_unresolved(
    db: Engine, admin: Actor, conninfo, resolver, district
) -> None:
    answer = locate(conninfo, resolver, *PINGSHAN, classes=["0305"])
    assert answer["status"] == "fallback" and answer["rule"] == "jurisdiction"
    assert answer["owner"]["id"] == district["office"].id
    assert answer["explanation"][-1].startswith("第4步 属地兜底：街道 坪山街道 →")
    outside = locate(conninfo, resolver, *at_m(3000), classes=["0305"])
    assert outside["status"] == "unresolved" and outside["rule"] == "none"
    assert outside["reason"] == "该点在所有区域之外"
    assert outside["owner"] is None and outside["explanation"][-1].startswith("无法确定：")


def test_street_without_office_is_unresolved_with_that_reason(
    db: Engine, admin: Actor, conninfo, resolver
) -> None:
    add_zone(db, admin, "street", "碧岭街道", box(-100, -100, 100, 100))
    answer = locate(conninfo, resolver, *PINGSHAN)
    assert answer["status"] == "unresolved" and answer["reason"] == "街道区域 碧岭街道 没有负责单位"


# --- as-of time --------------------------------------------------------------------------------------------


def test_as_of_time_uses_owner_installation_and_decommissioning_then(
    db: Engine, admin: Actor, conninfo, resolver
) -> None:
    from registry import assets

    old = make_unit(db, "中国电信深圳分公司", admin, kind="telecom")
    new = make_unit(db, "中国铁塔股份有限公司深圳市分公司", admin, kind="telecom")
    pole = make_asset(
        db, admin, class_code="0117", owner_id=old.id, installed_on=dt.date(2020, 1, 1), geometry=pt(5)
    )
    with transaction(db) as session:
        assets.change_units(
            session,
            pole.code,
            UnitsChange(
                version=1, owner_id=new.id, effective_at=dt.datetime(2025, 3, 2, tzinfo=CST), reason="移交"
            ),
            admin,
        )
    now = locate(conninfo, resolver, *PINGSHAN, classes=["0117"])
    assert now["owner"]["id"] == new.id
    then = locate(conninfo, resolver, *PINGSHAN, classes=["0117"], at="2025-01-10T09:00:00+08:00")
    assert then["owner"]["id"] == old.id and then["asset"]["code"] == pole.code
    # A pole installed later did not exist at the complaint's time.
    late = make_asset(
        db, admin, class_code="0117", owner_id=new.id, installed_on=dt.date(2025, 6, 1), geometry=pt(1)
    )
    assert locate(conninfo, resolver, *PINGSHAN, classes=["0117"])["asset"]["code"] == late.code
    assert (
        locate(conninfo, resolver, *PINGSHAN, classes=["0117"], at="2025-05-31")["asset"]["code"] == pole.code
    )
    # Decommissioned since: gone today, still there for an older complaint.
    with transaction(db) as session:
        assets.decommission_asset(session, late.code, Decommission(version=1, reason="拆除"), admin)
        assets.decommission_asset(session, pole.code, Decommission(version=2, reason="拆除"), admin)
    assert locate(conninfo, resolver, *PINGSHAN, classes=["0117"])["asset"] is None
    assert (
        locate(conninfo, resolver, *PINGSHAN, classes=["0117"], at="2025-07-01")["asset"]["code"] == late.code
    )


def test_as_of_time_uses_zone_generations_and_rule_versions(
    db: Engine, admin: Actor, conninfo, resolver
) -> None:
    cut = dt.datetime(2025, 1, 1, tzinfo=CST)
    add_zone(db, admin, "street", "坪山街道", box(-1000, -1000, 1000, 1000), unit="坪山街道办事处")
    # From 2025 the area around the point belongs to a new street (a boundary change).
    add_zone(
        db, admin, "street", "坪山街道", box(-1000, -1000, -200, 1000), unit="坪山街道办事处", valid_from=cut
    )
    add_zone(
        db, admin, "street", "马峦街道", box(-200, -1000, 1000, 1000), unit="马峦街道办事处", valid_from=cut
    )
    assert locate(conninfo, resolver, *PINGSHAN)["owner"]["name"] == "马峦街道办事处"
    assert (
        locate(conninfo, resolver, *PINGSHAN, at="2024-12-31T23:00:00+08:00")["owner"]["name"]
        == "坪山街道办事处"
    )
    add_rule(db, admin, zone="马峦街道", level="street", class_="0118", unit="甲养护公司", valid_from=cut)
    add_rule(
        db,
        admin,
        zone="马峦街道",
        level="street",
        class_="0118",
        unit="乙养护公司",
        valid_from=dt.datetime(2025, 7, 1, tzinfo=CST),
    )
    assert locate(conninfo, resolver, *PINGSHAN, classes=["0118"])["owner"]["name"] == "乙养护公司"
    assert (
        locate(conninfo, resolver, *PINGSHAN, classes=["0118"], at="2025-03-01")["owner"]["name"]
        == "甲养护公司"
    )
    with pytest.raises(InvalidInput, match="in the future"):
        locate(conninfo, resolver, *PINGSHAN, at="2099-01-01")


# --- coordinate systems ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crs_text", "convert"),
    [
        ("gcj02", lambda lon, lat: from_wgs84(lon, lat, GCJ02)),
        ("GCJ-02", lambda lon, lat: from_wgs84(lon, lat, GCJ02)),
        ("bd09", lambda lon, lat: from_wgs84(lon, lat, BD09)),
        ("EPSG:4547", lambda lon, lat: from_wgs84(lon, lat, crs_from_epsg(4547))),
        ("epsg:4526", lambda lon, lat: from_wgs84(lon, lat, crs_from_epsg(4526))),
        ("EPSG:4490", lambda lon, lat: (lon, lat)),
        ("cgcs2000", lambda lon, lat: (lon, lat)),
    ],
)
def test_every_crs_resolves_to_the_asset_of_its_wgs84_original(
    db: Engine, admin: Actor, conninfo, resolver, crs_text, convert
) -> None:
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility")
    lamp = make_asset(db, admin, owner_id=power.id, geometry=pt(2))
    make_asset(db, admin, owner_id=power.id, geometry=pt(400))  # where an untreated GCJ point would land
    x, y = convert(*PINGSHAN)
    answer = locate(conninfo, resolver, x, y, crs=crs_text, classes=["0118"])
    assert answer["asset"]["code"] == lamp.code
    assert answer["asset"]["distance_m"] == pytest.approx(2.0, abs=0.01)
    assert answer["query"]["lon"] == pytest.approx(PINGSHAN[0], abs=1e-7)


def test_gcj02_point_treated_as_wgs84_would_miss_the_asset(
    db: Engine, admin: Actor, conninfo, resolver
) -> None:
    lamp = make_asset(db, admin, geometry=pt(0))
    x, y = from_wgs84(*PINGSHAN, GCJ02)
    assert locate(conninfo, resolver, x, y, crs="gcj02", classes=["0118"])["asset"]["code"] == lamp.code
    assert locate(conninfo, resolver, x, y, classes=["0118"])["asset"] is None  # ~600 m off


# --- bad input ---------------------------------------------------------------------------------------------


def test_bad_locations_and_names_say_what_is_wrong(db: Engine, conninfo, resolver) -> None:
    lon, lat = PINGSHAN
    with pytest.raises(InvalidInput, match="look swapped"):
        locate(conninfo, resolver, lat, lon)
    with pytest.raises(OutsideServiceArea, match="outside the service area"):
        locate(conninfo, resolver, 113.9, 22.5)
    with pytest.raises(InvalidInput, match="unknown coordinate system"):
        locate(conninfo, resolver, lon, lat, crs="mars-grid")
    with pytest.raises(InvalidInput, match="unknown component class 'lamp'"):
        locate(conninfo, resolver, lon, lat, classes=["lamp"])
    with pytest.raises(InvalidInput, match="unknown complaint category '井盖不见了'"):
        locate(conninfo, resolver, lon, lat, category="井盖不见了")
    e, n = from_wgs84(lon, lat, crs_from_epsg(4547))
    with pytest.raises(InvalidInput, match="easting and northing look swapped"):
        locate(conninfo, resolver, n, e, crs="EPSG:4547")
    with pytest.raises(InvalidInput, match="not ISO 8601"):
        locate(conninfo, resolver, lon, lat, at="yesterday")
