"""Units (单位): owners, maintainers and supervising departments."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import Any

from sqlalchemy import func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.errors import Conflict, InvalidInput, NotFound, StaleVersion
from registry import audit
from registry.access import Action, Actor, require
from registry.credit_code import normalize_credit_code
from registry.messages import Bilingual, both
from registry.models import Unit
from registry.names import fold
from registry.schemas import UnitCreate, UnitUpdate

# Words every company name carries: two names that differ only in these name the same unit.
_GENERIC_WORDS = re.compile(r"股份有限公司|有限责任公司|有限公司|分公司|总公司|公司|集团|省|市|区")


def unit_core(name: str) -> str:
    """A unit name without its generic words (有限公司, 市 …): 中国铁塔深圳 for both spellings of 铁塔."""
    return _GENERIC_WORDS.sub("", fold(name))


def is_near_miss(name: str, registered: str) -> bool:
    """True when ``name`` is most likely a variant or a typo of the registered name, not another unit.

    Either their cores (names without generic words) are one inside the other and of similar
    length (中国铁塔深圳分公司 / 中国铁塔股份有限公司深圳市分公司), or the names differ in a character
    or two (深圳供电居有限公司 / 深圳供电局有限公司). 深圳市水务集团有限公司 is not a near miss of
    深圳市燃气集团股份有限公司: they share only the generic words.
    """
    a, b = fold(name), fold(registered)
    if a == b:
        return True
    core_a, core_b = unit_core(a), unit_core(b)
    short, long_ = sorted((core_a, core_b), key=len)
    if short and short in long_ and len(short) >= 0.6 * len(long_):
        return True
    return SequenceMatcher(None, a, b).ratio() >= 0.8 and SequenceMatcher(None, core_a, core_b).ratio() >= 0.7


def near_misses(name: str, candidates: Sequence[str]) -> list[str]:
    """The candidates (registered names, closest first) that ``name`` is a near miss of."""
    return [c for c in candidates if is_near_miss(name, c)]


def unit_summary(unit: Unit | None) -> dict[str, Any] | None:
    """The short form of a unit used inside other answers (id, name, credit code, phone)."""
    if unit is None:
        return None
    return {
        "id": unit.id,
        "name": unit.name,
        "credit_code": unit.credit_code,
        "phone": unit.phone,
        "verified": unit.verified,
    }


def unit_view(unit: Unit) -> dict[str, Any]:
    """The full JSON form of a unit."""
    return {
        "id": unit.id,
        "name": unit.name,
        "kind": unit.kind,
        "aliases": list(unit.aliases or []),
        "credit_code": unit.credit_code,
        "phone": unit.phone,
        "parent_id": unit.parent_id,
        "verified": unit.verified,
        "county_code": unit.county_code,
        "note": unit.note,
        "version": unit.version,
        "created_at": unit.created_at.isoformat() if unit.created_at else None,
        "updated_at": unit.updated_at.isoformat() if unit.updated_at else None,
    }


def get_unit(session: Session, unit_id: int) -> Unit:
    """The unit with this id, or ``NotFound``."""
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(both("err.unit.none_id", id=unit_id), unit_id=unit_id)
    return unit


# One definition of "this text names that unit", used for one name and for a whole import chunk:
# exact name, name folded with NFKC and without spaces (full-width parentheses match ASCII ones),
# an alias, or the credit code.
_MATCH_UNITS = text(
    """
    SELECT q.i, (SELECT u.id FROM units u
                 WHERE u.name = q.raw OR normalize(replace(u.name, ' ', ''), NFKC) = q.key
                    OR q.key = ANY (u.aliases) OR q.raw = ANY (u.aliases)
                    OR u.credit_code = upper(q.key)
                 -- a unit's own name beats another unit's alias, so an alias can never capture a name
                 ORDER BY (u.name = q.raw) DESC, (u.credit_code = upper(q.key)) DESC NULLS LAST,
                          (normalize(replace(u.name, ' ', ''), NFKC) = q.key) DESC, u.id
                 LIMIT 1)
    FROM unnest(CAST(:raws AS text[]), CAST(:keys AS text[])) WITH ORDINALITY AS q(raw, key, i)
    ORDER BY q.i
    """
)


def match_unit_ids(session: Session, names: Sequence[str]) -> list[int | None]:
    """The id of the unit each name (or alias, or credit code) designates, None where none does."""
    if not names:
        return []
    raws = [n.strip() for n in names]
    rows = session.execute(_MATCH_UNITS, {"raws": raws, "keys": [fold(n) for n in raws]}).all()
    return [unit_id for _, unit_id in rows]


def find_unit(session: Session, name_or_credit_code: str) -> Unit | None:
    """The unit whose name, alias or credit code matches (names folded for full-width and spaces)."""
    if not name_or_credit_code.strip():
        return None
    unit_id = match_unit_ids(session, [name_or_credit_code])[0]
    return session.get(Unit, unit_id) if unit_id is not None else None


def list_units(
    session: Session, *, query: str | None = None, kind: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Unit], int]:
    """Units matching an optional name fragment and kind, with the total count."""
    stmt = select(Unit)
    if query:
        pattern = f"%{query.strip()}%"
        stmt = stmt.where(
            or_(Unit.name.ilike(pattern), func.array_to_string(Unit.aliases, " ").ilike(pattern))
        )
    if kind:
        stmt = stmt.where(Unit.kind == kind)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(Unit.id).limit(limit).offset(offset)).all()
    return list(rows), total


def _check_parent(session: Session, parent_id: int | None) -> None:
    if parent_id is not None and session.get(Unit, parent_id) is None:
        raise InvalidInput(both("err.unit.parent", id=parent_id), field="parent_id")


def create_unit(session: Session, data: UnitCreate, actor: Actor, county_code: str) -> Unit:
    """Register a unit; the credit code is validated and names must be unique."""
    require(actor, Action.CREATE_UNIT)
    credit = normalize_credit_code(data.credit_code) if data.credit_code else None
    _check_parent(session, data.parent_id)
    _check_aliases_free(session, [fold(a) for a in data.aliases if a.strip()], None)
    unit = Unit(
        name=data.name,
        kind=data.kind,
        aliases=[fold(a) for a in data.aliases if a.strip()],
        credit_code=credit,
        phone=data.phone,
        parent_id=data.parent_id,
        verified=data.verified,
        county_code=county_code,
        note=data.note,
    )
    session.add(unit)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(both("err.unit.exists", name=data.name, credit=credit), name=data.name) from exc
    audit.record(session, actor, "create", "unit", unit.id, details=data.model_dump(mode="json"))
    return unit


def closest_units(session: Session, name: str, limit: int = 3) -> list[str]:
    """The registered unit names closest to ``name`` (names and aliases compared folded)."""
    labels: dict[str, str] = {}
    for unit_name, aliases in session.execute(text("SELECT name, aliases FROM units")).tuples():
        for label in (unit_name, *(aliases or ())):
            labels.setdefault(fold(label), unit_name)
    close = difflib.get_close_matches(fold(name), list(labels), n=limit * 2, cutoff=0.5)
    return list(dict.fromkeys(labels[key] for key in close))[:limit]


def ensure_unit(
    session: Session, name: str, actor: Actor, county_code: str, *, create_near_misses: bool = False
) -> tuple[Unit, bool]:
    """The unit matching ``name``, or a new unverified one; the flag says whether it was created.

    A near miss of a registered unit (a variant spelling, a typo) is refused rather than created,
    unless ``create_near_misses``: a mistyped unit in a rules file made a unit up and a live rule
    pointing at it.
    """
    found = find_unit(session, name)
    if found is not None:
        return found, False
    require(actor, Action.CREATE_UNIT, what=f"unit {name.strip()!r} is not registered")
    if not create_near_misses:
        close = near_misses(name, closest_units(session, name))
        if close:
            raise InvalidInput(
                both(
                    "err.unit.near",
                    name=name.strip(),
                    close=Bilingual("、".join(close), " / ".join(close)),
                    first=close[0],
                ),
                field="unit",
                suggestions=close,
            )
    unit = Unit(name=name.strip(), kind="other", aliases=[], verified=False, county_code=county_code)
    session.add(unit)
    session.flush()
    audit.record(session, actor, "create", "unit", unit.id, reason=both("imp.unit_created"))
    return unit, True


def _check_aliases_free(session: Session, aliases: list[str], unit_id: int | None) -> None:
    """Refuse an alias that already names another unit: it would capture that unit's inventory rows."""
    for alias, owner_id in zip(aliases, match_unit_ids(session, aliases), strict=True):
        if owner_id is not None and owner_id != unit_id:
            raise Conflict(
                both("err.unit.alias_taken", alias=alias, id=owner_id), field="aliases", unit_id=owner_id
            )


