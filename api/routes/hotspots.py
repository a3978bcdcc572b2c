"""``/api/v1/hotspots``: hot-spot warnings (高频 / 热点预警) for staff, and their acknowledgement."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.deps import require_actor, services
from api.params import BIGINT_MAX, RowId, parse_bbox
from registry import hotspots
from registry.access import Action

router = APIRouter(prefix="/hotspots", tags=["hotspots"])


@router.get("", summary="Hot-spot warnings, newest first (token)")
def list_hotspots(
    request: Request,
    kind: Annotated[
        str | None, Query(description="asset (高频, one asset) | place (热点, one category)")
    ] = None,
    state: Annotated[str | None, Query(description="active | acknowledged | expired")] = None,
    category: Annotated[str | None, Query(max_length=200, description="complaint category (热点)")] = None,
    unit: Annotated[int | None, Query(ge=1, le=BIGINT_MAX, description="responsible unit id")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat (WGS84)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Warnings raised when an asset, or a place for one category, gathered many complaints."""
    box = parse_bbox(bbox)
    with services(request).session() as session:
        require_actor(request, session)
        items = hotspots.list_warnings(
            session,
            kind=kind,
            state=state,
            category=category,
            unit_id=unit,
            bbox=box,
            limit=limit,
            offset=offset,
        )
    return {"items": items}


@router.post(
    "/{warning_id}/acknowledge",
    summary="Acknowledge a warning (the responsible unit, or an administrator)",
)
def acknowledge(request: Request, warning_id: RowId) -> dict[str, Any]:
    """The unit has seen it; the warning keeps counting complaints until it expires."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.ACKNOWLEDGE_HOTSPOT)
        return hotspots.acknowledge(session, warning_id, actor)
