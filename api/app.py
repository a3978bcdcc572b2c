"""The FastAPI application factory."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from api import access_log, docs, errors, openapi
from api.deps import Services, services
from api.limits import BodyLimit
from api.replicas import ReadRouting
from api.responses import OrjsonResponse
from api.routes import (
    assets,
    classes,
    complaints,
    disputes,
    features,
    hotspots,
    imports,
    labels,
    open311,
    proposals,
    resolve,
    scan,
    tiles,
    tokens,
    units,
    webhooks,
    webmap,
    zones,
)
from common.settings import Settings, WebhookSettings, get_settings
from gis.area import ServiceArea
from importers.jobs import ImportJobs
from registry.db import make_engine, service_url
from registry.log_partitions import PartitionKeeper
from registry.replica import embedded_standby, standby_read_url
from registry.resolution import Resolver, conninfo_from_url
from registry.webhook_process import DeliveryProcess
from registry.webhook_worker import WebhookWorker

API_PREFIX = "/api/v1"
# The map's page, script and the vendored MapLibre GL JS (api/static/maplibre-gl/README.md).
STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None, *, url: str | None = None) -> FastAPI:
    """Build the app for ``settings``; ``url`` overrides the database (tests pass their own)."""
    settings = settings or get_settings()
    db_url = url or service_url(settings)
    engine = make_engine(
        db_url, pool_size=settings.database.pool_size, connect_timeout_s=settings.database.connect_timeout_s
    )
    area = ServiceArea.from_settings(settings)
    # The resolve endpoints run on their own async pools (see api/routes/resolve.py): lookups read at
    # the replica while it is fit (api/replicas.py), the resolution log is written to the primary.
    # Without a read URL, the embedded cluster's standby (`smartcode db replica`), looked for at every
    # replica check: one created or removed while the app runs is taken up or let go without a restart.
    # Decided by the settings, not by ``url``: `smartcode serve` passes the embedded cluster's own.
    read_url = settings.database.read_url
    standby = embedded_standby(settings)
    locate = None if standby is None else partial(standby_read_url, standby)
    resolve_runtime = resolve.ResolveRuntime(
        settings,
        conninfo_from_url(db_url),
        Resolver(settings, area),
        read_url=read_url,
        locate_replica=locate,
    )
    import_jobs = ImportJobs(engine, settings, area)
    log_partitions = PartitionKeeper(engine, settings.resolve.log_months_ahead)
    scan_runtime = scan.ScanRuntime(settings, conninfo_from_url(db_url))
    # Webhooks are delivered by a child process of this one (SMARTCODE_WEBHOOKS_WORKER=process), a
    # thread of it (thread), or elsewhere (off: `smartcode worker`); several servers and workers share
    # the work through the tables. One child per API process: `smartcode serve` runs one API process.
    delivery = _delivery(settings.webhooks, conninfo_from_url(db_url))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await resolve_runtime.open()
        await scan_runtime.open()
        import_jobs.start()
        log_partitions.start()
        if delivery is not None:
            await run_in_threadpool(delivery.start)
        try:
            yield
        finally:
            if delivery is not None:
                await run_in_threadpool(delivery.stop)
            await run_in_threadpool(import_jobs.shutdown)
            await run_in_threadpool(log_partitions.stop)
            await scan_runtime.close()
            await resolve_runtime.close()
            engine.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="smartcode",
        version="0.1.0",
        description="智慧码 city-asset registry: who owns this pole, cable, lamp or manhole cover?",
        default_response_class=OrjsonResponse,
        docs_url=None,  # served by api/docs.py from local files
        redoc_url=None,
    )
    app.state.services = Services(settings=settings, engine=engine, area=area, reads=resolve_runtime.reads)
    app.state.resolve = resolve_runtime
    app.state.import_jobs = import_jobs
    app.state.scan = scan_runtime
    app.state.webhook_delivery = delivery
    errors.install(app)
    access_log.install()  # complaint coordinates never reach the access log
    docs.install(app)
    app.add_middleware(scan.ScanFastPath)
    # Opening a dispute may carry evidence files, a complaint photos: those routes cap their own bodies
    # (api/routes/disputes.py, api/routes/complaints.py).
    uploads = (
        f"{API_PREFIX}/imports",
        f"{API_PREFIX}/zones/import",
        f"{API_PREFIX}/rules/import",
        f"{API_PREFIX}/disputes",
        f"{API_PREFIX}/complaints",
    )
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.api.max_body_kb * 1024,
        exempt=uploads,
        # Evidence added later (补充证据) is capped by its route like the opening's, not at the JSON size.
        exempt_pattern=re.compile(rf"{API_PREFIX}/disputes/[0-9]+/evidence"),
        # The report form has its own cap (answered as a page); this one catches bodies without a length.
        by_prefix={"/c/": 2 * scan.REPORT_MAX_BYTES},
        answer_by_prefix={"/open311/": open311.body_too_large},
    )
    # The resolve hot path is answered before FastAPI's routing (see api/routes/resolve.py), and
    # added last so it is the outermost layer: a GET it never reads the body of, so the layers
    # above (body cap, scan page) have nothing to do for it; each cost it some 2 % of a lookup.
    app.add_middleware(resolve.ResolveFastPath, path=f"{API_PREFIX}/resolve")

    # Outermost: which server answered (X-Served-By) and the writer's WAL position for read-your-writes.
    app.add_middleware(
        ReadRouting,
        router=resolve_runtime.reads,
        primary=resolve_runtime.pool,
        window_s=settings.database.read_your_writes_s,
    )

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(assets.router)
    api.include_router(units.router)
    api.include_router(classes.router)
    api.include_router(resolve.router)
    api.include_router(zones.router)
    api.include_router(imports.router)
    api.include_router(proposals.router)
    api.include_router(tokens.router)
    api.include_router(labels.router)
    api.include_router(complaints.router)
    api.include_router(disputes.router)
    api.include_router(webhooks.router)
    api.include_router(hotspots.router)

    @api.get("/health", tags=["meta"], summary="Database reachable, schema revision, counts")
    def health(request: Request) -> dict[str, Any]:
        """Whether the service can answer, and what it holds."""
        with services(request).session() as session:
            row = session.execute(
                text("SELECT (SELECT version_num FROM alembic_version), (SELECT count(*) FROM assets)")
            ).one()
        answer: dict[str, Any] = {
            "status": "ok",
            "revision": row[0],
            "assets": row[1],
            "county": settings.area.county_code,
        }
        replica = resolve_runtime.reads.describe()
        if replica is not None:
            # The replica's state and lag (bytes and seconds), as the last check found them.
            answer["replica"] = replica
        return answer

    # Open311 GeoReport v2 sits beside /api/v1: its clients expect the specification's paths and errors.
    # Its routes come first: the router tries routes in order, and a case system posting hundreds of
    # complaints a second should not pay for matching every /api/v1 route first (no path overlaps).
    app.include_router(open311.router)
    app.include_router(api)
    # Beside /api/v1: map clients take the tile URL template from the TileJSON (docs/tiles.md).
    app.include_router(tiles.router)
    app.include_router(webmap.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # The page a QR label opens lives at the site's root: /c/{code} is what labels print.
    app.include_router(scan.router)
    # OGC API - Features sits beside /api/v1: GIS clients start from its own landing page.
    app.include_router(features.router)
    openapi.install(app)

    return app


def _delivery(settings: WebhookSettings, conninfo: str) -> DeliveryProcess | WebhookWorker | None:
    """What delivers webhooks for this server, as ``SMARTCODE_WEBHOOKS_WORKER`` says (not started)."""
    if settings.worker == "process":
        return DeliveryProcess(conninfo, settings)
    if settings.worker == "thread":
        return WebhookWorker(conninfo, settings)
    return None
