"""Component classes: the national table plus a deployment's local classes."""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from common.errors import Conflict, InvalidInput, NotFound
from registry import audit
from registry.access import Action, Actor, require
from registry.models import ComponentClass
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


def find_class(session: Session, code_or_name: str) -> ComponentClass | None:
    """The class matching a 4-digit code, a name or an alias (e.g. 防汛墙 for 0606 防洪墙)."""
    text = unicodedata.normalize("NFKC", code_or_name).strip()
    if text.isdigit() and len(text) == 4:
        return session.get(ComponentClass, text)
    stmt = select(ComponentClass).where(
        or_(ComponentClass.name == text, ComponentClass.aliases.any(text))  # type: ignore[arg-type]
    )
    return session.scalars(stmt.order_by(ComponentClass.active.desc()).limit(1)).first()


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
