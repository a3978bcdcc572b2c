"""``/api/v1/zones`` and ``/api/v1/rules``: the areas and responsibility rules behind resolution.

Reads need a token (contract areas and rules are internal); writes need an administrator.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, field_validator

from api.deps import require_actor, services
from api.params import RowId, UnitFilter
from api.routes.disputes import dispute_url
from api.routes.resolve import parse_optional_time
from api.uploads import MIB, ReceivedForm, busy, check_declared_size, missing, receive_form, upload_slots
from common.errors import InvalidInput
from common.settings import Settings
from gis.crs import parse_crs, transform_geometry
from importers import zone_files
from registry import rules as rule_service
from registry import zones as zone_service
from registry.access import Action
from registry.geometry import parse_geojson
from registry.limits import MAX_NOTE_CHARS, check_attributes
from registry.validity import Versions

router = APIRouter(tags=["zones and rules"])


class ZoneBody(BaseModel):
    """A zone version: level, name, polygon (GeoJSON in ``crs``), responsible unit."""

    level: str
    name: str = Field(min_length=1, max_length=200)
    geometry: dict[str, Any]
    crs: str | None = Field(default=None, description="coordinate system of the geometry (default wgs84)")
    unit: str | None = Field(default=None, description="responsible unit by name, alias or credit code")
    unit_id: int | None = None
    code: str | None = Field(default=None, description="statistical or grid code of the zone")
    valid_from: dt.datetime | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, description="at most 64 KiB as JSON")
    reason: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)

    _attributes_fit = field_validator("attributes")(check_attributes)


class CloseBody(BaseModel):
    """When a zone or rule stops applying, and why."""

    at: dt.datetime | None = None
    reason: str | None = None


class RuleBody(BaseModel):
    """A responsibility rule; empty class or category means any."""

    zone: str | None = None
    level: str | None = None
    class_: str | None = Field(default=None, alias="class")
    category: str | None = None
    unit: str | None = None
    unit_id: int | None = None
    priority: int = 0
    valid_from: dt.datetime | None = None
    valid_to: dt.datetime | None = None
    note: str | None = None
    reason: str | None = None


@dataclass
class VersionPage:
    """What both lists take: which versions (those valid at ``at``, default now, or all) and which page."""

    at: Annotated[str | None, Query(description="ISO 8601 time")] = None
    all_versions: bool = False
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000
    offset: Annotated[int, Query(ge=0)] = 0

    def versions(self, settings: Settings) -> Versions:
        """The versions ``list_zones`` and ``list_rules`` are asked for."""
        return Versions(
            at=parse_optional_time(self.at, settings),
            all_versions=self.all_versions,
            limit=self.limit,
            offset=self.offset,
        )


@router.get("/zones", summary="Zones valid at a time (default now), or every version (token)")
def list_zones(
    request: Request,
    page: Annotated[VersionPage, Depends()],
    level: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Zone versions, without geometry."""
    svc = services(request)
    with svc.session() as session:
        require_actor(request, session)
        items, total = zone_service.list_zones(
            session, level=level, name=name, versions=page.versions(svc.settings)
        )
    return {"total": total, "items": items}


@router.get("/zones/{zone_id}", summary="One zone version with its polygon (token)")
def get_zone(request: Request, zone_id: RowId, geometry: bool = True) -> dict[str, Any]:
    """The zone version, geometry as GeoJSON (WGS84)."""
    with services(request).session() as session:
        require_actor(request, session)
        return zone_service.get_zone(session, zone_id, with_geometry=geometry)


@router.post("/zones", status_code=201, summary="Add a zone, or a new boundary generation (administrators)")
def create_zone(request: Request, body: ZoneBody) -> dict[str, Any]:
    """Save a zone; an open version of the same level and name is closed where the new one starts."""
    svc = services(request)
    geom = parse_geojson(body.geometry)
    if body.crs:
        geom = transform_geometry(geom, parse_crs(body.crs))
    with svc.session() as session:
        actor = require_actor(request, session, Action.MANAGE_ZONES)
        view, outcome = zone_service.save_zone(
            session,
            actor,
            zone_service.ZoneInput(
                level=body.level,
                name=body.name,
                geometry=geom,
                unit=body.unit,
                unit_id=body.unit_id,
                code=body.code,
                valid_from=body.valid_from,
                attributes=body.attributes,
                source="api",
            ),
            area=svc.area,
            county=svc.settings.area.county_code,
            reason=body.reason,
        )
    return {**view, "outcome": outcome}


_ZONE_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["file", "level", "name_field"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "GeoJSON, zipped shapefile or GeoPackage",
        },
        "level": {"type": "string"},
        "name_field": {"type": "string"},
        "unit_field": {"type": "string"},
        "code_field": {"type": "string"},
        "crs": {"type": "string"},
        "layer": {"type": "string"},
        "valid_from": {"type": "string", "description": "ISO 8601 time"},
        "reason": {"type": "string"},
    },
}
_RULES_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "UTF-8 CSV"},
        "reason": {"type": "string"},
    },
}


def _upload_responses(setting: str) -> dict[int | str, dict[str, Any]]:
    return {
        400: {"description": "the form or the file is unusable"},
        401: {"description": "no valid token (answered before the body is read)"},
        403: {"description": "not an administrator"},
        413: {"description": f"the upload is larger than {setting}"},
        422: {"description": "a required form field is missing"},
        503: {"description": "every upload slot is busy: try again after Retry-After seconds"},
    }


