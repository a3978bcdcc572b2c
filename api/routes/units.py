"""``/api/v1/units``: owners, maintainers and supervising departments."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.deps import require_actor, services
from api.params import RowId
from registry import units as unit_service
from registry.access import Action
from registry.schemas import UnitCreate, UnitKind, UnitUpdate

router = APIRouter(prefix="/units", tags=["units"])


@router.get("", summary="List units (search by name or alias)")
def list_units(
    request: Request,
    q: str | None = None,
    kind: UnitKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """A page of units with the total count."""
    with services(request).session() as session:
        require_actor(request, session)
        rows, total = unit_service.list_units(session, query=q, kind=kind, limit=limit, offset=offset)
        return {
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": [unit_service.unit_view(u) for u in rows],
        }


@router.get("/{unit_id}", summary="One unit")
def get_unit(request: Request, unit_id: RowId) -> dict[str, Any]:
    """The unit with this id."""
    with services(request).session() as session:
        require_actor(request, session)
        return unit_service.unit_view(unit_service.get_unit(session, unit_id))


@router.post("", status_code=201, summary="Register a unit (administrators)")
def create_unit(request: Request, body: UnitCreate) -> dict[str, Any]:
    """Create a unit; its 统一社会信用代码 is checked."""
    svc = services(request)
    with svc.session() as session:
        actor = require_actor(request, session, Action.CREATE_UNIT)
        return unit_service.unit_view(
            unit_service.create_unit(session, body, actor, svc.settings.area.county_code)
        )


@router.patch("/{unit_id}", summary="Update a unit (needs the current version)")
def update_unit(request: Request, unit_id: RowId, body: UnitUpdate) -> dict[str, Any]:
    """Change a unit; administrators may change any, a unit's token only its own record."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.EDIT_UNIT_CONTACT)
        return unit_service.unit_view(unit_service.update_unit(session, unit_id, body, actor))
