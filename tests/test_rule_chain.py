"""The rule chain alone, without a database: each step decided from hand-made rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from registry.rule_chain import (
    Candidate,
    ClassInfo,
    CodeRow,
    ResolveConfig,
    Rule,
    Zone,
    decide_code,
    decide_location,
    missing_rule_class,
    nearest_candidates,
)

CONFIG = ResolveConfig(
    county="440310",
    metric_srid=4547,
    timezone="Asia/Shanghai",
    point_tolerance_m=30.0,
    line_tolerance_m=10.0,
    polygon_tolerance_m=15.0,
    ambiguity_m=3.0,
    ambiguity_ratio=1.25,
    candidates=3,
    lang="en",  # the English catalogue; the Chinese lines (the default) are checked at the end
)
ZH = dataclasses.replace(CONFIG, lang="zh")
LAMP = ClassInfo("0118", "路灯", "point")
COVER = ClassInfo("0101", "污水井盖", "point")
CABLE = ClassInfo("2105", "电力电缆", "line")
PARKING = ClassInfo("0201", "停车场", "polygon")
CATALOG = {c.code: c for c in (LAMP, COVER, CABLE, PARKING)}

POWER = {"id": 1, "name": "深圳供电局有限公司", "credit_code": None, "phone": "95598", "verified": True}
WATER = {"id": 2, "name": "深圳市水务集团有限公司", "credit_code": None, "phone": None, "verified": True}
CREW = {"id": 3, "name": "深圳市路灯养护有限公司", "credit_code": None, "phone": None, "verified": False}
CITY = {"id": 4, "name": "坪山区城市管理和综合执法局", "credit_code": None, "phone": None, "verified": True}
OFFICE = {"id": 5, "name": "坪山街道办事处", "credit_code": None, "phone": "0755-28000000", "verified": True}
OTHER_OFFICE = {"id": 6, "name": "马峦街道办事处", "credit_code": None, "phone": None, "verified": True}
LAMPS = {"id": 7, "name": "坪山区路灯管理所", "credit_code": None, "phone": None, "verified": True}

STREET = Zone(10, "street", "坪山街道", "S1", OFFICE)
COMMUNITY = Zone(11, "community", "六联社区", None, None)
CONTRACT = Zone(12, "contract", "路灯养护一标段", None, None)


def asset(
    serial: int, distance: float, owner: dict[str, Any] | None, cls: ClassInfo = LAMP, **parties: Any
) -> Candidate:
    """A candidate asset ``distance`` metres from the point."""
    return Candidate(
        code=f"440310{cls.code}{serial:06d}0",
        class_code=cls.code,
        state="in_service",
        in_use=True,
        distance=distance,
        owner=owner,
        **parties,
    )


def rule(
    rule_id: int,
    unit: dict[str, Any],
    zone: Zone | None = None,
    class_code: str | None = None,
    category: str | None = None,
    priority: int = 0,
) -> Rule:
    """A rule of ``zone`` (None: the whole district)."""
    return Rule(
        id=rule_id,
        level=zone.level if zone else None,
        zone=zone.name if zone else None,
        class_code=class_code,
        category=category,
        priority=priority,
        unit=unit,
    )


def decide(
    candidates: list[Candidate] = [],  # noqa: B006 (never mutated)
    zones: list[Zone] = [],  # noqa: B006
    rules: list[Rule] = [],  # noqa: B006
    classes: tuple[ClassInfo, ...] = (LAMP,),
    category: str | None = None,
) -> Any:
    """The chain's decision for these rows."""
    return decide_location(
        CONFIG,
        CATALOG,
        classes=classes,
        category=category,
        as_of=None,
        candidates=candidates,
        zones=zones,
        rules=rules,
    )


# --- step 1: nearest asset within the tolerance of its geometry kind ------------------------------------


