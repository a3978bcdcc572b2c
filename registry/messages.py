"""The words of the domain that people read, in Chinese (the default) and English.

The resolver's explanation lines are data: the API returns them and the CLI prints them, so their
catalogue lives here, below both. Machine fields (``status``, ``rule``, class and state codes) never
go through it; only the sentences around them do. The CLI's own labels live in :mod:`cli.i18n`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any, Literal

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
DEFAULT_LANG: Lang = "zh"

# key -> (Chinese, English); str.format templates.
_CATALOGUE: dict[str, tuple[str, str]] = {
    # statuses and deciding rules (the machine values are the keys' suffixes)
    "status.resolved": ("已确定", "RESOLVED"),
    "status.ambiguous": ("有歧义", "AMBIGUOUS"),
    "status.fallback": ("属地兜底", "FALLBACK"),
    "status.unresolved": ("无法确定", "UNRESOLVED"),
    "rule.code": ("按智慧码", "code"),
    "rule.nearest_asset": ("最近设施", "nearest_asset"),
    "rule.ambiguity": ("歧义", "ambiguity"),
    "rule.responsibility_rule": ("职责清单规则", "responsibility_rule"),
    "rule.jurisdiction": ("街道属地", "jurisdiction"),
    "rule.none": ("无", "none"),
    "level.pilot": ("试点区", "pilot zone"),
    "level.contract": ("合同片区", "contract area"),
    "level.grid": ("网格", "grid"),
    "level.community": ("社区", "community"),
    "level.street": ("街道", "street"),
    "level.none": ("全区", "whole district"),
    "geometry.point": ("点状", "point"),
    "geometry.line": ("线状", "line"),
    "geometry.polygon": ("面状", "polygon"),
    # parties
    "who.none": ("未登记", "none recorded"),
    "who.unverified": ("（未核实）", " (unverified)"),
    "who.phone": ("，电话 {phone}", ", tel {phone}"),
    "metres": ("{value:.1f} 米", "{value:.1f} m"),
    "any_class": ("任意类别", "any class"),
    "class_with_code": ("{name}（{code}）", "{name} ({code})"),
    "list_sep": ("、", ", "),
    "no_zone": ("不在任何区域", "no zone"),
    "zone": ("{level} {name}", "{level} {name}"),
    # the location line (registry.resolution)
    "location": ("位置（经度 {lon:.6f}，纬度 {lat:.6f}）", "location (lon {lon:.6f}, lat {lat:.6f})"),
    "location.from": ("，由 {crs} 坐标 ({x:g}, {y:g}) 换算", ", from {crs} ({x:g}, {y:g})"),
    "location.when": ("，时间 {when}", ", as of {when}"),
    "location.now": ("当前", "now"),
    "location.category": ("；案件类别 {category}", "; category {category}"),
    # step 1
    "step1.found": (
        "第1步 最近设施：{cls} {code}，距离 {distance}（{geometry}设施容差 {tolerance:g} 米；"
        "{what}共 {count} 个候选）；权属单位 {owner}",
        "step 1 nearest asset: {cls} {code} at {distance} (within {tolerance:g} m for {geometry} assets; "
        "{count} candidate(s) of {what}); owner {owner}",
    ),
    "step1.skipped": (
        "第1步 最近设施：跳过：案件类别 {category} 不涉及部件类别（按职责清单或属地派遣，而非附近设施）",
        "step 1 nearest asset: skipped: category {category} concerns no component class "
        "(it is routed by responsibility rules or jurisdiction, not by a nearby asset)",
    ),
    "step1.none": (
        "第1步 最近设施：{tolerances} 米内没有{in_use}{what}设施",
        "step 1 nearest asset: no {in_use}asset of {what} within {tolerances} m",
    ),
    "step1.in_use": ("在用的", "in-use "),
    # step 2
    "step2.rival": ("{code}（距离 {distance}，权属单位 {owner}）", "{code} at {distance} owned by {owner}"),
    "step2.ambiguous": (
        "第2步 歧义：距最近设施 {margin:.1f} 米内有其他权属单位的设施：{names}；"
        "不作选择：请现场核实投诉针对哪一设施",
        "step 2 ambiguity: assets of other owners lie within {margin:.1f} m of the nearest: {names}; "
        "not choosing one: check on site which asset the complaint is about",
    ),
    "step2.clear": (
        "第2步 歧义：无（距最近设施 {margin:.1f} 米内没有其他权属单位的设施）",
        "step 2 ambiguity: none (no asset of another owner within {margin:.1f} m of the nearest)",
    ),
    "step2.no_owner": (
        "第2步 最近设施没有登记权属单位（无主）：查找{cls}的职责清单规则",
        "step 2 the nearest asset has no registered owner (无主): "
        "looking for a responsibility rule for {cls}",
    ),
    # step 3
    "step3.tied_rule": ("规则 #{id} → {unit}", "rule #{id} -> {unit}"),
    "step3.tied": (
        "第3步 职责清单：{count} 条优先级和具体程度相同的规则指向不同单位（{names}）：请修正规则；不作选择",
        "step 3 responsibility rules: {count} rules of equal priority and specificity name different "
        "units ({names}): fix the rules; not choosing one",
    ),
    "step3.matched": (
        "第3步 职责清单规则 #{id}：{scope} → {unit}"
        "（优先级 {priority}；此处适用 {count} 条规则，位于 {zones}）",
        "step 3 responsibility rule #{id}: {scope} -> {unit} "
        "(priority {priority}; {count} rule(s) apply here, in {zones})",
    ),
    "step3.none": (
        "第3步 职责清单：{zones} 内没有适用于 {scope}{category} 的规则",
        "step 3 responsibility rules: none for {scope}{category} in {zones}",
    ),
    "step3.none_category": (" / 案件类别 {category}", " / category {category}"),
    "rule_scope": ("{zone}，{what}", "{zone}, {what}"),
    "rule_scope.class": ("类别 {name}（{code}）", "class {name} ({code})"),
    "rule_scope.category": ("，案件类别 {category}", ", category {category}"),
    # step 4 and 5
    "step4.street_unit": ("{name} → {unit}", "{name} -> {unit}"),
    "step4.boundary": (
        "第4步 属地：该点位于多个街道的交界处（{names}）",
        "step 4 jurisdiction: the point lies on the boundary of several streets ({names})",
    ),
    "step4.fallback": (
        "第4步 属地兜底：街道 {name} → {unit}",
        "step 4 jurisdiction (属地兜底): street {name} -> {unit}",
    ),
    "step4.no_office": (
        "第4步 属地：街道 {name} 未登记负责的街道办事处",
        "step 4 jurisdiction: street {name} has no responsible street office recorded",
    ),
    "reason.no_office": ("街道区域 {name} 没有负责单位", "street zone {name} has no responsible unit"),
    "step4.no_street": (
        "第4步 属地：该点不在任何街道区域内",
        "step 4 jurisdiction: the point lies in no street zone",
    ),
    "reason.no_street": ("该点不在任何街道区域内", "the point lies in no street zone"),
    "step4.outside": (
        "第4步 属地：该点在所有区域之外",
        "step 4 jurisdiction: the point lies outside every zone",
    ),
    "reason.outside": ("该点在所有区域之外", "the point lies outside every zone"),
    "unresolved": (
        "无法确定：{reason}；没有设施或规则能确定{scope}的责任单位",
        "unresolved: {reason}; no asset and no rule for {scope} decide it",
    ),
    # a scanned code
    "code.line": (
        "智慧码 {code}：{cls}（{class_code}），已登记，状态 {state}{out_of_use}",
        "code {code}: {cls} ({class_code}), registered, state {state}{out_of_use}",
    ),
    "public.code": ("智慧码 {code}：{cls}（{class_code}）", "code {code}: {cls} ({class_code})"),
    "public.state": ("，状态 {state}", ", state {state}"),
    "public.out_of_use": ("，{when} 起停用", ", out of use since {when}"),
    "code.out_of_use": ("，{when} 注销：{reason}", ", decommissioned {when}: {reason}"),
    "code.no_reason": ("未说明原因", "no reason given"),
    "code.not_installed": (
        "{when} 时该设施尚未安装（安装日期 {installed}）",
        "at {when} the asset was not yet installed (installed {installed})",
    ),
    "code.decommissioned_then": ("{when} 时该设施已注销", "at {when} the asset was already decommissioned"),
    "code.not_covered": (
        "该设施没有覆盖 {when} 的责任期",
        "no responsibility period of this asset covers {when}",
    ),
    "code.parties_then": (
        "以下为 {when} 时的责任单位（当时的责任期）",
        "parties as of {when} (responsibility period then)",
    ),
    "code.out_of_use_parties": (
        "该设施已停用；显示其最后的责任单位",
        "the asset is out of use; its last responsible parties are shown",
    ),
    "code.parties": (
        "权属单位：{owner}；养护单位：{maintainer}；主管部门：{supervisor}",
        "owner: {owner}; maintainer: {maintainer}; supervisor: {supervisor}",
    ),
    "code.no_owner": (
        "该设施未登记权属单位：请联系养护单位或主管部门，或上报此情况",
        "no owner is recorded for this asset: use the maintainer or supervisor, or report it",
    ),
}


def check_lang(value: str | None) -> Lang:
    """``value`` as a supported language (``zh`` or ``en``; ``zh-CN``, ``en_US`` and the like accepted)."""
    if not value:
        return DEFAULT_LANG
    short = value.strip().lower().replace("_", "-").split("-")[0]
    if short == "zh":
        return "zh"
    if short == "en":
        return "en"
    raise ValueError(f"unknown language {value!r}: use zh (中文) or en (English)")


def text(lang: str, key: str, **params: Any) -> str:
    """The message ``key`` in ``lang`` with ``params`` filled in."""
    zh, en = _CATALOGUE[key]
    return (en if lang == "en" else zh).format(**params)


def all_keys() -> list[str]:
    """Every message key (the tests check each has both languages and the same placeholders)."""
    return list(_CATALOGUE)


def template(lang: str, key: str) -> str:
    """The unfilled template of ``key`` in ``lang``."""
    zh, en = _CATALOGUE[key]
    return en if lang == "en" else zh


def when(value: dt.datetime | None, lang: str, timezone: str) -> str:
    """A time as the explanation shows it: ISO 8601 in English, local wall time with offset in Chinese."""
    if value is None:
        return text(lang, "location.now")
    if lang == "en":
        return value.isoformat()
    local = value.astimezone(zoneinfo.ZoneInfo(timezone))
    return f"{local:%Y-%m-%d %H:%M:%S} {local.isoformat()[-6:]}"
