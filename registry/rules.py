"""Responsibility rules (职责清单): inside a zone, a component class or complaint category is a unit's job.

A rule names its zone by level and name (no zone: the whole deployment), an optional class and an
optional category (empty: any), the responsible unit, a priority and a validity period. At most one
rule per (zone, class, category) is valid at any moment (a database exclusion constraint), so a new
version of a rule closes the previous one. How rules are chosen is in ``registry.resolution``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.errors import InvalidInput, NotFound
from registry import audit, validity
from registry import categories as category_service
from registry import classes as class_service
from registry import units as unit_service
from registry import zones as zone_service
from registry.access import Action, Actor, require
from registry.messages import Bilingual, both, in_lang

CSV_COLUMNS = ("zone", "level", "class", "category", "unit", "priority")
OPTIONAL_COLUMNS = ("valid_from", "valid_to", "note")

_RULE_COLUMNS = (
    "r.id, r.zone_level, r.zone_name, r.class_code, c.name AS class_name, r.category, r.unit_id, "
    "u.name AS unit_name, r.priority, nullif(r.valid_from, '-infinity') AS valid_from, r.valid_to, r.note, "
    "r.created_at, r.actor, r.reason, r.dispute_id, r.ended_by_dispute_id"
)
_FROM = (
    "FROM responsibility_rules r JOIN units u ON u.id = r.unit_id "
    "LEFT JOIN component_classes c ON c.code = r.class_code"
)


@dataclass
class RuleInput:
    """One rule as a client or a CSV row states it (class and category by code, name or alias)."""

    unit: str | None = None
    unit_id: int | None = None
    zone: str | None = None
    level: str | None = None
    class_: str | None = None
    category: str | None = None
    priority: int = 0
    valid_from: dt.datetime | None = None
    valid_to: dt.datetime | None = None
    note: str | None = None


def rule_view(row: Any) -> dict[str, Any]:
    """The JSON form of a rule."""
    return {
        "id": row.id,
        "zone": {"level": row.zone_level, "name": row.zone_name} if row.zone_level else None,
        "class": {"code": row.class_code, "name": row.class_name} if row.class_code else None,
        "category": row.category,
        "unit": {"id": row.unit_id, "name": row.unit_name},
        "priority": row.priority,
        "valid_from": validity.bound(row.valid_from),
        "valid_to": validity.bound(row.valid_to),
        "note": row.note,
        "created_at": row.created_at.isoformat(),
        "actor": row.actor,
        "reason": row.reason,
        # The upheld disputes that created this version and that ended it (migration 0027).
        "dispute_id": row.dispute_id,
        "ended_by_dispute_id": row.ended_by_dispute_id,
    }


def get_rule(session: Session, rule_id: int) -> dict[str, Any]:
    """One rule by id, or ``NotFound``."""
    row = session.execute(text(f"SELECT {_RULE_COLUMNS} {_FROM} WHERE r.id = :id"), {"id": rule_id}).first()
    if row is None:
        raise NotFound(both("err.rule.none", id=rule_id), rule_id=rule_id)
    return rule_view(row)


def list_rules(
    session: Session,
    *,
    zone: str | None = None,
    level: str | None = None,
    unit_id: int | None = None,
    versions: validity.Versions = validity.Versions(),
) -> tuple[list[dict[str, Any]], int]:
    """The rule ``versions`` asked for (default: those valid now, first page), filtered by zone and unit."""
    where: dict[str, tuple[str, Any]] = {}
    if zone:
        where["zone"] = ("r.zone_name = :zone", zone.strip())
    if level:
        where["level"] = ("r.zone_level = :level", zone_service.check_level(level))
    if unit_id is not None:
        where["unit"] = ("r.unit_id = :unit", unit_id)
    rows, total = validity.list_versions(
        session,
        columns=_RULE_COLUMNS,
        source=_FROM.removeprefix("FROM "),
        alias="r",
        where=where,
        order="r.zone_level NULLS FIRST, r.zone_name, r.priority DESC, r.id",
        versions=versions,
    )
    return [rule_view(row) for row in rows], total


@dataclass
class _Resolved:
    level: str | None
    zone: str | None
    class_code: str | None
    category: str | None
    unit_id: int
    unit_created: str | None


def _resolve_input(session: Session, actor: Actor, data: RuleInput, county: str) -> _Resolved:
    """Check a rule's references and turn names into keys; ``InvalidInput`` names what is wrong."""
    zone = (data.zone or "").strip() or None
    level = (data.level or "").strip().lower() or None
    if level is not None:
        level = zone_service.check_level(level)
    if zone is None and level is not None:
        raise InvalidInput(both("err.rule.level_alone", level=level), field="zone")
    if zone is not None:
        if level is None:
            levels = zone_service.zone_levels_named(session, zone, county)
            if len(levels) != 1:
                if levels:
                    found = both("err.rule.zone_levels", zone=zone, levels=", ".join(levels))
                else:
                    found = both("err.rule.zone_unknown", zone=zone)
                raise InvalidInput(found, field="level")
            level = levels[0]
        elif not zone_service.zone_exists(session, level, zone, county):
            raise InvalidInput(
                both("err.rule.zone_missing", level=both(f"level.{level}"), zone=zone), field="zone"
            )
    class_code = None
    if data.class_ and data.class_.strip():
        cls = class_service.find_class(session, data.class_)
        if cls is None:
            raise InvalidInput(both("err.rule.class", name=data.class_), field="class")
        class_code = cls.code
    category = None
    if data.category and data.category.strip():
        found_category = category_service.find_category(session, data.category)
        if found_category is None:
            raise InvalidInput(both("err.rule.category", name=data.category), field="category")
        category = found_category["name"]
    unit_created = None
    if data.unit_id is not None:
        unit_service.get_unit(session, data.unit_id)
        unit_id = data.unit_id
    elif data.unit and data.unit.strip():
        unit, new = unit_service.ensure_unit(session, data.unit, actor, county)
        unit_id = unit.id
        unit_created = unit.name if new else None
    else:
        raise InvalidInput(both("err.rule.unit"), field="unit")
    return _Resolved(level, zone, class_code, category, unit_id, unit_created)


