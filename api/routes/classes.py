"""``/api/v1/classes``: the component class table (national plus local)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import require_actor, services
from registry import classes as class_service
from registry.access import Action
from registry.schemas import ClassCreate

router = APIRouter(prefix="/classes", tags=["classes"])


@router.get("", summary="All component classes")
def list_classes(request: Request, include_retired: bool = False) -> list[dict[str, Any]]:
    """The class table; public, it is a published standard."""
    with services(request).session() as session:
        return [
            class_service.class_view(c)
            for c in class_service.list_classes(session, include_retired=include_retired)
        ]


@router.get("/{code}", summary="One component class")
def get_class(request: Request, code: str) -> dict[str, Any]:
    """The class with this code."""
    with services(request).session() as session:
        return class_service.class_view(class_service.get_class(session, code))


@router.post("", status_code=201, summary="Add a local class (administrators)")
def add_class(request: Request, body: ClassCreate) -> dict[str, Any]:
    """Add a deployment's own class, e.g. 2105 架空线缆 as a line class."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_CLASSES)
        return class_service.class_view(class_service.add_local_class(session, body, actor))
