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

# A unit as answers show it: id, name, credit_code, phone, verified (serialised as is).
Unit = dict[str, Any]


def display_code(code: str) -> str:
    """The grouped printed form of a 17-digit code, e.g. ``440310-0118-000123-4``."""
    return f"{code[:6]}-{code[6:10]}-{code[10:16]}-{code[16:]}"


def who(unit: Unit | None) -> str:
    """A unit as explanation lines name it: name, unverified flag, phone."""
    if unit is None:
        return "none recorded"
    phone = f", tel {unit['phone']}" if unit.get("phone") else ""
    flag = "" if unit.get("verified", True) else " (unverified)"
    return f"{unit['name']}{flag}{phone}"


def _m(value: float) -> str:
    return f"{value:.1f} m"


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
    what = ", ".join(f"{c.name} ({c.code})" for c in classes) if classes else "any class"
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
            f"step 1 nearest asset: {cls.name} {display_code(nearest.code)} at {_m(nearest.distance)} "
            f"(within {tolerance:g} m for {cls.geometry_type} assets; "
            f"{len(candidates)} candidate(s) of {what}); "
            f"owner {who(nearest.owner)}"
        )
        margin = config.margin(nearest.distance)
        others = rivals(config, candidates)
        if others:
            names = "; ".join(
                f"{display_code(c.code)} at {_m(c.distance)} owned by {who(c.owner)}" for c in others
            )
            lines.append(
                f"step 2 ambiguity: assets of other owners lie within {margin:.1f} m of the nearest: "
                f"{names}; "
                "not choosing one: check on site which asset the complaint is about"
            )
            d.status, d.rule = STATUS_AMBIGUOUS, RULE_AMBIGUITY
            return d
        if nearest.owner is not None:
            lines.append(
                f"step 2 ambiguity: none (no asset of another owner within {margin:.1f} m of the nearest)"
            )
            d.status, d.rule = STATUS_RESOLVED, RULE_NEAREST
            d.owner, d.maintainer, d.supervisor = nearest.owner, nearest.maintainer, nearest.supervisor
            return d
        lines.append(
            f"step 2 the nearest asset has no registered owner (无主): "
            f"looking for a responsibility rule for "
            f"{cls.name}"
        )
        d.maintainer, d.supervisor = nearest.maintainer, nearest.supervisor
        rule_classes = [cls.code]
        applicable = [r for r in applicable if r.class_code in (None, cls.code)]
    elif skips_assets(category, classes):
        lines.append(
            f"step 1 nearest asset: skipped: category {category} concerns no component class "
            "(it is routed by responsibility rules or jurisdiction, not by a nearby asset)"
        )
    else:
        tolerances = sorted({config.tolerance(c.geometry_type) for c in classes}) or [
            config.point_tolerance_m
        ]
        lines.append(
            f"step 1 nearest asset: no {'in-use ' if as_of is None else ''}asset of {what} within "
            f"{'/'.join(f'{t:g}' for t in tolerances)} m"
        )
    _area_steps(d, catalog, zones, applicable, rule_classes, category)
    return d