# Names, aliases and credit codes decide which unit an inventory row names: administrators only.
_IDENTITY_FIELDS = frozenset({"name", "aliases", "credit_code", "kind", "parent_id", "verified"})


def update_unit(session: Session, unit_id: int, data: UnitUpdate, actor: Actor) -> Unit:
    """Change a unit if ``data.version`` is still current; a stale version is refused."""
    require(actor, Action.EDIT_UNIT_CONTACT, unit_id)
    identity = data.model_fields_set & _IDENTITY_FIELDS
    if identity:
        require(actor, Action.EDIT_UNIT_IDENTITY, what=f"changing {', '.join(sorted(identity))}")
    unit = get_unit(session, unit_id)
    if unit.version != data.version:
        raise StaleVersion(
            both("err.unit.version", id=unit_id, current=unit.version, given=data.version),
            current_version=unit.version,
        )
    changes = data.model_dump(exclude_unset=True, exclude={"version", "reason"})
    for required in ("name", "kind", "aliases", "verified"):
        if required in changes and changes[required] is None:
            raise InvalidInput(both("err.null", field=required), field=required)
    if changes.get("credit_code"):
        changes["credit_code"] = normalize_credit_code(changes["credit_code"])
    if "aliases" in changes:
        changes["aliases"] = [fold(a) for a in changes["aliases"] if a.strip()]
        _check_aliases_free(session, changes["aliases"], unit_id)
    if "parent_id" in changes:
        if changes["parent_id"] == unit_id:
            raise InvalidInput(both("err.unit.own_parent"), field="parent_id")
        _check_parent(session, changes["parent_id"])
    before = {key: getattr(unit, key) for key in changes}
    for key, value in changes.items():
        setattr(unit, key, value)
    unit.version += 1
    unit.updated_at = func.now()
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(both("err.unit.taken"), unit_id=unit_id) from exc
    audit.record(
        session,
        actor,
        "update",
        "unit",
        unit_id,
        reason=data.reason,
        details={"before": _jsonable(before), "after": _jsonable(changes)},
    )
    session.refresh(unit)
    return unit


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, list | tuple) else v) for k, v in values.items()}


def add_alias(session: Session, unit: str, alias: str, actor: Actor, reason: str | None = None) -> Unit:
    """Add ``alias`` to the unit named (or numbered) ``unit``, so the next import matches it.

    This is how a held near miss (中国铁塔深圳分公司) is settled: the alias goes through
    :func:`update_unit`, which refuses an alias that already names another unit.
    """
    found = get_unit(session, int(unit)) if unit.strip().isdigit() else find_unit(session, unit)
    if found is None:
        raise NotFound(both("err.unit.none_name", name=unit.strip()), unit=unit.strip())
    key = fold(alias)
    if not key:
        raise InvalidInput(both("err.unit.alias_empty"), field="alias")
    aliases = list(found.aliases or [])
    if key in aliases or key == fold(found.name):
        return found
    update = UnitUpdate(
        version=found.version,
        aliases=[*aliases, key],
        reason=reason or f"alias {key} added (别名)",
    )
    return update_unit(session, found.id, update, actor)
