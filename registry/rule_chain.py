"""The decision of a lookup, as a pure function of the rows the queries returned.

The rule chain for a location, each step recorded in the answer's ``explanation``:

1. nearest asset of the concerned classes within a tolerance that fits its geometry, nearest first;
2. ambiguity: assets of different owners nearly equally close make the answer ``ambiguous``;
3. responsibility rules (职责清单) for the class or category in the zones containing the point;
4. jurisdiction fallback (属地兜底): the street office of the street zone containing the point;
5. otherwise ``unresolved``, with the reason.

Nothing here talks to the database: :mod:`registry.resolution` runs the queries of
:mod:`registry.resolution_sql`, turns their rows into the dataclasses below and asks
:func:`decide_location` (or :func:`decide_code`) for the answer. The tests feed hand-made rows.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.settings import Settings
from registry.messages import text, when

STATUS_RESOLVED = "resolved"
STATUS_AMBIGUOUS = "ambiguous"
STATUS_FALLBACK = "fallback"
STATUS_UNRESOLVED = "unresolved"

RULE_CODE = "code"
RULE_NEAREST = "nearest_asset"
RULE_AMBIGUITY = "ambiguity"
RULE_RESPONSIBILITY = "responsibility_rule"
RULE_JURISDICTION = "jurisdiction"
RULE_NONE = "none"

# Finer or more special-purpose zones win ties between rules of equal priority and specificity.
LEVEL_RANK = {"pilot": 5, "contract": 4, "grid": 3, "community": 2, "street": 1, None: 0}
LEVEL_LABEL = {
    "pilot": "pilot zone",
    "contract": "contract area",
    "grid": "grid",
    "community": "community",
    "street": "street",
    None: "whole district",
}


def level_label(level: str | None, lang: str = "en") -> str:
    """A zone level as people read it (``street`` -> 街道)."""
    return text(lang, f"level.{level or 'none'}")


# A unit as answers show it: id, name, credit_code, phone, verified (serialised as is).
Unit = dict[str, Any]


def display_code(code: str) -> str:
    """The grouped printed form of a 17-digit code, e.g. ``440310-0118-000123-4``."""
    return f"{code[:6]}-{code[6:10]}-{code[10:16]}-{code[16:]}"


def who(unit: Unit | None, lang: str = "en") -> str:
    """A unit as explanation lines name it: name, unverified flag, phone."""
    if unit is None:
        return text(lang, "who.none")
    phone = text(lang, "who.phone", phone=unit["phone"]) if unit.get("phone") else ""
    flag = "" if unit.get("verified", True) else text(lang, "who.unverified")
    return f"{unit['name']}{flag}{phone}"


def _m(value: float, lang: str = "en") -> str:
    return text(lang, "metres", value=value)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# ------------------------------------------------------------------------------------------------
# Configuration and the rows the chain decides from
# ------------------------------------------------------------------------------------------------
# The row classes are plain slotted dataclasses (not frozen): one is built for every row of every
# lookup, and a frozen dataclass costs twice as much to build.


@dataclass(frozen=True)
class ResolveConfig:
    """Tolerances, ambiguity margins and deployment facts the resolver needs."""

    county: str
    metric_srid: int
    timezone: str
    point_tolerance_m: float
    line_tolerance_m: float
    polygon_tolerance_m: float
    ambiguity_m: float
    ambiguity_ratio: float
    candidates: int
    lang: str = "zh"  # of the explanation lines (registry.messages); machine fields stay as they are

    @classmethod
    def from_settings(cls, settings: Settings) -> ResolveConfig:
        """Read the resolution settings (``SMARTCODE_RESOLVE_*``)."""
        return cls(
            county=settings.area.county_code,
            metric_srid=settings.area.metric_srid,
            timezone=settings.area.timezone,
            point_tolerance_m=settings.resolve.point_tolerance_m,
            line_tolerance_m=settings.resolve.line_tolerance_m,
            polygon_tolerance_m=settings.resolve.polygon_tolerance_m,
            ambiguity_m=settings.resolve.ambiguity_m,
            ambiguity_ratio=settings.resolve.ambiguity_ratio,
            candidates=max(2, settings.resolve.candidates),
            lang=settings.area.lang,
        )

    def tolerance(self, geometry_type: str) -> float:
        """The search radius in metres for assets of a class with this geometry type."""
        if geometry_type == "line":
            return self.line_tolerance_m
        if geometry_type == "polygon":
            return self.polygon_tolerance_m
        return self.point_tolerance_m

    def widest_tolerance(self) -> float:
        """The search radius when no class is given: each asset is then held to its own."""
        return max(self.point_tolerance_m, self.line_tolerance_m, self.polygon_tolerance_m)

    def margin(self, nearest_m: float) -> float:
        """How much farther than the nearest asset another one may be and still count as 'as close'."""
        return max(self.ambiguity_m, nearest_m * (self.ambiguity_ratio - 1.0))


@dataclass(frozen=True)
class ClassInfo:
    """What the resolver needs of a component class."""

    code: str
    name: str
    geometry_type: str


@dataclass(slots=True)
class Candidate:
    """An asset near the point, with its parties (as of the lookup's time)."""

    code: str
    class_code: str
    state: str
    in_use: bool
    distance: float
    owner: Unit | None
    maintainer: Unit | None = None
    supervisor: Unit | None = None


@dataclass(slots=True)
class Zone:
    """A zone containing the point, with its responsible unit."""

    id: int
    level: str
    name: str
    code: str | None
    unit: Unit | None


@dataclass(slots=True)
class Rule:
    """A responsibility rule that applies at the point (its zone contains it, or it is district-wide)."""

    id: int
    level: str | None
    zone: str | None
    class_code: str | None
    category: str | None
    priority: int
    unit: Unit | None

    def key(self) -> tuple[int, int, int]:
        """Sort key, greatest wins: priority, then specificity (category, class), then the finer zone."""
        specificity = (2 if self.category else 0) + (1 if self.class_code else 0)
        return (self.priority, specificity, LEVEL_RANK.get(self.level, 0))


@dataclass(slots=True)
class CodeRow:
    """The asset a code names, with its parties (as of the lookup's time)."""

    code: str
    class_code: str
    state: str
    in_use: bool
    decommissioned_at: dt.datetime | None
    decommission_reason: str | None
    lon: float
    lat: float
    installed_on: dt.date | None
    covered: bool  # a responsibility period covers the lookup's time (always true for "now")
    owner: Unit | None
    maintainer: Unit | None
    supervisor: Unit | None


@dataclass
class Decision:
    """The answer's verdict, parties and explanation lines; ``asset_code`` goes to the log."""

    status: str = STATUS_UNRESOLVED
    rule: str = RULE_NONE
    asset: dict[str, Any] | None = None
    owner: Unit | None = None
    maintainer: Unit | None = None
    supervisor: Unit | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    zones: list[dict[str, Any]] = field(default_factory=list)
    matched_rule: dict[str, Any] | None = None
    explanation: list[str] = field(default_factory=list)
    reason: str | None = None

    @property
    def asset_code(self) -> str | None:
        """The code of the asset the answer is about, if any."""
        return self.asset["code"] if self.asset else None


# ------------------------------------------------------------------------------------------------
# Steps 1 and 2
# ------------------------------------------------------------------------------------------------


def skips_assets(category: str | None, classes: Sequence[ClassInfo]) -> bool:
    """True for a category that concerns no class: it is not about whatever asset is nearest."""
    return category is not None and not classes


def nearest_candidates(
    config: ResolveConfig, catalog: Mapping[str, ClassInfo], found: Iterable[Candidate]
) -> list[Candidate]:
    """Step 1's candidates: each within the tolerance of its own geometry kind, nearest first, capped."""
    kept = [c for c in found if c.distance <= config.tolerance(catalog[c.class_code].geometry_type)]
    kept.sort(key=lambda c: (c.distance, c.code))
    return kept[: config.candidates]


def rivals(config: ResolveConfig, candidates: Sequence[Candidate]) -> list[Candidate]:
    """Step 2: assets of other owners nearly as close as the nearest (``candidates`` sorted)."""
    nearest = candidates[0]
    margin = config.margin(nearest.distance)
    owner_id = (nearest.owner or {}).get("id")
    return [
        c
        for c in candidates[1:]
        if (c.owner or {}).get("id") != owner_id and c.distance - nearest.distance <= margin
    ]


def missing_rule_class(
    config: ResolveConfig, candidates: Sequence[Candidate], fetched_classes: Sequence[str]
) -> str | None:
    """The class whose rules step 3 will need but that were not fetched with the location's rows.

    That happens when the nearest asset has no owner and no rival and was found without naming its
    class (a lookup for any class fetches only the class-less rules).
    """
    if not candidates or candidates[0].owner is not None or rivals(config, candidates):
        return None
    code = candidates[0].class_code
    return None if code in fetched_classes else code


# ------------------------------------------------------------------------------------------------
# The chain for a location
# ------------------------------------------------------------------------------------------------


def decide_location(
    config: ResolveConfig,
    catalog: Mapping[str, ClassInfo],
    *,
    classes: Sequence[ClassInfo],
    category: str | None,
    as_of: dt.datetime | None,
    candidates: Sequence[Candidate],
    zones: Sequence[Zone],
    rules: Sequence[Rule],
) -> Decision:
    """Steps 1-5 for a location, from its candidates (see :func:`nearest_candidates`), zones and rules.

    ``rules`` must hold the rules for the nearest asset's class when it has no owner
    (:func:`missing_rule_class` says when to fetch them).
    """
    zones = sorted(zones, key=lambda z: -LEVEL_RANK.get(z.level, 0))
    d = Decision(zones=[_zone_view(z) for z in zones])
    lines = d.explanation
    lang = config.lang
    what = (
        text(lang, "list_sep").join(text(lang, "class_with_code", name=c.name, code=c.code) for c in classes)
        if classes
        else text(lang, "any_class")
    )
    rule_classes = [c.code for c in classes]
    applicable = list(rules)
    if candidates:
        d.candidates = [_candidate_view(catalog, i, c) for i, c in enumerate(candidates, start=1)]
        nearest = candidates[0]
        cls = catalog[nearest.class_code]
        d.asset = {
            "code": nearest.code,
            "code_display": display_code(nearest.code),
            "class": {"code": cls.code, "name": cls.name, "geometry_type": cls.geometry_type},
            "state": nearest.state,
            "in_use": nearest.in_use,
            "distance_m": round(nearest.distance, 2),
        }
        tolerance = config.tolerance(cls.geometry_type)
        lines.append(
            text(
                lang,
                "step1.found",
                cls=cls.name,
                code=display_code(nearest.code),
                distance=_m(nearest.distance, lang),
                tolerance=tolerance,
                geometry=text(lang, f"geometry.{cls.geometry_type}"),
                count=len(candidates),
                what=what,
                owner=who(nearest.owner, lang),
            )
        )
        margin = config.margin(nearest.distance)
        others = rivals(config, candidates)
        if others:
            names = "; ".join(
                text(
                    lang,
                    "step2.rival",
                    code=display_code(c.code),
                    distance=_m(c.distance, lang),
                    owner=who(c.owner, lang),
                )
                for c in others
            )
            lines.append(text(lang, "step2.ambiguous", margin=margin, names=names))
            d.status, d.rule = STATUS_AMBIGUOUS, RULE_AMBIGUITY
            return d
        if nearest.owner is not None:
            lines.append(text(lang, "step2.clear", margin=margin))
            d.status, d.rule = STATUS_RESOLVED, RULE_NEAREST
            d.owner, d.maintainer, d.supervisor = nearest.owner, nearest.maintainer, nearest.supervisor
            return d
        lines.append(text(lang, "step2.no_owner", cls=cls.name))
        d.maintainer, d.supervisor = nearest.maintainer, nearest.supervisor
        rule_classes = [cls.code]
        applicable = [r for r in applicable if r.class_code in (None, cls.code)]
    elif skips_assets(category, classes):
        lines.append(text(lang, "step1.skipped", category=category))
    else:
        tolerances = sorted({config.tolerance(c.geometry_type) for c in classes}) or [
            config.point_tolerance_m
        ]
        lines.append(
            text(
                lang,
                "step1.none",
                in_use=text(lang, "step1.in_use") if as_of is None else "",
                what=what,
                tolerances="/".join(f"{t:g}" for t in tolerances),
            )
        )
    _area_steps(d, catalog, zones, applicable, rule_classes, category, lang)
    return d


def _area_steps(
    d: Decision,
    catalog: Mapping[str, ClassInfo],
    zones: Sequence[Zone],
    rules: list[Rule],
    rule_classes: Sequence[str],
    category: str | None,
    lang: str = "en",
) -> None:
    """Steps 3-5: responsibility rules, street-office jurisdiction, or unresolved with the reason."""
    lines = d.explanation
    in_zones = text(lang, "list_sep").join(
        text(lang, "zone", level=level_label(z.level, lang), name=z.name) for z in zones
    ) or text(lang, "no_zone")
    if rules:
        rules.sort(key=lambda r: r.key(), reverse=True)
        best = rules[0]
        tied = [r for r in rules if r.key() == best.key()]
        d.candidates = d.candidates or [_rule_view(i, r) for i, r in enumerate(rules, 1)]
        if len({(r.unit or {}).get("id") for r in tied}) > 1:
            names = "; ".join(text(lang, "step3.tied_rule", id=r.id, unit=who(r.unit, lang)) for r in tied)
            lines.append(text(lang, "step3.tied", count=len(tied), names=names))
            d.status, d.rule = STATUS_AMBIGUOUS, RULE_RESPONSIBILITY
            return
        d.matched_rule = _rule_view(1, best)
        lines.append(
            text(
                lang,
                "step3.matched",
                id=best.id,
                scope=_rule_scope(catalog, best, lang),
                unit=who(best.unit, lang),
                priority=best.priority,
                count=len(rules),
                zones=in_zones,
            )
        )
        d.status, d.rule, d.owner = STATUS_RESOLVED, RULE_RESPONSIBILITY, best.unit
        return
    scope = text(lang, "list_sep").join(rule_classes) if rule_classes else text(lang, "any_class")
    lines.append(
        text(
            lang,
            "step3.none",
            scope=scope,
            category=text(lang, "step3.none_category", category=category) if category else "",
            zones=in_zones,
        )
    )

    streets = [z for z in zones if z.level == "street"]
    street_units = {(z.unit or {}).get("id") for z in streets if z.unit is not None}
    if len(street_units) > 1:
        names = "; ".join(
            text(lang, "step4.street_unit", name=z.name, unit=who(z.unit, lang)) for z in streets
        )
        lines.append(text(lang, "step4.boundary", names=names))
        d.candidates = d.candidates or [
            {"rank": i, "zone": {"level": "street", "name": z.name}, "unit": z.unit}
            for i, z in enumerate(streets, 1)
        ]
        d.status, d.rule = STATUS_AMBIGUOUS, RULE_JURISDICTION
        return
    if street_units:
        street = next(z for z in streets if z.unit is not None)
        lines.append(text(lang, "step4.fallback", name=street.name, unit=who(street.unit, lang)))
        d.status, d.rule, d.owner = STATUS_FALLBACK, RULE_JURISDICTION, street.unit
        return
    if streets:
        lines.append(text(lang, "step4.no_office", name=streets[0].name))
        reason = text(lang, "reason.no_office", name=streets[0].name)
    elif zones:
        lines.append(text(lang, "step4.no_street"))
        reason = text(lang, "reason.no_street")
    else:
        lines.append(text(lang, "step4.outside"))
        reason = text(lang, "reason.outside")
    lines.append(text(lang, "unresolved", reason=reason, scope=scope))
    d.reason = reason


def _zone_view(z: Zone) -> dict[str, Any]:
    return {"id": z.id, "level": z.level, "name": z.name, "code": z.code, "unit": z.unit}


def _candidate_view(catalog: Mapping[str, ClassInfo], rank: int, c: Candidate) -> dict[str, Any]:
    info = catalog[c.class_code]
    return {
        "rank": rank,
        "code": c.code,
        "code_display": display_code(c.code),
        "class": {"code": info.code, "name": info.name},
        "distance_m": round(c.distance, 2),
        "owner": c.owner,
    }


def _rule_scope(catalog: Mapping[str, ClassInfo], rule: Rule, lang: str = "en") -> str:
    zone = (
        text(lang, "zone", level=level_label(rule.level, lang), name=rule.zone)
        if rule.level
        else level_label(None, lang)
    )
    cls = catalog.get(rule.class_code or "")
    what = text(lang, "rule_scope.class", name=cls.name, code=cls.code) if cls else text(lang, "any_class")
    if rule.category:
        what += text(lang, "rule_scope.category", category=rule.category)
    return text(lang, "rule_scope", zone=zone, what=what)


def _rule_view(rank: int, rule: Rule) -> dict[str, Any]:
    return {
        "rank": rank,
        "rule_id": rule.id,
        "zone": {"level": rule.level, "name": rule.zone} if rule.level else None,
        "class": rule.class_code,
        "category": rule.category,
        "priority": rule.priority,
        "unit": rule.unit,
    }


# ------------------------------------------------------------------------------------------------
# A scanned code
# ------------------------------------------------------------------------------------------------


def decide_code(config: ResolveConfig, cls: ClassInfo, row: CodeRow, as_of: dt.datetime | None) -> Decision:
    """The answer for a registered code: the asset and its parties (as of ``as_of``), explained."""
    code_display = display_code(row.code)
    asset = {
        "code": row.code,
        "code_display": code_display,
        "class": {"code": cls.code, "name": cls.name, "geometry_type": cls.geometry_type},
        "state": row.state,
        "in_use": row.in_use,
        "decommissioned_at": _iso(row.decommissioned_at),
        "decommission_reason": row.decommission_reason,
        "position": {"lon": round(row.lon, 6), "lat": round(row.lat, 6)},
        "distance_m": None,
    }
    d = Decision(rule=RULE_CODE, asset=asset)
    lines = d.explanation
    lang, tz = config.lang, config.timezone
    reason = row.decommission_reason or text(lang, "code.no_reason")
    out_of_use = (
        ""
        if row.in_use
        else text(
            lang,
            "code.out_of_use",
            when=when(row.decommissioned_at, lang, tz) if row.decommissioned_at else None,
            reason=reason,
        )
    )
    lines.append(
        text(
            lang,
            "code.line",
            code=code_display,
            cls=cls.name,
            class_code=cls.code,
            state=row.state,
            out_of_use=out_of_use,
        )
    )
    status = STATUS_RESOLVED
    if as_of is not None:
        then = when(as_of, lang, tz)
        installed = row.installed_on
        if installed is not None and installed > as_of.astimezone(zoneinfo.ZoneInfo(config.timezone)).date():
            lines.append(text(lang, "code.not_installed", when=then, installed=installed))
        if row.decommissioned_at is not None and row.decommissioned_at <= as_of:
            lines.append(text(lang, "code.decommissioned_then", when=then))
        if not row.covered:
            status = STATUS_UNRESOLVED
            lines.append(text(lang, "code.not_covered", when=then))
        else:
            lines.append(text(lang, "code.parties_then", when=then))
    if not row.in_use and (as_of is None or row.decommissioned_at is None or row.decommissioned_at <= as_of):
        lines.append(text(lang, "code.out_of_use_parties"))
    lines.append(
        text(
            lang,
            "code.parties",
            owner=who(row.owner, lang),
            maintainer=who(row.maintainer, lang),
            supervisor=who(row.supervisor, lang),
        )
    )
    if row.owner is None and status == STATUS_RESOLVED:
        lines.append(text(lang, "code.no_owner"))
    d.status = status
    d.owner, d.maintainer, d.supervisor = row.owner, row.maintainer, row.supervisor
    return d
