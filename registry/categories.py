"""Complaint categories (案件类别): which component classes a case-system event category concerns.

Shipped defaults live in ``registry/data/categories.toml`` (seeded by migration 0002); each deployment
then manages its own list here (API ``/api/v1/categories``, CLI ``smartcode categories``).
"""

from __future__ import annotations

import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from common.errors import Conflict, InvalidInput, NotFound
from registry import audit
from registry import classes as class_service
from registry.access import Action, Actor, require
from registry.names import fold

DEFAULTS_PATH = Path(__file__).resolve().parent / "data" / "categories.toml"

_COLUMNS = "name, class_codes, aliases, description, active, version, created_at, updated_at"


@dataclass(frozen=True)
class CategoryDef:
    """One category as written in a file or sent by a client (classes may be codes or names)."""

    name: str
    classes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def load_defaults(path: Path = DEFAULTS_PATH) -> list[CategoryDef]:
    """The categories of a TOML file shaped like the shipped ``categories.toml``."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read category file {path}: {exc}") from exc
    entries = data.get("category", [])
    if not isinstance(entries, list):
        raise InvalidInput(f"{path}: expected [[category]] tables")
    out = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not str(entry.get("name", "")).strip():
            raise InvalidInput(f"{path}: category #{number} has no name")
        out.append(
            CategoryDef(
                name=str(entry["name"]),
                classes=tuple(str(c) for c in entry.get("classes", [])),
                aliases=tuple(str(a) for a in entry.get("aliases", [])),
                description=entry.get("description"),
            )
        )
    return out


def category_view(row: Any) -> dict[str, Any]:
    """The JSON form of a category row."""
    return {
        "name": row.name,
        "classes": list(row.class_codes or []),
        "aliases": list(row.aliases or []),
        "description": row.description,
        "active": row.active,
        "version": row.version,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }


def list_categories(session: Session, *, include_inactive: bool = False) -> list[dict[str, Any]]:
    """Every category ordered by name (active ones only unless asked)."""
    where = "" if include_inactive else "WHERE active"
    rows = session.execute(text(f"SELECT {_COLUMNS} FROM complaint_categories {where} ORDER BY name"))
    return [category_view(row) for row in rows]


def find_category(session: Session, name_or_alias: str) -> dict[str, Any] | None:
    """The active category with this name or alias (folded for full-width forms and blanks)."""
    key = fold(name_or_alias)
    if not key:
        return None
    row = session.execute(
        text(
            f"SELECT {_COLUMNS} FROM complaint_categories WHERE active AND (name = :k OR :k = ANY(aliases)) "
            "ORDER BY name = :k DESC LIMIT 1"
        ),
        {"k": key},
    ).first()
    return category_view(row) if row else None


def get_category(session: Session, name: str) -> dict[str, Any]:
    """The category with exactly this name (active or not), or ``NotFound``."""
    row = session.execute(
        text(f"SELECT {_COLUMNS} FROM complaint_categories WHERE name = :n"), {"n": fold(name)}
    ).first()
    if row is None:
        raise NotFound(f"no complaint category named {name!r}", category=name)
    return category_view(row)


def _class_codes(session: Session, classes: tuple[str, ...] | list[str]) -> list[str]:
    codes: list[str] = []
    for given in classes:
        cls = class_service.find_class(session, given)
        if cls is None:
            raise InvalidInput(
                f"unknown component class {given!r}: give a 4-digit class code or a class name",
                field="classes",
            )
        if cls.code not in codes:
            codes.append(cls.code)
    return codes


def _check_printable(value: str, field_name: str) -> None:
    # A category is a service code of Open311 and a word on the scan page: control characters,
    # surrogates and non-characters cannot be shown there (nor written in XML at all).
    for position, char in enumerate(value, start=1):
        if unicodedata.category(char) in ("Cc", "Cs", "Cn"):
            raise InvalidInput(
                f"{field_name} 第 {position} 个字符不可显示 (U+{ord(char):04X}) / {field_name} has an "
                f"unprintable character U+{ord(char):04X} at position {position}",
                field=field_name,
            )


def set_category(
    session: Session, actor: Actor, data: CategoryDef, *, reason: str | None = None
) -> tuple[dict[str, Any], str]:
    """Create or replace a category; returns its view and 'created', 'updated' or 'unchanged'."""
    require(actor, Action.MANAGE_CATEGORIES)
    name = fold(data.name)
    if not name:
        raise InvalidInput("a category needs a name", field="name")
    for field_name, value in (("name", name), *(("aliases", a) for a in data.aliases)):
        _check_printable(value, field_name)
    codes = _class_codes(session, data.classes)
    aliases = sorted({fold(a) for a in data.aliases if fold(a) and fold(a) != name})
    # An alias that also names another category would make a complaint's category ambiguous.
    clash = session.execute(
        text(
            "SELECT name FROM complaint_categories WHERE name <> :n AND active "
            "AND (name = ANY(:keys) OR aliases && :keys) LIMIT 1"
        ),
        {"n": name, "keys": [name, *aliases]},
    ).scalar()
    if clash is not None:
        raise Conflict(
            f"category {name!r} or one of its aliases is already used by category {clash!r}", category=clash
        )
    existing = session.execute(
        text(f"SELECT {_COLUMNS} FROM complaint_categories WHERE name = :n FOR UPDATE"), {"n": name}
    ).first()
    values = {"n": name, "c": codes, "a": aliases, "d": data.description}
    if existing is None:
        session.execute(
            text(
                "INSERT INTO complaint_categories (name, class_codes, aliases, description) "
                "VALUES (:n, :c, :a, :d)"
            ),
            values,
        )
        outcome = "created"
    elif (
        list(existing.class_codes) == codes
        and sorted(existing.aliases) == aliases
        and existing.description == data.description
        and existing.active
    ):
        return category_view(existing), "unchanged"
    else:
        session.execute(
            text(
                "UPDATE complaint_categories SET class_codes = :c, aliases = :a, description = :d, "
                "active = true, version = version + 1, updated_at = now() WHERE name = :n"
            ),
            values,
        )
        outcome = "updated"
    before = category_view(existing) if existing is not None else None
    audit.record(
        session,
        actor,
        "create" if outcome == "created" else "update",
        "category",
        name,
        reason=reason,
        details={
            "before": before,
            "after": {"classes": codes, "aliases": aliases, "description": data.description},
        },
    )
    return get_category(session, name), outcome


def deactivate_category(
    session: Session, actor: Actor, name: str, *, reason: str | None = None
) -> dict[str, Any]:
    """Stop accepting a category (kept for the rules and log entries that name it)."""
    require(actor, Action.MANAGE_CATEGORIES)
    current = get_category(session, name)
    if not current["active"]:
        raise Conflict(f"category {current['name']!r} is already inactive")
    session.execute(
        text(
            "UPDATE complaint_categories SET active = false, version = version + 1, updated_at = now() "
            "WHERE name = :n"
        ),
        {"n": current["name"]},
    )
    audit.record(session, actor, "deactivate", "category", current["name"], reason=reason)
    return get_category(session, current["name"])


def import_categories(
    session: Session,
    actor: Actor,
    path: Path = DEFAULTS_PATH,
    *,
    replace: bool = False,
    reason: str | None = None,
) -> dict[str, list[str]]:
    """Load categories from a TOML file: add the missing ones (and overwrite existing ones if ``replace``)."""
    report: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": [], "kept": []}
    for entry in load_defaults(path):
        exists = session.execute(
            text("SELECT 1 FROM complaint_categories WHERE name = :n"), {"n": fold(entry.name)}
        ).first()
        if exists is not None and not replace:
            report["kept"].append(fold(entry.name))
            continue
        _, outcome = set_category(session, actor, entry, reason=reason or f"loaded from {path.name}")
        report[outcome].append(fold(entry.name))
    return report
