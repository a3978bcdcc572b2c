"""Component classes: the national table plus a deployment's local classes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.errors import Conflict, InvalidInput, NotFound
from registry import audit
from registry.access import Action, Actor, require
from registry.models import ComponentClass
from registry.names import fold
from registry.schemas import ClassCreate

# Which shapely geometry types an asset of each expected kind may have. A point asset is one place
# (a lamp, a manhole cover): a MultiPoint of many would put one code on many things.
ALLOWED_GEOMETRIES = {
    "point": ("Point",),
    "line": ("LineString", "MultiLineString"),
    "polygon": ("Polygon", "MultiPolygon"),
}


def class_view(cls: ComponentClass) -> dict[str, Any]:
    """The JSON form of a component class."""
    return {
        "code": cls.code,
        "name": cls.name,
        "big_code": cls.big_code,
        "big_name": cls.big_name,
        "geometry_type": cls.geometry_type,
        "scheme": cls.scheme,
        "scheme_version": cls.scheme_version,
        "aliases": list(cls.aliases or []),
        "note": cls.note,
        "active": cls.active,
    }


def get_class(session: Session, code: str) -> ComponentClass:
    """The class with this 4-digit code, or ``NotFound``."""
    cls = session.get(ComponentClass, code)
    if cls is None:
        raise NotFound(f"unknown component class {code!r}", class_code=code)
    return cls


@dataclass
class ClassNames:
    """Class codes by code and by folded name or alias (:func:`registry.names.fold`): the one lookup
    behind the API, the rules and categories, and the importers."""

    codes: set[str] = field(default_factory=set)
    by_name: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, Sequence[str] | None, bool]]) -> ClassNames:
        """From (code, name, aliases, active) rows; active classes first, so a retired class never
        shadows a live one of the same name."""
        index = cls()
        for code, name, aliases, _active in sorted(rows, key=lambda r: (not r[3], r[0])):
            index.codes.add(code)
            for label in (name, *(aliases or ())):
                index.by_name.setdefault(fold(label), code)
        return index

    def code_for(self, given: str) -> str | None:
        """The code of the class a code, name or alias names; None when none does."""
        key = fold(given)
        return key if key in self.codes else self.by_name.get(key)


def class_names(session: Session) -> ClassNames:
    """The lookup over the class table as it is in this transaction."""
    rows = session.execute(
        select(ComponentClass.code, ComponentClass.name, ComponentClass.aliases, ComponentClass.active)
    ).all()
    return ClassNames.from_rows((r[0], r[1], r[2], r[3]) for r in rows)


def find_class(session: Session, code_or_name: str) -> ComponentClass | None:
    """The class matching a 4-digit code, a name or an alias (e.g. 防汛墙 for 0606 防洪墙)."""
    code = class_names(session).code_for(code_or_name)
    return session.get(ComponentClass, code) if code is not None else None


def list_classes(session: Session, *, include_retired: bool = False) -> list[ComponentClass]:
    """All classes ordered by code."""
    stmt = select(ComponentClass).order_by(ComponentClass.code)
    if not include_retired:
        stmt = stmt.where(ComponentClass.active)
    return list(session.scalars(stmt).all())


def add_local_class(session: Session, data: ClassCreate, actor: Actor) -> ComponentClass:
    """Add a deployment's own class; its code must be new and its big class consistent."""
    require(actor, Action.MANAGE_CLASSES)
    if session.get(ComponentClass, data.code) is not None:
        raise Conflict(f"class {data.code} already exists", class_code=data.code)
    big_code = data.code[:2]
    sibling = session.scalars(select(ComponentClass).where(ComponentClass.big_code == big_code)).first()
    if sibling is not None and sibling.big_name != data.big_name:
        raise InvalidInput(
            f"big class {big_code} is named {sibling.big_name!r}, not {data.big_name!r}", field="big_name"
        )
    cls = ComponentClass(
        code=data.code,
        name=data.name,
        big_code=big_code,
        big_name=data.big_name,
        geometry_type=data.geometry_type,
        scheme="local",
        scheme_version=data.scheme_version,
        aliases=data.aliases,
        note=data.note,
        active=True,
    )
    session.add(cls)
    session.flush()
    audit.record(session, actor, "create", "class", data.code, details=data.model_dump(mode="json"))
    return cls
