"""``/api/v1/imports``: upload an inventory, follow its job, look at batches, roll one back."""

from __future__ import annotations

import re
import shutil
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import require_actor, services
from api.responses import OrjsonResponse
from api.uploads import (
    MIB,
    ReceivedForm,
    busy,
    check_declared_size,
    missing,
    receive_form,
    upload_slots,
)
from common.errors import InvalidInput, NotFound
from importers import batches as batch_service
from importers.encoding import codepage_to_encoding
from importers.jobs import ImportJobs
from importers.pipeline import ImportOptions
from importers.profiles import builtin_profiles
from registry.access import Action, Actor, require_role

router = APIRouter(prefix="/imports", tags=["imports"])

# The multipart form of POST /imports, for the OpenAPI document: the route reads it itself (api.uploads).
_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "the inventory: .geojson, .geojsonl, .gpkg, .zip (shapefile), .csv, .xlsx",
        },
        "mapping": {"type": "string", "format": "binary", "description": "a mapping profile (TOML)"},
        "profile": {"type": "string", "description": "a built-in profile name (default: szcg, 数字城管)"},
        "zone": {"type": "string", "description": "restrict to this zone; rows outside are rejected"},
        "crs": {"type": "string", "description": "the file's coordinate system, e.g. EPSG:4547 or gcj02"},
        "dry_run": {"type": "boolean", "default": False},
        "strict": {
            "type": "boolean",
            "default": False,
            "description": "refuse the batch if a row is rejected",
        },
        "layer": {"type": "string"},
        "encoding": {"type": "string", "description": "DBF/CSV text encoding, e.g. GBK"},
        "source_system": {"type": "string", "description": "scope of the file's source ids"},
    },
}
_UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "the form or one of its values is unusable"},
    401: {"description": "no valid token (answered before the body is read)"},
    403: {"description": "the token may not import"},
    413: {"description": "the upload is larger than SMARTCODE_IMPORT_MAX_UPLOAD_MB"},
    422: {"description": "a required form field is missing"},
    503: {"description": "every upload slot is busy: try again after Retry-After seconds"},
}


# Where an uploaded profile is kept: a caller's own file name never starts with a dot (safe_file_name).
_MAPPING = ".mapping/mapping.toml"


def _jobs(request: Request) -> ImportJobs:
    """The app's import jobs (made with the app; its worker starts and stops with it)."""
    jobs: ImportJobs = request.app.state.import_jobs
    return jobs


def _require_writer(actor: Actor) -> None:
    require_role(actor, Action.IMPORT)


def _authenticate(request: Request) -> Actor:
    with services(request).session() as session:
        return require_actor(request, session)


def _check_options(form: ReceivedForm) -> None:
    """Options that are wrong whatever the file holds: refused before a job is queued."""
    profile = form.text("profile")
    if profile is not None and profile not in builtin_profiles():
        raise InvalidInput(
            f"profile names a built-in profile ({', '.join(builtin_profiles())}); "
            "upload your own profile file as 'mapping'",
            field="profile",
        )
    encoding = form.text("encoding")
    if encoding is not None and codepage_to_encoding(encoding) is None:
        raise InvalidInput(
            f"未知编码 / unknown text encoding {encoding!r:.40}: use e.g. UTF-8, GBK or GB18030",
            field="encoding",
        )


@router.post(
    "",
    status_code=202,
    summary="Upload an inventory file and start its import job",
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _FORM_SCHEMA}}}
    },
    responses=_UPLOAD_RESPONSES,
)
async def start_import(request: Request) -> OrjsonResponse:
    """Queue the import; poll ``GET /imports/{id}`` for progress and the report.

    The token is checked, and a declared size over the cap refused, before any of the body is read.
    """
    actor = await run_in_threadpool(_authenticate, request)
    _require_writer(actor)
    limit = services(request).settings.imports.max_upload_mb * MIB
    check_declared_size(request, limit)
    slots = upload_slots(request)
    if not slots.acquire():
        raise busy()
    jobs = _jobs(request)
    try:
        job_id, folder = jobs.new_folder()
        try:
            form = await receive_form(request, folder, limit=limit, files={"file": None, "mapping": _MAPPING})
            upload = form.files.get("file")
            if upload is None:
                raise missing("file")
            _check_options(form)
            mapping = form.files.get("mapping")
            options = ImportOptions(
                profile=form.text("profile"),
                mapping=str(mapping.path) if mapping else None,
                zone=form.text("zone"),
                crs=form.text("crs"),
                dry_run=form.flag("dry_run"),
                strict=form.flag("strict"),
                layer=form.text("layer"),
                encoding=form.text("encoding"),
                source_system=form.text("source_system"),
            )
            job = await run_in_threadpool(jobs.submit, job_id, upload.path, upload.filename, actor, options)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    finally:
        slots.release()
    body = {"id": job["id"], "status": job["status"], "url": f"{request.url.path.rstrip('/')}/{job['id']}"}
    return OrjsonResponse(body, status_code=202, headers={"Location": body["url"]})


def _visible(actor: Actor, owner: str) -> bool:
    return actor.admin or owner == actor.name


@router.get("", summary="Recent import batches, and the caller's recent import jobs")
def list_imports(request: Request, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """The most recent batches (newest first), without their reports; ``jobs``: the newest jobs
    (queued, running or finished; an administrator sees every one)."""
    limit, offset = min(max(limit, 1), 500), max(offset, 0)
    with services(request).session() as session:
        actor = require_actor(request, session)
        rows = batch_service.list_batches(session, limit=limit, offset=offset)
        items = [
            batch_service.batch_view(session, b, with_report=False)
            for b in rows
            if actor.admin or (actor.unit_id is not None and b.unit_id == actor.unit_id)
        ]
    jobs = _jobs(request).recent(actor, limit=limit, offset=offset)
    for job in jobs:
        job.pop("report", None)
    return {"items": items, "jobs": jobs}


def _batch_number(text: str) -> int | None:
    """A batch number in ASCII digits that fits a bigint, else None (then it may be a job id)."""
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


@router.get("/{import_id}", summary="An import job (status, progress, report) or a batch by number")
def get_import(request: Request, import_id: str) -> dict[str, Any]:
    """A job by its id, or a batch by its number."""
    with services(request).session() as session:
        actor = require_actor(request, session)
        batch_id = _batch_number(import_id)
        if batch_id is None:
            found = _jobs(request).get(import_id)
            if found is None or not _visible(actor, found[1]):
                raise NotFound(f"no import job {import_id:.64}")
            return found[0]
        batch = batch_service.get_batch(session, batch_id)
        if not actor.admin and (actor.unit_id is None or batch.unit_id != actor.unit_id):
            raise NotFound(f"no import batch {import_id}")
        return batch_service.batch_view(session, batch)


@router.post(
    "/{import_id}/rollback",
    summary="Roll a committed batch back (created: decommissioned; updated: restored)",
)
def rollback(request: Request, import_id: str) -> dict[str, Any]:
    """Undo a batch, named by its number or by the job that made it."""
    with services(request).session() as session:
        actor = require_actor(request, session)
        _require_writer(actor)
        batch_id = _batch_number(import_id)
        if batch_id is None:
            found = _jobs(request).get(import_id)
            if found is None or found[0]["batch_id"] is None or not _visible(actor, found[1]):
                raise NotFound(f"no committed batch for import {import_id:.64}")
            batch_id = found[0]["batch_id"]
        return batch_service.rollback_batch(session, batch_id, actor)