def save_rule(
    session: Session,
    actor: Actor,
    data: RuleInput,
    *,
    county: str,
    reason: str | None = None,
    dispute_id: int | None = None,
) -> tuple[dict[str, Any], str, str | None]:
    """Save a rule: 'created', 'replaced' (the previous version is closed) or 'unchanged'; plus a new unit.

    ``dispute_id``: the upheld dispute that orders it, recorded on the new version and the closed one.
    """
    require(actor, Action.MANAGE_RULES)
    ref = _resolve_input(session, actor, data, county)
    for bound in (data.valid_from, data.valid_to):
        if bound is not None and bound.tzinfo is None:
            raise InvalidInput(both("err.rule.time_zone"))
    key = {"c": county, "l": ref.level, "z": ref.zone, "cls": ref.class_code, "cat": ref.category}
    current = session.execute(
        text(
            "SELECT id, unit_id, priority, note, nullif(valid_from, '-infinity') AS valid_from "
            "FROM responsibility_rules WHERE county_code = :c "
            "AND zone_level IS NOT DISTINCT FROM :l AND zone_name IS NOT DISTINCT FROM :z "
            "AND class_code IS NOT DISTINCT FROM :cls AND category IS NOT DISTINCT FROM :cat "
            "AND valid_to IS NULL FOR UPDATE"
        ),
        key,
    ).first()
    if (
        current is not None
        and current.unit_id == ref.unit_id
        and current.priority == data.priority
        and data.valid_to is None
    ):
        return get_rule(session, current.id), "unchanged", ref.unit_created
    now = session.execute(text("SELECT now()")).scalar_one()
    valid_from: dt.datetime | str = data.valid_from or (now if current is not None else "-infinity")
    if current is not None:
        if (
            isinstance(valid_from, dt.datetime)
            and current.valid_from is not None
            and valid_from <= current.valid_from
        ):
            raise InvalidInput(
                both("err.rule.start", id=current.id, start=current.valid_from.isoformat()),
                field="valid_from",
            )
        session.execute(
            text("UPDATE responsibility_rules SET valid_to = :t, ended_by_dispute_id = :d WHERE id = :id"),
            {"t": valid_from, "d": dispute_id, "id": current.id},
        )
    try:
        with session.begin_nested():
            rule_id = session.execute(
                text(
                    "INSERT INTO responsibility_rules (county_code, zone_level, zone_name, class_code, "
                    "category, unit_id, priority, valid_from, valid_to, note, actor, reason, dispute_id) "
                    "VALUES (:c, :l, :z, :cls, :cat, "
                    ":u, :p, :vf, :vt, :note, :actor, :reason, :dispute) RETURNING id"
                ),
                {
                    **key,
                    "u": ref.unit_id,
                    "p": data.priority,
                    "vf": valid_from,
                    "vt": data.valid_to,
                    "note": data.note,
                    "actor": actor.name,
                    "reason": reason,
                    "dispute": dispute_id,
                },
            ).scalar_one()
    except IntegrityError as exc:
        raise InvalidInput(both("err.rule.overlap", why=exc.orig)) from exc
    outcome = "replaced" if current is not None else "created"
    audit.record(
        session,
        actor,
        "create" if outcome == "created" else "new_version",
        "rule",
        rule_id,
        reason=reason,
        details={
            **key,
            "unit_id": ref.unit_id,
            "priority": data.priority,
            "previous_id": current.id if current else None,
        },
    )
    return get_rule(session, rule_id), outcome, ref.unit_created


