"""``/api/v1/imports``: upload an inventory, follow its job, look at batches, roll one back."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from api.deps import require_actor, services
from api.responses import OrjsonResponse
from common.errors import InvalidInput, NotFound
from importers import batches as batch_service
from importers.jobs import ImportJob, ImportJobs
from importers.pipeline import ImportOptions
from registry.access import Action, Actor, require_role

router = APIRouter(prefix="/imports", tags=["imports"])
_jobs_lock = threading.Lock()
_CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^\w.\-]+")


def _jobs(request: Request) -> ImportJobs:
    """The app's job queue, made on first use."""
    with _jobs_lock:
        jobs: ImportJobs | None = getattr(request.app.state, "import_jobs", None)
        if jobs is None:
            svc = services(request)
            jobs = ImportJobs(svc.engine, svc.settings, svc.area)
            request.app.state.import_jobs = jobs
        return jobs


def _require_writer(actor: Actor) -> None:
    require_role(actor, Action.IMPORT)


def _safe_name(name: str | None, fallback: str) -> str:
    base = Path(name or fallback).name
    return _UNSAFE.sub("_", base) or fallback


def _save(upload: UploadFile, target: Path) -> None:
    with target.open("wb") as out:
        shutil.copyfileobj(upload.file, out, _CHUNK)


@router.post("", status_code=202, summary="Upload an inventory file and start its import job")
def start_import(
    request: Request,
    file: Annotated[
        UploadFile,
        File(description="the inventory: .geojson, .geojsonl, .gpkg, .zip (shapefile), .csv, .xlsx"),
    ],
    mapping: Annotated[UploadFile | None, File(description="a mapping profile (TOML) for this file")] = None,
    profile: Annotated[
        str | None, Form(description="a built-in profile name (default: szcg, 数字城管)")
    ] = None,
    zone: Annotated[str | None, Form(description="restrict to this zone; rows outside are rejected")] = None,
    crs: Annotated[
        str | None, Form(description="the file's coordinate system, e.g. EPSG:4547 or gcj02")
    ] = None,
    dry_run: Annotated[bool, Form()] = False,
    strict: Annotated[bool, Form(description="refuse the whole batch if any row is rejected")] = False,
    layer: Annotated[str | None, Form()] = None,
    encoding: Annotated[str | None, Form()] = None,
    source_system: Annotated[str | None, Form(description="scope of the file's source ids")] = None,
) -> OrjsonResponse:
    """Queue the import; poll ``GET /imports/{id}`` for progress and the report."""
    svc = services(request)
    with svc.session() as session:
        actor = require_actor(request, session)
    _require_writer(actor)
    if profile and "/" in profile:
        raise InvalidInput(
            "profile names a built-in profile; upload a profile file as 'mapping'", field="profile"
        )
    jobs = _jobs(request)
    job_id, folder = jobs.new_folder()
    name = _safe_name(file.filename, "upload")
    target = folder / name
    _save(file, target)
    mapping_path = None
    if mapping is not None:
        mapping_path = folder / ("mapping-" + _safe_name(mapping.filename, "profile.toml"))
        _save(mapping, mapping_path)
    options = ImportOptions(
        profile=profile,
        mapping=str(mapping_path) if mapping_path else None,
        zone=zone,
        crs=crs,
        dry_run=dry_run,
        strict=strict,
        layer=layer,
        encoding=encoding,
        source_system=source_system,
    )
    job = jobs.submit(job_id, folder, target, file.filename or name, actor, options)
    body = {"id": job.id, "status": job.status, "url": f"{request.url.path.rstrip('/')}/{job.id}"}
    return OrjsonResponse(body, status_code=202, headers={"Location": body["url"]})


def _visible(actor: Actor, job: ImportJob) -> bool:
    return actor.admin or job.actor.name == actor.name


@router.get("", summary="Recent import batches")
def list_imports(request: Request, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """The most recent batches (newest first), without their reports."""
    with services(request).session() as session:
        actor = require_actor(request, session)
        rows = batch_service.list_batches(session, limit=min(max(limit, 1), 500), offset=max(offset, 0))
        items = [
            batch_service.batch_view(session, b, with_report=False)
            for b in rows
            if actor.admin or (actor.unit_id is not None and b.unit_id == actor.unit_id)
        ]
    return {"items": items}


def _batch_number(text: str) -> int | None:
    """A batch number in ASCII digits that fits a bigint, else None (then it may be a job id)."""
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


@router.get("/{import_id}", summary="An import job (status, progress, report) or a batch by number")
def get_import(request: Request, import_id: str) -> dict[str, Any]:
    """A job by its id while this server remembers it, or a batch by its number."""
    with services(request).session() as session:
        actor = require_actor(request, session)
        job = _jobs(request).get(import_id)
        if job is not None:
            if not _visible(actor, job):
                raise NotFound(f"no import {import_id}")
            return job.view()
        batch_id = _batch_number(import_id)
        if batch_id is None:
            raise NotFound(f"no import job {import_id} (jobs are remembered until the server restarts)")
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
            job = _jobs(request).get(import_id)
            if job is None or job.batch_id is None or not _visible(actor, job):
                raise NotFound(f"no committed batch for import {import_id}")
            batch_id = job.batch_id
        return batch_service.rollback_batch(session, batch_id, actor)