def test_each_candidate_is_held_to_the_tolerance_of_its_own_geometry_kind() -> None:
    found = [
        asset(1, 29.9, POWER),  # point: 30 m
        asset(2, 30.1, POWER),
        asset(3, 9.5, WATER, CABLE),  # line: 10 m
        asset(4, 10.5, WATER, CABLE),
        asset(5, 14.0, CITY, PARKING),  # polygon: 15 m
        asset(6, 15.5, CITY, PARKING),
    ]
    kept = nearest_candidates(CONFIG, CATALOG, found)
    assert [c.code for c in kept] == [found[2].code, found[4].code, found[0].code]  # nearest first


def test_candidates_are_capped_and_ties_broken_by_code() -> None:
    found = [asset(4, 5.0, POWER), asset(3, 5.0, POWER), asset(2, 1.0, POWER), asset(1, 8.0, POWER)]
    kept = nearest_candidates(CONFIG, CATALOG, found)
    assert [c.code for c in kept] == [found[2].code, found[1].code, found[0].code]


def test_the_nearest_owned_asset_decides_with_all_three_parties() -> None:
    lamp = asset(1, 3.0, POWER, maintainer=CREW, supervisor=CITY)
    d = decide([lamp, asset(2, 20.0, WATER)], zones=[STREET], rules=[rule(1, LAMPS, STREET, "0118")])
    assert (d.status, d.rule) == ("resolved", "nearest_asset")
    assert (d.owner, d.maintainer, d.supervisor) == (POWER, CREW, CITY)
    assert d.asset["code"] == lamp.code and d.asset["distance_m"] == 3.0 and d.asset_code == lamp.code
    assert d.explanation[0].startswith("step 1 nearest asset: 路灯 440310-0118-000001-0 at 3.0 m")
    assert "within 30 m for point assets" in d.explanation[0]
    assert d.explanation[1].startswith("step 2 ambiguity: none")
    assert d.matched_rule is None and [z["name"] for z in d.zones] == ["坪山街道"]


def test_no_asset_says_which_tolerances_were_searched() -> None:
    d = decide(classes=(LAMP, CABLE))
    assert d.explanation[0] == (
        "step 1 nearest asset: no in-use asset of 路灯 (0118), 电力电缆 (2105) within 10/30 m"
    )


# --- step 2: ambiguity ------------------------------------------------------------------------------------


def test_another_owners_asset_nearly_as_close_makes_it_ambiguous() -> None:
    d = decide([asset(1, 4.0, POWER), asset(2, 6.5, WATER)], zones=[STREET])
    assert (d.status, d.rule, d.owner) == ("ambiguous", "ambiguity", None)
    assert [c["owner"] for c in d.candidates] == [POWER, WATER]
    assert "within 3.0 m of the nearest" in d.explanation[1]


def test_the_margin_grows_with_the_distance() -> None:
    # margin max(3 m, 25% of 20 m) = 5 m: 24 m is nearly as close, 25.5 m is not
    assert decide([asset(1, 20.0, POWER), asset(2, 24.0, WATER)]).status == "ambiguous"
    assert decide([asset(1, 20.0, POWER), asset(2, 25.5, WATER)]).status == "resolved"


def test_the_same_owner_nearly_as_close_is_not_ambiguous() -> None:
    d = decide([asset(1, 4.0, POWER), asset(2, 4.5, POWER), asset(3, 12.0, WATER)])
    assert (d.status, d.owner) == ("resolved", POWER)


# --- step 3: responsibility rules -------------------------------------------------------------------------


def test_a_class_rule_of_the_zone_decides_when_no_asset_qualifies() -> None:
    class_rule = rule(1, LAMPS, COMMUNITY, "0118")
    any_class = rule(2, CITY, STREET)
    d = decide(zones=[STREET, COMMUNITY], rules=[any_class, class_rule])
    assert (d.status, d.rule, d.owner) == ("resolved", "responsibility_rule", LAMPS)
    assert d.matched_rule["rule_id"] == 1 and [c["rule_id"] for c in d.candidates] == [1, 2]
    assert [z["level"] for z in d.zones] == ["community", "street"]  # finest first
    assert d.explanation[1].startswith("step 3 responsibility rule #1: community 六联社区, class 路灯 (0118)")


