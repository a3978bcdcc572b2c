"""``/api/v1/assets``: register, read, update, hand over, decommission, history."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from api.deps import client_address, current_actor, require_actor, services
from api.params import UnitFilter, parse_bbox
from api.routes.disputes import dispute_url
from registry import assets as asset_service
from registry import export as export_service
from registry.access import Action, require
from registry.proposals import proposal_view
from registry.schemas import AssetCreate, AssetState, AssetUpdate, Decommission, UnitsChange

router = APIRouter(prefix="/assets", tags=["assets"])


@router.get("", summary="List assets filtered by class, unit and bbox (paged, with total)")
def list_assets(
    request: Request,
    class_: Annotated[list[str] | None, Query(alias="class", description="class code, repeatable")] = None,
    unit: UnitFilter = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat (WGS84)")] = None,
    in_use: bool | None = None,
    state: AssetState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """A page of assets with the total count; needs a token (the full inventory is not public)."""
    flt = asset_service.AssetFilter(
        class_codes=tuple(class_ or ()), unit_id=unit, bbox=parse_bbox(bbox), in_use=in_use, state=state
    )

    def read(session: Session) -> dict[str, Any]:
        require_actor(request, session)
        rows, total = asset_service.list_assets(session, flt, limit=limit, offset=offset)
        items = [asset_service.asset_view(session, row) for row in rows]
        return {"total": total, "limit": limit, "offset": offset, "items": items}

    # Reads go to the replica while it is fit (api/replicas.py).
    return services(request).read(read)


@router.get(
    "/export",
    summary="Export assets as CSV, XLSX or GeoJSON: 智慧码 beside the utility's own 原编号",
    response_class=StreamingResponse,
    responses={200: {"content": {media: {} for media in export_service.MEDIA_TYPES.values()}}},
)
def export_assets(
    request: Request,
    format: Annotated[str, Query(description="csv, xlsx or geojson")] = "csv",
    class_: Annotated[list[str] | None, Query(alias="class", description="class code, repeatable")] = None,
    unit: UnitFilter = None,
    zone: Annotated[str | None, Query(description="name of a zone valid now")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat (WGS84)")] = None,
    batch: Annotated[int | None, Query(description="import batch id")] = None,
    in_use: bool | None = None,
    state: AssetState | None = None,
) -> StreamingResponse:
    """Stream the matching assets with Chinese column headers; a unit token gets its own unit's only."""
    svc = services(request)
    flt = asset_service.AssetFilter(
        class_codes=tuple(class_ or ()),
        unit_id=unit,
        bbox=parse_bbox(bbox),
        in_use=in_use,
        state=state,
        zone=zone,
        batch_id=batch,
    )
    with svc.session() as session:  # refuse before the first byte: errors still map to their status
        job = export_service.prepare(
            session, current_actor(request, session), flt, format, svc.settings.area.timezone
        )

    def body() -> Iterator[bytes]:
        with svc.session() as session:
            yield from export_service.stream(session, job)

    name = f"smartcode-assets.{job.format}"
    return StreamingResponse(
        body(),
        media_type=export_service.MEDIA_TYPES[job.format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/{code}",
    summary="One asset by smart code (public view without a token)",
    responses={429: {"description": "too many anonymous lookups from this address (see Retry-After)"}},
)
def get_asset(request: Request, code: str) -> dict[str, Any]:
    """The asset; anonymous callers get the passer-by view (what it is, its state, whom to call)."""
    svc = services(request)

    def read(session: Session) -> dict[str, Any]:
        actor = require(current_actor(request, session), Action.READ_PUBLIC)
        if actor.anonymous:
            svc.anonymous_limit.check(client_address(request))
        asset = asset_service.get_by_code(session, code)
        return asset_service.asset_view(session, asset, public=actor.anonymous)

    return svc.read(read)


@router.post("", status_code=201, summary="Register an asset (code allocated when not given)")
def create_asset(request: Request, body: AssetCreate) -> dict[str, Any]:
    """Register an asset and return it with its smart code.

    From a unit token, another unit named as maintainer is left out until it accepts
    the proposal listed under ``proposals`` (see ``/proposals``).
    """
    svc = services(request)
    with svc.session() as session:
        actor = require_actor(request, session, Action.REGISTER_ASSET)
        asset = asset_service.register_asset(session, body, actor, svc.area, svc.settings.area.county_code)
        pending = asset_service.pending_proposals(session, asset)
        return {
            **asset_service.asset_view(session, asset),
            "proposals": [proposal_view(session, p) for p in pending],
        }


@router.patch("/{code}", summary="Update an asset's description (needs the current version)")
def update_asset(request: Request, code: str, body: AssetUpdate) -> dict[str, Any]:
    """Apply the change if ``version`` is current; a stale version gets 409 and nothing is merged."""
    svc = services(request)
    with svc.session() as session:
        actor = require_actor(request, session, Action.EDIT_ASSET)
        asset = asset_service.update_asset(session, code, body, actor, svc.area)
        return asset_service.asset_view(session, asset)


@router.post(
    "/{code}/units",
    summary="Change the owner, maintainer or supervisor from an effective date",
    responses={202: {"description": "from a unit token: proposals made, waiting for the other unit"}},
)
def change_units(request: Request, code: str, body: UnitsChange, response: Response) -> dict[str, Any]:
    """Hand the asset over; the previous responsibility period is kept.

    From a unit token, the roles given to another unit become proposals that unit accepts or declines
    (``/proposals``); the answer is then 202 and lists them. An administrator's change is direct.
    """
    with services(request).session() as session:
        actor = require_actor(request, session, Action.HAND_OVER)
        asset, proposals = asset_service.hand_over(session, code, body, actor)
        if proposals:
            response.status_code = 202
        return {
            **asset_service.asset_view(session, asset),
            "proposals": [proposal_view(session, p) for p in proposals],
        }


@router.post("/{code}/decommission", summary="Decommission (注销) an asset with time and reason")
def decommission(request: Request, code: str, body: Decommission) -> dict[str, Any]:
    """Take the asset out of use; it is never deleted."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.DECOMMISSION)
        asset = asset_service.decommission_asset(session, code, body, actor)
        return asset_service.asset_view(session, asset)


@router.get("/{code}/history", summary="Every version and responsibility period; or the state at a time")
def history(
    request: Request,
    code: str,
    at: Annotated[dt.datetime | None, Query(description="ISO 8601 time with zone: the state then")] = None,
) -> dict[str, Any]:
    """The asset's history; with ``at``, who was responsible and what was recorded at that time."""

    def read(session: Session) -> dict[str, Any]:
        require_actor(request, session)
        if at is not None:
            return asset_service.as_of(session, code, at)
        versions = asset_service.history(session, code)
        for version in versions:
            # A version an upheld dispute wrote links to the dispute's own view.
            version["dispute_url"] = dispute_url(request, version["dispute_id"])
        return {
            "code": asset_service.get_by_code(session, code).code,
            "versions": versions,
            "responsibility": asset_service.responsibility_periods(session, code),
        }

    return services(request).read(read)