def close_rule(
    session: Session,
    actor: Actor,
    rule_id: int,
    *,
    at: dt.datetime | None = None,
    reason: str | None = None,
    dispute_id: int | None = None,
) -> dict[str, Any]:
    """End a rule's validity at ``at`` (default now); ``dispute_id``: the upheld dispute that orders it."""
    require(actor, Action.MANAGE_RULES)
    current = get_rule(session, rule_id)
    validity.close_version(
        session, actor, kind="rule", table="responsibility_rules", current=current, at=at, reason=reason
    )
    if dispute_id is not None:
        session.execute(
            text("UPDATE responsibility_rules SET ended_by_dispute_id = :d WHERE id = :id"),
            {"d": dispute_id, "id": rule_id},
        )
    return get_rule(session, rule_id)


@dataclass
class RuleImportReport:
    """What a rules CSV import did."""

    file: str
    created: list[int] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    units_created: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "file": self.file,
            "created": self.created,
            "replaced": self.replaced,
            "unchanged": self.unchanged,
            "units_created": self.units_created,
        }


def _parse_time(value: str, column: str) -> dt.datetime | None:
    if not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidInput(both("err.rule.time", column=column, value=value)) from exc
    if parsed.tzinfo is None:
        raise InvalidInput(both("err.rule.time_no_zone", column=column, value=value))
    return parsed


def import_rules_csv(
    session: Session,
    actor: Actor,
    content: str,
    *,
    county: str,
    file: str = "rules.csv",
    reason: str | None = None,
) -> RuleImportReport:
    """Import a rules CSV (columns zone,level,class,category,unit,priority), all rows or none."""
    require(actor, Action.MANAGE_RULES)
    content = content.lstrip("\ufeff")  # Excel writes a BOM before UTF-8 CSV
    try:
        # newline="": the csv module reads the line ends itself (a lone CR, a newline in a quoted cell).
        rows = list(csv.reader(io.StringIO(content, newline="")))
    except csv.Error as exc:  # a NUL byte, a CR inside an unquoted cell...
        raise InvalidInput(both("err.rule.csv", file=file, why=exc), file=file) from exc
    header = [h.strip().lower() for h in (rows[0] if rows else [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise InvalidInput(
            both(
                "err.rule.columns",
                file=file,
                missing=", ".join(missing),
                expected=",".join(CSV_COLUMNS),
                optional=", ".join(OPTIONAL_COLUMNS),
            ),
            file=file,
        )
    report = RuleImportReport(file=file)
    problems: list[str] = []
    seen: dict[tuple[str, ...], int] = {}
    for number, cells in enumerate(rows[1:], start=2):
        values = {k: v.strip() for k, v in zip(header, cells, strict=False)}
        if not any(values.values()):
            continue
        key = tuple(values.get(c, "") for c in ("zone", "level", "class", "category"))
        if key in seen:
            problems.append(both("err.rule.row", row=number, message=both("err.rule.same", first=seen[key])))
            continue
        seen[key] = number
        try:
            priority_text = values.get("priority", "")
            try:
                priority = int(priority_text) if priority_text else 0
            except ValueError as exc:
                raise InvalidInput(both("err.rule.priority", value=priority_text)) from exc
            data = RuleInput(
                zone=values.get("zone"),
                level=values.get("level"),
                class_=values.get("class"),
                category=values.get("category"),
                unit=values.get("unit"),
                priority=priority,
                valid_from=_parse_time(values.get("valid_from", ""), "valid_from"),
                valid_to=_parse_time(values.get("valid_to", ""), "valid_to"),
                note=values.get("note") or None,
            )
            with session.begin_nested():
                rule, outcome, new_unit = save_rule(
                    session, actor, data, county=county, reason=reason or f"imported from {file}"
                )
        except InvalidInput as exc:
            problems.append(both("err.rule.row", row=number, message=exc.message))
            continue
        getattr(report, outcome).append(rule["id"])
        if new_unit:
            report.units_created.append(new_unit)
    if not seen and not problems:
        problems.append(both("err.rule.empty"))
    if problems:
        more = both("err.rule.more", count=len(problems) - 20) if len(problems) > 20 else Bilingual("", "")
        shown = Bilingual(
            "；".join(in_lang(p, "zh") for p in problems[:20]) + more.zh,
            "; ".join(in_lang(p, "en") for p in problems[:20]) + more.en,
        )
        raise InvalidInput(both("err.rule.nothing", file=file, shown=shown), file=file, problems=problems)
    return report