def test_a_category_rule_is_more_specific_than_a_class_rule_and_priority_beats_both() -> None:
    class_rule = rule(1, LAMPS, STREET, "0118")
    category_rule = rule(2, CITY, STREET, category="路灯不亮")
    d = decide(zones=[STREET], rules=[class_rule, category_rule], category="路灯不亮")
    assert d.owner == CITY
    urgent = rule(3, POWER, None, priority=10)  # district-wide, any class, but explicit priority
    d = decide(zones=[STREET], rules=[class_rule, category_rule, urgent], category="路灯不亮")
    assert d.owner == POWER and "whole district, any class" in d.explanation[1]


def test_the_finer_zone_wins_a_tie_and_equal_rules_naming_different_units_are_ambiguous() -> None:
    street_rule = rule(1, CITY, STREET, "0118")
    contract_rule = rule(2, LAMPS, CONTRACT, "0118")
    assert decide(zones=[STREET, CONTRACT], rules=[street_rule, contract_rule]).owner == LAMPS
    rival = rule(3, POWER, CONTRACT, "0118")
    d = decide(zones=[STREET, CONTRACT], rules=[street_rule, contract_rule, rival])
    assert (d.status, d.rule, d.owner) == ("ambiguous", "responsibility_rule", None)
    assert "2 rules of equal priority and specificity name different units" in d.explanation[1]


def test_an_ownerless_nearest_asset_looks_for_a_rule_of_its_own_class() -> None:
    lamp = asset(1, 3.0, None, maintainer=CREW)
    cover_rule = rule(1, WATER, STREET, "0101")
    lamp_rule = rule(2, LAMPS, STREET, "0118")
    d = decide([lamp], zones=[STREET], rules=[cover_rule, lamp_rule], classes=(LAMP, COVER))
    assert (d.status, d.rule, d.owner, d.maintainer) == ("resolved", "responsibility_rule", LAMPS, CREW)
    assert d.asset_code == lamp.code and [c["code"] for c in d.candidates] == [lamp.code]
    assert "no registered owner (无主)" in d.explanation[1]


def test_the_rules_of_an_ownerless_nearest_asset_are_fetched_only_when_they_were_not() -> None:
    ownerless = [asset(1, 3.0, None)]
    # The lookup named the class: its rules came with the location's rows, no second query.
    assert missing_rule_class(CONFIG, ownerless, ["0118"]) is None
    # Any class: only class-less rules were fetched.
    assert missing_rule_class(CONFIG, ownerless, []) == "0118"
    assert missing_rule_class(CONFIG, [asset(1, 3.0, POWER)], []) is None  # the owner decides
    assert missing_rule_class(CONFIG, [*ownerless, asset(2, 4.0, WATER)], []) is None  # ambiguous
    assert missing_rule_class(CONFIG, [], []) is None


# --- step 4: street-office jurisdiction (属地兜底) -----------------------------------------------------


def test_the_street_office_is_the_fallback() -> None:
    d = decide(zones=[COMMUNITY, STREET])
    assert (d.status, d.rule, d.owner) == ("fallback", "jurisdiction", OFFICE)
    assert d.explanation[-1] == (
        "step 4 jurisdiction (属地兜底): street 坪山街道 -> 坪山街道办事处, tel 0755-28000000"
    )


def test_a_point_on_the_boundary_of_two_streets_is_ambiguous() -> None:
    other = Zone(13, "street", "马峦街道", None, OTHER_OFFICE)
    d = decide(zones=[STREET, other])
    assert (d.status, d.rule, d.owner) == ("ambiguous", "jurisdiction", None)
    assert [c["unit"] for c in d.candidates] == [OFFICE, OTHER_OFFICE]


