"""``/api/v1/resolve``, ``/api/v1/resolutions`` and ``/api/v1/categories``: who is responsible, and why.

The resolve endpoint is the hot path of the service (the case system and QR scans), so it bypasses
the ORM: an async psycopg pool with prepared statements, orjson bodies built once, and the
resolution log written in batches (see ``registry.resolution_log.BatchLog``).

Lookups read on read-only connections, on the replica at ``SMARTCODE_DATABASE_READ_URL`` (or the
embedded standby) while it is fit, else on the primary (api/replicas.py); the resolution log is
written, and read back, on the primary only.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from psycopg import AsyncConnection
from pydantic import BaseModel, Field
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import Services, client_address, cookie_header_actor, parse_bearer, require_actor, services
from api.errors import error_response
from api.params import RowId
from api.pool import ResilientPool
from api.replicas import ReadRouter
from common.errors import InvalidInput, SmartcodeError
from common.settings import Settings
from registry import categories as category_service
from registry import tokens
from registry.access import ANONYMOUS, Action, Actor, require
from registry.db import transaction
from registry.resolution import LocationQuery, Resolver, parse_time, resolution_connection_kwargs
from registry.resolution_log import BatchLog, DirectLog, ResolutionLog, get_resolution, list_resolutions

router = APIRouter(tags=["resolution"])
T = TypeVar("T")

RESOLVE_DESCRIPTION = """
From a scanned code or a complaint location to the responsible owner, maintainer and supervisor,
with the rule that decided and one explanation line per step.

**By code** (`?code=...`, with or without separators, or the whole QR URL `/c/{code}?s=...`):
**public**, like `GET /assets/{code}` anonymously: a passer-by who scans a label learns what the
asset is, its state and whom to call (names and phones), nothing that maps the network (no position,
reasons or notes; a token gets the full answer). Anonymous lookups are rate-limited per client
(429 with `Retry-After`). A wrong check digit answers 400 with the registered codes one typo away;
a well-formed unknown code answers 404.

**By location** (`?lon=..&lat=..[&crs=..][&class=..][&category=..][&at=..]`): **needs a bearer
token** (case system, dispatchers): it finds assets near any point, so anonymous access would let
anyone map the network. `crs` is `wgs84` (default), `gcj02`, `bd09`, `cgcs2000` or `EPSG:n`
(for projected systems `lon`/`lat` carry easting/northing). `class` (repeatable or comma-separated,
codes or names) and/or `category` (complaint category, see `/categories`) say what the complaint
is about; `at` (ISO 8601; no zone = deployment time zone) resolves as of the complaint's time.

Rule chain: 1 nearest asset within a tolerance fitting its geometry, 2 ambiguity between owners,
3 responsibility rules of the zones, 4 street-office jurisdiction, 5 unresolved with the reason.
Every answer is logged; its `id` opens it again at `GET /resolutions/{id}` (token needed).
"""

_LOCATION_KEYS = ("lon", "lat", "x", "y", "crs", "class", "category")


class TokenCache:
    """Checked bearer tokens for a short while, so the hot path does not query api_tokens each time."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._entries: dict[str, tuple[float, Actor]] = {}

    def clear(self) -> None:
        """Forget every checked token (a token was revoked through this process)."""
        self._entries.clear()

    async def actor(self, svc: Services, authorization: str | None, *, cached: bool = True) -> Actor:
        """The caller for an Authorization header: the anonymous actor when there is no token.

        ``cached=False`` checks the token against the database every time (reading the resolution log:
        a revoked token must stop working at once there, not up to ``ttl_s`` later).
        """
        token = parse_bearer(authorization)
        if token is None:
            return ANONYMOUS
        # Keyed by the token's sha256, like the api_tokens lookup: a dict probe on the hash of a random
        # secret reveals nothing usable through timing, so no constant-time comparison is needed here.
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        if cached:
            hit = self._entries.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]

        def check() -> Actor:
            with transaction(svc.engine) as session:
                return tokens.authenticate(session, token, svc.settings)

        actor = await run_in_threadpool(check)
        if not cached:
            return actor
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (now + self._ttl, actor)
        return actor