@asynccontextmanager
async def _admin_upload(
    request: Request, limit_mb: int, action: Action
) -> AsyncIterator[tuple[ReceivedForm, Path]]:
    """An administrator's upload, received into a private folder (removed afterwards).

    The token is checked, and a declared size over the cap refused, before any of the body is read.
    """

    def authenticate() -> None:
        with services(request).session() as session:
            require_actor(request, session, action)

    await run_in_threadpool(authenticate)
    limit = limit_mb * MIB
    check_declared_size(request, limit)
    slots = upload_slots(request)
    if not slots.acquire():
        raise busy()
    try:
        root = services(request).settings.embedded.var_dir / "uploads"
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="zones-", dir=root) as folder:
            form = await receive_form(request, Path(folder), limit=limit, files={"file": None})
            if "file" not in form.files:
                raise missing("file")
            yield form, form.files["file"].path
    finally:
        slots.release()


@router.post(
    "/zones/import",
    summary="Import zones from a polygon file (administrators)",
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _ZONE_FORM}}}
    },
    responses=_upload_responses("SMARTCODE_IMPORT_MAX_ZONE_UPLOAD_MB"),
)
async def import_zones(request: Request) -> dict[str, Any]:
    """All features or none; repaired polygons are listed in the report."""
    svc = services(request)
    async with _admin_upload(request, svc.settings.imports.max_zone_upload_mb, Action.MANAGE_ZONES) as (
        form,
        path,
    ):
        level, name_field = form.text("level"), form.text("name_field")
        if level is None:
            raise missing("level")
        if name_field is None:
            raise missing("name_field")

        def work() -> dict[str, Any]:
            with svc.session() as session:
                actor = require_actor(request, session, Action.MANAGE_ZONES)
                report = zone_files.import_zones(
                    session,
                    actor,
                    path,
                    level=level,
                    name_field=name_field,
                    unit_field=form.text("unit_field"),
                    code_field=form.text("code_field"),
                    crs=form.text("crs"),
                    layer=form.text("layer"),
                    valid_from=parse_optional_time(form.text("valid_from"), svc.settings),
                    area=svc.area,
                    county=svc.settings.area.county_code,
                    reason=form.text("reason"),
                )
                return report.as_dict()

        return await run_in_threadpool(work)


@router.post("/zones/{zone_id}/close", summary="End a zone version (administrators)")
def close_zone(request: Request, zone_id: RowId, body: CloseBody) -> dict[str, Any]:
    """The zone stops applying at ``at`` (default now)."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_ZONES)
        return zone_service.close_zone(session, actor, zone_id, at=body.at, reason=body.reason)


@router.get("/rules", summary="Responsibility rules valid at a time, or every version (token)")
def list_rules(
    request: Request,
    page: Annotated[VersionPage, Depends()],
    zone: str | None = None,
    level: str | None = None,
    unit: UnitFilter = None,
) -> dict[str, Any]:
    """Rules ordered by zone and priority."""
    svc = services(request)
    with svc.session() as session:
        require_actor(request, session)
        items, total = rule_service.list_rules(
            session, zone=zone, level=level, unit_id=unit, versions=page.versions(svc.settings)
        )
    for item in items:
        # A version an upheld dispute created or ended links to the dispute's own view.
        item["dispute_url"] = dispute_url(request, item["dispute_id"])
        item["ended_by_dispute_url"] = dispute_url(request, item["ended_by_dispute_id"])
    return {"total": total, "items": items}


@router.post("/rules", status_code=201, summary="Add a rule, or a new version of one (administrators)")
def create_rule(request: Request, body: RuleBody) -> dict[str, Any]:
    """Save a rule; the open rule for the same zone, class and category is closed where this one starts."""
    svc = services(request)
    with svc.session() as session:
        actor = require_actor(request, session, Action.MANAGE_RULES)
        view, outcome, unit_created = rule_service.save_rule(
            session,
            actor,
            rule_service.RuleInput(
                zone=body.zone,
                level=body.level,
                class_=body.class_,
                category=body.category,
                unit=body.unit,
                unit_id=body.unit_id,
                priority=body.priority,
                valid_from=body.valid_from,
                valid_to=body.valid_to,
                note=body.note,
            ),
            county=svc.settings.area.county_code,
            reason=body.reason,
        )
    return {**view, "outcome": outcome, "unit_created": unit_created}


@router.post(
    "/rules/import",
    summary="Import rules from CSV: zone,level,class,category,unit,priority (administrators)",
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _RULES_FORM}}}
    },
    responses=_upload_responses("SMARTCODE_IMPORT_MAX_RULES_UPLOAD_MB"),
)
async def import_rules(request: Request) -> dict[str, Any]:
    """All rows or none; the report lists created, replaced and unchanged rule ids."""
    svc = services(request)
    async with _admin_upload(request, svc.settings.imports.max_rules_upload_mb, Action.MANAGE_RULES) as (
        form,
        path,
    ):
        try:
            content = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput("the rules CSV must be UTF-8 (save it as 'CSV UTF-8' in Excel)") from exc
        file_name = form.files["file"].filename or "rules.csv"

        def work() -> dict[str, Any]:
            with svc.session() as session:
                actor = require_actor(request, session, Action.MANAGE_RULES)
                report = rule_service.import_rules_csv(
                    session,
                    actor,
                    content,
                    county=svc.settings.area.county_code,
                    file=file_name,
                    reason=form.text("reason"),
                )
                return report.as_dict()

        return await run_in_threadpool(work)


@router.post("/rules/{rule_id}/close", summary="End a rule (administrators)")
def close_rule(request: Request, rule_id: RowId, body: CloseBody) -> dict[str, Any]:
    """The rule stops applying at ``at`` (default now)."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_RULES)
        return rule_service.close_rule(session, actor, rule_id, at=body.at, reason=body.reason)