def test_a_category_without_classes_skips_the_assets_and_goes_to_the_street() -> None:
    d = decide(zones=[STREET], classes=(), category="占道经营")
    assert d.explanation[0].startswith("step 1 nearest asset: skipped: category 占道经营 concerns no")
    assert d.owner == OFFICE


# --- step 5: unresolved, with the reason -----------------------------------------------------------------


def test_unresolved_says_why() -> None:
    outside = decide()
    assert (outside.status, outside.rule, outside.owner) == ("unresolved", "none", None)
    assert outside.reason == "the point lies outside every zone"
    assert outside.explanation[-1].startswith("unresolved: the point lies outside every zone")
    assert decide(zones=[COMMUNITY]).reason == "the point lies in no street zone"
    no_office = Zone(14, "street", "碧岭街道", None, None)
    assert decide(zones=[no_office]).reason == "street zone 碧岭街道 has no responsible unit"
    # The ownerless nearest asset stays in the answer, with its maintainer.
    d = decide([asset(1, 3.0, None, maintainer=CREW)], zones=[COMMUNITY])
    assert d.status == "unresolved" and d.asset_code is not None and d.maintainer == CREW


# --- by code ----------------------------------------------------------------------------------------------


def test_a_code_at_a_time_no_responsibility_period_covers_is_unresolved() -> None:
    row = CodeRow(
        code="44031001180000010",
        class_code="0118",
        state="in_service",
        in_use=True,
        decommissioned_at=None,
        decommission_reason=None,
        lon=114.3466,
        lat=22.6953,
        installed_on=dt.date(2024, 5, 1),
        covered=False,
        owner=None,
        maintainer=None,
        supervisor=None,
    )
    before = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    d = decide_code(CONFIG, LAMP, row, before)
    assert (d.status, d.rule) == ("unresolved", "code")
    assert any("not yet installed" in line for line in d.explanation)
    covered = decide_code(CONFIG, LAMP, dataclasses.replace(row, covered=True, owner=POWER), None)
    assert (covered.status, covered.owner) == ("resolved", POWER)


# --- the lines in Chinese (the deployment default) ----------------------------------------------------


def test_a_dispatcher_reads_each_step_in_chinese() -> None:
    lamp = asset(1, 3.0, POWER, maintainer=CREW, supervisor=CITY)
    kw: dict[str, Any] = {"classes": (LAMP,), "category": None, "as_of": None}
    nearest = decide_location(ZH, CATALOG, candidates=[lamp], zones=[STREET], rules=[], **kw)
    assert (nearest.status, nearest.rule) == ("resolved", "nearest_asset")  # machine fields unchanged
    assert nearest.explanation[0].startswith("第1步 最近设施：路灯 440310-0118-000001-0，距离 3.0 米")
    assert (
        "点状设施容差 30 米" in nearest.explanation[0]
        and "权属单位 深圳供电局有限公司" in nearest.explanation[0]
    )
    assert nearest.explanation[1].startswith("第2步 歧义：无")

    ruled = decide_location(
        ZH, CATALOG, candidates=[], zones=[COMMUNITY], rules=[rule(1, LAMPS, COMMUNITY, "0118")], **kw
    )
    assert ruled.explanation[-1].startswith(
        "第3步 职责清单规则 #1：社区 六联社区，类别 路灯（0118） → 坪山区路灯管理所"
    )

    street = decide_location(ZH, CATALOG, candidates=[], zones=[COMMUNITY, STREET], rules=[], **kw)
    assert street.explanation[-1] == "第4步 属地兜底：街道 坪山街道 → 坪山街道办事处，电话 0755-28000000"

    nowhere = decide_location(ZH, CATALOG, candidates=[], zones=[], rules=[], **kw)
    assert (nowhere.status, nowhere.rule) == ("unresolved", "none")
    assert nowhere.reason == "该点在所有区域之外"
    assert nowhere.explanation[-1].startswith("无法确定：该点在所有区域之外")

    rivals_ = decide_location(ZH, CATALOG, candidates=[lamp, asset(2, 4.0, WATER)], zones=[], rules=[], **kw)
    assert rivals_.status == "ambiguous" and "不作选择" in rivals_.explanation[1]