class ResolveRuntime:
    """The read pool, the resolver, the log writer (on the primary) and the token cache of one app."""

    def __init__(
        self,
        settings: Settings,
        conninfo: str,
        resolver: Resolver,
        *,
        read_url: str | None = None,
        locate_replica: Callable[[], str | None] | None = None,
    ) -> None:
        """``conninfo`` is the primary's; lookups read at ``read_url`` (a replica) while it is fit, or
        at the replica ``locate_replica`` names at each check (the embedded standby)."""
        self.settings = settings
        self.conninfo = conninfo
        self.reads = ReadRouter(settings, conninfo, read_url, locate=locate_replica)
        self.resolver = resolver
        self.tokens = TokenCache(settings.api.token_cache_seconds)
        # Lookups on the primary (no replica, or it is down or behind): read-only connections, so a
        # lookup cannot write, here or on a replica. The pools answer DatabaseUnavailable within
        # connect_timeout_s while the database is away, and renew themselves when it is back
        # (api/pool.py).
        self.pool = ResilientPool(
            conninfo,
            min_size=min(2, settings.resolve.pool_size),
            max_size=settings.resolve.pool_size,
            timeout_s=settings.database.connect_timeout_s,
            kwargs=resolution_connection_kwargs(read_only=True),
        )
        # The log on the primary: written by DirectLog (sync mode), read back by /resolutions. The
        # batch writer keeps a connection of its own.
        self.log_pool = ResilientPool(
            conninfo,
            min_size=1,
            max_size=2,
            timeout_s=settings.database.connect_timeout_s,
            kwargs={"autocommit": True, "prepare_threshold": 0},
        )
        self.log: ResolutionLog
        self._batch: BatchLog | None = None
        if settings.resolve.log_mode == "batch":
            self._batch = BatchLog(
                self._log_connection,
                flush_ms=settings.resolve.log_flush_ms,
                batch_rows=settings.resolve.log_batch_rows,
            )
            self.log = self._batch
        else:
            self.log = DirectLog(self.log_pool.connection)

    @property
    def read_conninfo(self) -> str:
        """Where lookups read when the replica is fit: its connection string, else the primary's."""
        return self.reads.replica_conninfo or self.conninfo

    async def _log_connection(self) -> AsyncConnection[Any]:
        return await AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=self.settings.database.connect_timeout_s
        )

    async def open(self) -> None:
        """Open the pools, read the class table, start the log flusher."""
        await self.pool.open(wait=True)
        await self.log_pool.open(wait=True)
        async with self.pool.connection() as conn:
            await self.resolver.prepare(conn)
        await self.reads.open()
        if self._batch is not None:
            self._batch.start()
        # Everything allocated at start-up (routes, pyproj, shapely, the ORM) lives for the whole process:
        # moving it out of the collector's reach keeps full collections short, which were the slowest
        # requests (p99) under load.
        gc.collect()
        gc.freeze()

    async def close(self) -> None:
        """Flush the log and close every connection."""
        try:
            if self._batch is not None:
                await self._batch.close()
        finally:
            await self.reads.close()
            await self.pool.close()
            await self.log_pool.close()

    async def read(self, lookup: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """``lookup`` on the replica while it is fit, else on the primary's read-only pool."""
        return await self.reads.run(self.pool, lookup)

    async def flush_log(self) -> None:
        """Make every answer given so far readable from the table."""
        if self._batch is not None:
            await self._batch.flush()


def runtime(request: Request) -> ResolveRuntime:
    """The app's resolution runtime."""
    return request.app.state.resolve


def _number(text: str | None, name: str) -> float:
    if text is None or not text.strip():
        raise InvalidInput(f"{name} is missing: a location needs both lon and lat (or x and y)", field=name)
    try:
        return float(text)
    except ValueError as exc:
        raise InvalidInput(f"{name} {text!r} is not a number", field=name, given=text) from exc


_OPENAPI_PARAMETERS = [
    {
        "name": "code",
        "in": "query",
        "schema": {"type": "string"},
        "description": "scanned or typed smart code, or QR URL",
    },
    {
        "name": "lon",
        "in": "query",
        "schema": {"type": "number"},
        "description": "longitude, or easting for projected crs",
    },
    {
        "name": "lat",
        "in": "query",
        "schema": {"type": "number"},
        "description": "latitude, or northing for projected crs",
    },
    {
        "name": "crs",
        "in": "query",
        "schema": {"type": "string", "default": "wgs84"},
        "description": "wgs84 | gcj02 | bd09 | cgcs2000 | EPSG:n (case-insensitive)",
    },
    {
        "name": "class",
        "in": "query",
        "schema": {"type": "array", "items": {"type": "string"}},
        "description": "component class code or name; repeatable or comma-separated",
    },
    {
        "name": "category",
        "in": "query",
        "schema": {"type": "string"},
        "description": "complaint category (案件类别)",
    },
    {"name": "at", "in": "query", "schema": {"type": "string"}, "description": "complaint time, ISO 8601"},
]


async def _caller(rt: ResolveRuntime, svc: Services, authorization: str | None, cookie: str | None) -> Actor:
    """The bearer token's actor, else the map's login session (a GET: all this handler answers)."""
    if authorization is None and cookie is None:
        return ANONYMOUS  # a passer-by's scan, the common case: no awaiting for nothing
    actor = await rt.tokens.actor(svc, authorization)
    if actor.anonymous and cookie:
        session_actor: Actor | None = await run_in_threadpool(cookie_header_actor, svc, cookie)
        return session_actor or actor
    return actor


async def answer(
    rt: ResolveRuntime,
    svc: Services,
    params: QueryParams,
    authorization: str | None,
    client: str,
    cookie: str | None = None,
) -> bytes:
    """The JSON body for a resolve request (the route and the fast path share it)."""
    code = params.get("code")
    if code is not None:
        extra = [k for k in _LOCATION_KEYS if k in params]
        if extra:
            raise InvalidInput(f"give either code or a location, not both (also got {', '.join(extra)})")
        actor = require(await _caller(rt, svc, authorization, cookie), Action.READ_PUBLIC)
        if actor.anonymous:
            svc.anonymous_limit.check(client)
        # Anonymous: the passer-by view (no position, no reasons, no internal fields;
        # registry.access.public_resolution), encoded once per asset state by the resolver. A lookup:
        # on the replica while it is fit (api/replicas.py).
        _, body = await rt.read(
            lambda conn: rt.resolver.resolve_code(
                conn,
                code,
                at=params.get("at"),
                log=rt.log,
                actor=actor.name,
                channel="api",
                public=actor.anonymous,
            )
        )
        return body
    if not any(k in params for k in ("lon", "lat", "x", "y")):
        raise InvalidInput("give code=... (a scanned code) or lon=...&lat=... (a location)")
    actor = require(await _caller(rt, svc, authorization, cookie), Action.RESOLVE_LOCATION)
    query = LocationQuery(
        x=_number(params.get("lon", params.get("x")), "lon"),
        y=_number(params.get("lat", params.get("y")), "lat"),
        crs=params.get("crs"),
        classes=params.getlist("class"),
        category=params.get("category"),
        at=params.get("at"),
    )
    _, body = await rt.read(
        lambda conn: rt.resolver.resolve_location(conn, query, log=rt.log, actor=actor.name, channel="api")
    )
    return body


@router.get(
    "/resolve",
    summary="Who is responsible for this code or this place (public by code, token by location)",
    description=RESOLVE_DESCRIPTION,
    openapi_extra={"parameters": _OPENAPI_PARAMETERS},
    response_class=Response,
    responses={429: {"description": "too many anonymous lookups from this address (see Retry-After)"}},
)
async def resolve(request: Request) -> Response:
    """Resolve by code or by location (normally served by :class:`ResolveFastPath`; see the description)."""
    body = await answer(
        runtime(request),
        services(request),
        request.query_params,
        request.headers.get("authorization"),
        client_address(request),
        request.headers.get("cookie"),
    )
    return Response(body, media_type="application/json")


class ResolveFastPath:
    """Serves ``GET /api/v1/resolve`` straight from ASGI, before FastAPI's routing and request objects.

    Measured: routing through ~40 routes, the request/response classes and the exception middleware
    cost about a third of the time of a lookup by code. This handler gives the same answers and the
    same error envelope (``api/errors.py``); the FastAPI route above stays for the OpenAPI document
    and for any caller that reaches it another way.
    """

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer resolve requests; pass everything else on."""
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        authorization = cookie = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"cookie":
                cookie = value.decode("latin-1")
        headers = [(b"content-type", b"application/json")]
        client = scope.get("client")
        try:
            body = await answer(
                state.resolve,
                state.services,
                QueryParams(scope["query_string"]),
                authorization,
                client[0] if client else "unknown",
                cookie,
            )
            status = 200
        except SmartcodeError as exc:
            status, payload, extra = error_response(exc)
            body = orjson.dumps(payload, default=str)
            headers.extend((name.lower().encode(), value.encode()) for name, value in extra.items())
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@router.get("/resolutions/{resolution_id}", summary="One logged answer with its query (token)")
async def get_logged(request: Request, resolution_id: RowId) -> Response:
    """What was answered, to whom and why: for disputes about a past dispatch."""
    rt = runtime(request)
    require(
        await rt.tokens.actor(services(request), request.headers.get("authorization"), cached=False),
        Action.READ_FULL,
    )
    await rt.flush_log()
    async with rt.log_pool.connection() as conn:
        data = await get_resolution(conn, resolution_id)
    return Response(orjson.dumps(data), media_type="application/json")


@router.get("/resolutions", summary="Logged answers, newest first (token)")
async def list_logged(
    request: Request,
    asset: Annotated[str | None, Query(description="only answers about this asset code")] = None,
    status: Annotated[str | None, Query(description="resolved | ambiguous | fallback | unresolved")] = None,
    since: Annotated[str | None, Query(description="ISO 8601 time")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The resolution log, filtered."""
    rt = runtime(request)
    require(
        await rt.tokens.actor(services(request), request.headers.get("authorization"), cached=False),
        Action.READ_FULL,
    )
    await rt.flush_log()
    async with rt.log_pool.connection() as conn:
        rows = await list_resolutions(
            conn, asset=asset, status=status, since=parse_time(since, rt.settings.area.timezone), limit=limit
        )
    return Response(orjson.dumps({"items": rows}), media_type="application/json")


# --- complaint categories ----------------------------------------------------------------------------


class CategoryBody(BaseModel):
    """A complaint category: the classes it concerns (codes or names) and other spellings."""

    classes: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    description: str | None = None
    reason: str | None = None


@router.get("/categories", summary="Complaint categories and the classes they concern (public)")
def list_categories(request: Request, include_inactive: bool = False) -> list[dict[str, Any]]:
    """The deployment's category table; public, so a case system can map its categories."""
    with services(request).session() as session:
        return category_service.list_categories(session, include_inactive=include_inactive)


@router.get("/categories/{name}", summary="One complaint category")
def get_category(request: Request, name: str) -> dict[str, Any]:
    """The category with this name."""
    with services(request).session() as session:
        return category_service.get_category(session, name)


@router.put("/categories/{name}", summary="Create or replace a complaint category (administrators)")
def put_category(request: Request, name: str, body: CategoryBody, response: Response) -> dict[str, Any]:
    """Set the classes and aliases of a category; 201 when it is new."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_CATEGORIES)
        view, outcome = category_service.set_category(
            session,
            actor,
            category_service.CategoryDef(
                name=name,
                classes=tuple(body.classes),
                aliases=tuple(body.aliases),
                description=body.description,
            ),
            reason=body.reason,
        )
    runtime(request).resolver.categories.invalidate()
    response.status_code = 201 if outcome == "created" else 200
    return {**view, "outcome": outcome}


@router.delete("/categories/{name}", summary="Deactivate a complaint category (administrators)")
def delete_category(request: Request, name: str, reason: str | None = None) -> dict[str, Any]:
    """Stop accepting a category; it stays for the rules and log entries that name it."""
    with services(request).session() as session:
        actor = require_actor(request, session, Action.MANAGE_CATEGORIES)
        view = category_service.deactivate_category(session, actor, name, reason=reason)
    runtime(request).resolver.categories.invalidate()
    return view


def parse_optional_time(text: str | None, settings: Settings) -> dt.datetime | None:
    """A validity time from a query or form field (ISO 8601; no zone = deployment zone)."""
    return parse_time(text, settings.area.timezone)
