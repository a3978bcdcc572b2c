"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from api import access_log, errors
from api.deps import Services, services
from api.limits import BodyLimit
from api.responses import OrjsonResponse
from api.routes import assets, classes, imports, proposals, resolve, tiles, tokens, units, webmap, zones
from common.settings import Settings, get_settings
from gis.area import ServiceArea
from importers.jobs import ImportJobs
from registry.db import database_url, make_engine
from registry.resolution import Resolver, conninfo_from_url

API_PREFIX = "/api/v1"
# The map's page, script and the vendored MapLibre GL JS (api/static/maplibre-gl/README.md).
STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None, *, url: str | None = None) -> FastAPI:
    """Build the app for ``settings``; ``url`` overrides the database (tests pass their own)."""
    settings = settings or get_settings()
    db_url = url or database_url(settings)
    engine = make_engine(db_url, pool_size=settings.database.pool_size)
    area = ServiceArea.from_settings(settings)
    # The resolve endpoints run on their own async pools (see api/routes/resolve.py): lookups read at
    # the replica when one is configured, the resolution log is written to the primary.
    read_url = settings.database.read_url
    resolve_runtime = resolve.ResolveRuntime(
        settings,
        conninfo_from_url(db_url),
        Resolver(settings, area),
        read_conninfo=conninfo_from_url(read_url) if read_url else None,
    )
    import_jobs = ImportJobs(engine, settings, area)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await resolve_runtime.open()
        import_jobs.start()
        try:
            yield
        finally:
            await run_in_threadpool(import_jobs.shutdown)
            await resolve_runtime.close()
            engine.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="smartcode",
        version="0.1.0",
        description="智慧码 city-asset registry: who owns this pole, cable, lamp or manhole cover?",
        default_response_class=OrjsonResponse,
    )
    app.state.services = Services(settings=settings, engine=engine, area=area)
    app.state.resolve = resolve_runtime
    app.state.import_jobs = import_jobs
    errors.install(app)
    access_log.install()  # complaint coordinates never reach the access log
    # The resolve hot path is answered before FastAPI's routing (see api/routes/resolve.py).
    app.add_middleware(resolve.ResolveFastPath, path=f"{API_PREFIX}/resolve")
    uploads = (f"{API_PREFIX}/imports", f"{API_PREFIX}/zones/import", f"{API_PREFIX}/rules/import")
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_kb * 1024, exempt=uploads)

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(assets.router)
    api.include_router(units.router)
    api.include_router(classes.router)
    api.include_router(resolve.router)
    api.include_router(zones.router)
    api.include_router(imports.router)
    api.include_router(proposals.router)
    api.include_router(tokens.router)

    @api.get("/health", tags=["meta"], summary="Database reachable, schema revision, counts")
    def health(request: Request) -> dict[str, Any]:
        """Whether the service can answer, and what it holds."""
        with services(request).session() as session:
            row = session.execute(
                text("SELECT (SELECT version_num FROM alembic_version), (SELECT count(*) FROM assets)")
            ).one()
        return {"status": "ok", "revision": row[0], "assets": row[1], "county": settings.area.county_code}

    app.include_router(api)
    # Beside /api/v1: map clients take the tile URL template from the TileJSON (docs/tiles.md).
    app.include_router(tiles.router)
    app.include_router(webmap.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    return app