def test_a_code_answer_in_chinese_shows_local_times() -> None:
    row = CodeRow(
        code="44031001180000010",
        class_code="0118",
        state="完好",
        in_use=True,
        decommissioned_at=None,
        decommission_reason=None,
        lon=114.3466,
        lat=22.6953,
        installed_on=dt.date(2024, 5, 1),
        covered=True,
        owner=None,
        maintainer=CREW,
        supervisor=None,
    )
    d = decide_code(ZH, LAMP, row, dt.datetime(2026, 12, 6, 1, 0, tzinfo=dt.UTC))
    assert d.explanation[0] == "智慧码 440310-0118-000001-0：路灯（0118），已登记，状态 完好"
    assert "以下为 2026-12-06 09:00:00 +08:00 时的责任单位" in d.explanation[1]
    assert (
        d.explanation[2] == "权属单位：未登记；养护单位：深圳市路灯养护有限公司（未核实）；主管部门：未登记"
    )
    assert d.explanation[3].startswith("该设施未登记权属单位")


def test_every_message_has_both_languages_with_the_same_placeholders() -> None:
    import string

    from registry import messages

    def fields(template: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}

    for key in messages.all_keys():
        zh, en = messages.template("zh", key), messages.template("en", key)
        assert zh and en and fields(zh) == fields(en), key


def test_the_passer_by_view_speaks_the_deployment_language() -> None:
    from registry.access import public_resolution

    answer = {
        "id": 1,
        "status": "resolved",
        "rule": "code",
        "asset": {
            "code_display": "440310-0118-000001-0",
            "class": {"code": "0118", "name": "路灯"},
            "state": "完好",
        },
        "owner": POWER,
        "maintainer": None,
        "supervisor": None,
    }
    zh = public_resolution(answer, lang="zh")["explanation"]
    assert zh == [
        "智慧码 440310-0118-000001-0：路灯（0118），状态 完好",
        "权属单位：深圳供电局有限公司，电话 95598；养护单位：未登记；主管部门：未登记",
    ]
    assert public_resolution(answer)["explanation"][0] == "code 440310-0118-000001-0: 路灯 (0118), state 完好"


def test_a_bilingual_message_reads_whole_and_gives_each_language_its_half() -> None:
    import copy
    import pickle

    import orjson

    from registry.messages import Bilingual, both, in_lang, split

    held = both(
        "imp.unit.held",
        target=both("field.owner"),
        name="甲",
        close=Bilingual("乙、丙", "乙 / 丙"),
        first="乙",
    )
    assert (
        str(held).startswith("权属单位 '甲' 未登记，但与已登记的 乙、丙 相近") and " / owner '甲' is" in held
    )
    assert in_lang(held, "en").startswith("owner '甲' is not a registered unit but close to 乙 / 丙")
    assert in_lang("plain text", "en") == "plain text"
    assert copy.deepcopy(held).en == held.en and pickle.loads(pickle.dumps(held)).zh == held.zh
    assert orjson.loads(orjson.dumps({"reason": held}))["reason"] == str(held)
    built_by_sql = split("智慧码 1 重复出现\x1fcode 1 appears again")
    assert (
        in_lang(built_by_sql, "zh") == "智慧码 1 重复出现"
        and in_lang(built_by_sql, "en") == "code 1 appears again"
    )


def test_the_chinese_half_of_a_bilingual_message_never_holds_the_separator() -> None:
    # A report read back from the database is cut at the first " / " after Chinese (cli.i18n.pick).
    from registry import messages

    bilingual = ("imp.", "err.", "enc.", "note.", "delim.", "field.", "zimp.")
    for key in messages.all_keys():
        if key.startswith(bilingual):
            assert " / " not in messages.template("zh", key), key