def _area_steps(
    d: Decision,
    catalog: Mapping[str, ClassInfo],
    zones: Sequence[Zone],
    rules: list[Rule],
    rule_classes: Sequence[str],
    category: str | None,
) -> None:
    """Steps 3-5: responsibility rules, street-office jurisdiction, or unresolved with the reason."""
    lines = d.explanation
    in_zones = ", ".join(f"{LEVEL_LABEL[z.level]} {z.name}" for z in zones) or "no zone"
    if rules:
        rules.sort(key=lambda r: r.key(), reverse=True)
        best = rules[0]
        tied = [r for r in rules if r.key() == best.key()]
        d.candidates = d.candidates or [_rule_view(i, r) for i, r in enumerate(rules, 1)]
        if len({(r.unit or {}).get("id") for r in tied}) > 1:
            names = "; ".join(f"rule #{r.id} -> {who(r.unit)}" for r in tied)
            lines.append(
                f"step 3 responsibility rules: {len(tied)} rules of equal priority and specificity "
                f"name different "
                f"units ({names}): fix the rules; not choosing one"
            )
            d.status, d.rule = STATUS_AMBIGUOUS, RULE_RESPONSIBILITY
            return
        d.matched_rule = _rule_view(1, best)
        lines.append(
            f"step 3 responsibility rule #{best.id}: {_rule_scope(catalog, best)} -> {who(best.unit)} "
            f"(priority {best.priority}; {len(rules)} rule(s) apply here, in {in_zones})"
        )
        d.status, d.rule, d.owner = STATUS_RESOLVED, RULE_RESPONSIBILITY, best.unit
        return
    scope = ", ".join(rule_classes) if rule_classes else "any class"
    lines.append(
        f"step 3 responsibility rules: none for {scope}"
        + (f" / category {category}" if category else "")
        + f" in {in_zones}"
    )

    streets = [z for z in zones if z.level == "street"]
    street_units = {(z.unit or {}).get("id") for z in streets if z.unit is not None}
    if len(street_units) > 1:
        names = "; ".join(f"{z.name} -> {who(z.unit)}" for z in streets)
        lines.append(f"step 4 jurisdiction: the point lies on the boundary of several streets ({names})")
        d.candidates = d.candidates or [
            {"rank": i, "zone": {"level": "street", "name": z.name}, "unit": z.unit}
            for i, z in enumerate(streets, 1)
        ]
        d.status, d.rule = STATUS_AMBIGUOUS, RULE_JURISDICTION
        return
    if street_units:
        street = next(z for z in streets if z.unit is not None)
        lines.append(f"step 4 jurisdiction (属地兜底): street {street.name} -> {who(street.unit)}")
        d.status, d.rule, d.owner = STATUS_FALLBACK, RULE_JURISDICTION, street.unit
        return
    if streets:
        lines.append(
            f"step 4 jurisdiction: street {streets[0].name} has no responsible street office recorded"
        )
        reason = f"street zone {streets[0].name} has no responsible unit"
    elif zones:
        lines.append("step 4 jurisdiction: the point lies in no street zone")
        reason = "the point lies in no street zone"
    else:
        lines.append("step 4 jurisdiction: the point lies outside every zone")
        reason = "the point lies outside every zone"
    lines.append(f"unresolved: {reason}; no asset and no rule for {scope} decide it")
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


def _rule_scope(catalog: Mapping[str, ClassInfo], rule: Rule) -> str:
    zone = f"{LEVEL_LABEL[rule.level]} {rule.zone}" if rule.level else "whole district"
    cls = catalog.get(rule.class_code or "")
    what = f"class {cls.name} ({cls.code})" if cls else "any class"
    if rule.category:
        what += f", category {rule.category}"
    return f"{zone}, {what}"


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
    reason = row.decommission_reason or "no reason given"
    out_of_use = "" if row.in_use else f", decommissioned {_iso(row.decommissioned_at)}: {reason}"
    lines.append(f"code {code_display}: {cls.name} ({cls.code}), registered, state {row.state}{out_of_use}")
    status = STATUS_RESOLVED
    if as_of is not None:
        installed = row.installed_on
        if installed is not None and installed > as_of.astimezone(zoneinfo.ZoneInfo(config.timezone)).date():
            lines.append(f"at {as_of.isoformat()} the asset was not yet installed (installed {installed})")
        if row.decommissioned_at is not None and row.decommissioned_at <= as_of:
            lines.append(f"at {as_of.isoformat()} the asset was already decommissioned")
        if not row.covered:
            status = STATUS_UNRESOLVED
            lines.append(f"no responsibility period of this asset covers {as_of.isoformat()}")
        else:
            lines.append(f"parties as of {as_of.isoformat()} (responsibility period then)")
    if not row.in_use and (as_of is None or row.decommissioned_at is None or row.decommissioned_at <= as_of):
        lines.append("the asset is out of use; its last responsible parties are shown")
    lines.append(
        f"owner: {who(row.owner)}; maintainer: {who(row.maintainer)}; supervisor: {who(row.supervisor)}"
    )
    if row.owner is None and status == STATUS_RESOLVED:
        lines.append("no owner is recorded for this asset: use the maintainer or supervisor, or report it")
    d.status = status
    d.owner, d.maintainer, d.supervisor = row.owner, row.maintainer, row.supervisor
    return d
