"""Ownership resolution: from a scanned code or a complaint location to the responsible units.

The rule chain for a location, each step recorded in the answer's ``explanation``:

1. nearest asset of the concerned classes within a tolerance that fits its geometry (metres, on
   the metric column ``assets.geom_m``), nearest first;
2. ambiguity: assets of different owners nearly equally close make the answer ``ambiguous``;
3. responsibility rules (职责清单) for the class or category in the zones containing the point;
4. jurisdiction fallback (属地兜底): the street office of the street zone containing the point;
5. otherwise ``unresolved``, with the reason.

Everything is evaluated as of the complaint's time (``at``): responsibility periods of assets,
zone generations and rule versions.

This module is the hot path of the API (thousands of lookups a second), so it talks to PostgreSQL
through psycopg directly (async, prepared statements, one round trip per step, no ORM) and builds
plain dicts serialised once with orjson. The same code serves the CLI and the tests through
:func:`run_sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
import zoneinfo
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson
import psycopg
from psycopg import AsyncConnection
from sqlalchemy.engine import make_url

from common.errors import CheckDigitMismatch, InvalidInput, NotFound
from common.settings import Settings
from gis.area import ServiceArea
from gis.crs import WGS84, Crs, parse_crs, to_wgs84
from registry.codes import near_misses, normalize, parse_code
from registry.names import fold as _fold

STATUS_RESOLVED = "resolved"
STATUS_AMBIGUOUS = "ambiguous"
STATUS_FALLBACK = "fallback"
STATUS_UNRESOLVED = "unresolved"

RULE_CODE = "code"
RULE_NEAREST = "nearest_asset"
RULE_AMBIGUITY = "ambiguity"
RULE_RESPONSIBILITY = "responsibility_rule"
RULE_JURISDICTION = "jurisdiction"
RULE_NONE = "none"

# Finer or more special-purpose zones win ties between rules of equal priority and specificity.
LEVEL_RANK = {"pilot": 5, "contract": 4, "grid": 3, "community": 2, "street": 1, None: 0}
LEVEL_LABEL = {
    "pilot": "pilot zone",
    "contract": "contract area",
    "grid": "grid",
    "community": "community",
    "street": "street",
    None: "whole district",
}
# Clocks disagree a little; a complaint time a few minutes ahead is still "now".
_CLOCK_SKEW = dt.timedelta(minutes=5)
# The class catalogue is re-read at most this often when a client names a class it does not know.
_CATALOG_RELOAD_S = 5.0

T = TypeVar("T")
log = logging.getLogger("smartcode.resolution")


def conninfo_from_url(url: str) -> str:
    """A libpq connection string from a SQLAlchemy URL (``postgresql+psycopg://...``)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def display_code(code: str) -> str:
    """The grouped printed form of a 17-digit code, e.g. ``440310-0118-000123-4``."""
    return f"{code[:6]}-{code[6:10]}-{code[10:16]}-{code[16:]}"


def _m(value: float) -> str:
    return f"{value:.1f} m"


def _unit(row: Sequence[Any], start: int) -> dict[str, Any] | None:
    """A unit summary from five consecutive columns (id, name, credit code, phone, verified)."""
    unit_id = row[start]
    if unit_id is None:
        return None
    return {
        "id": unit_id,
        "name": row[start + 1],
        "credit_code": row[start + 2],
        "phone": row[start + 3],
        "verified": row[start + 4],
    }


def _who(unit: dict[str, Any] | None) -> str:
    if unit is None:
        return "none recorded"
    phone = f", tel {unit['phone']}" if unit.get("phone") else ""
    flag = "" if unit.get("verified", True) else " (unverified)"
    return f"{unit['name']}{flag}{phone}"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# ------------------------------------------------------------------------------------------------
# Configuration and reference data
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolveConfig:
    """Tolerances, ambiguity margins and deployment facts the resolver needs."""

    county: str
    metric_srid: int
    timezone: str
    point_tolerance_m: float
    line_tolerance_m: float
    polygon_tolerance_m: float
    ambiguity_m: float
    ambiguity_ratio: float
    candidates: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ResolveConfig:
        """Read the resolution settings (``SMARTCODE_RESOLVE_*``)."""
        return cls(
            county=settings.area.county_code,
            metric_srid=settings.area.metric_srid,
            timezone=settings.area.timezone,
            point_tolerance_m=settings.resolve.point_tolerance_m,
            line_tolerance_m=settings.resolve.line_tolerance_m,
            polygon_tolerance_m=settings.resolve.polygon_tolerance_m,
            ambiguity_m=settings.resolve.ambiguity_m,
            ambiguity_ratio=settings.resolve.ambiguity_ratio,
            candidates=max(2, settings.resolve.candidates),
        )

    def tolerance(self, geometry_type: str) -> float:
        """The search radius in metres for assets of a class with this geometry type."""
        if geometry_type == "line":
            return self.line_tolerance_m
        if geometry_type == "polygon":
            return self.polygon_tolerance_m
        return self.point_tolerance_m

    def margin(self, nearest_m: float) -> float:
        """How much farther than the nearest asset another one may be and still count as 'as close'."""
        return max(self.ambiguity_m, nearest_m * (self.ambiguity_ratio - 1.0))


@dataclass(frozen=True)
class ClassInfo:
    """What the resolver needs of a component class."""

    code: str
    name: str
    geometry_type: str


class ClassCatalog:
    """Component classes by code, name and alias, read from the database and refreshed on a miss."""

    def __init__(self) -> None:
        self.by_code: dict[str, ClassInfo] = {}
        self._by_name: dict[str, str] = {}
        self._loaded_at = -math.inf
        self._lock = asyncio.Lock()

    async def load(self, conn: AsyncConnection[Any]) -> None:
        """(Re)read the class table."""
        cur = await conn.execute("SELECT code, name, geometry_type, aliases FROM component_classes")
        by_code: dict[str, ClassInfo] = {}
        by_name: dict[str, str] = {}
        for code, name, geometry_type, aliases in await cur.fetchall():
            by_code[code] = ClassInfo(code, name, geometry_type)
            for label in (name, *(aliases or ())):
                by_name.setdefault(_fold(label), code)
        self.by_code, self._by_name = by_code, by_name
        self._loaded_at = time.monotonic()

    async def lookup(self, conn: AsyncConnection[Any], given: str) -> ClassInfo:
        """The class named by a 4-digit code, a name or an alias; ``InvalidInput`` when unknown."""
        key = _fold(given)
        found = self._find(key)
        if found is None and time.monotonic() - self._loaded_at > _CATALOG_RELOAD_S:
            async with self._lock:
                if time.monotonic() - self._loaded_at > _CATALOG_RELOAD_S:
                    await self.load(conn)
            found = self._find(key)
        if found is None:
            raise InvalidInput(
                f"unknown component class {given!r}: give a 4-digit class code (e.g. 0118) or a class name "
                "(e.g. 路灯); GET /api/v1/classes lists them",
                field="class",
                given=given,
            )
        return found

    def _find(self, key: str) -> ClassInfo | None:
        if key in self.by_code:
            return self.by_code[key]
        code = self._by_name.get(key)
        return self.by_code[code] if code else None


class CategoryCache:
    """Active complaint categories by name and alias, re-read every few seconds or when told.

    The table is small and read on every complaint, so it is kept in memory; a change made through
    this process's API is seen at once (``invalidate``), one made elsewhere within ``ttl_s``.
    """

    def __init__(self, ttl_s: float = 5.0) -> None:
        self.ttl_s = ttl_s
        self._by_key: dict[str, tuple[str, list[str]]] = {}
        self._names: list[str] = []
        self._loaded_at = -math.inf
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Forget the cached table (after a change through the API)."""
        self._loaded_at = -math.inf

    async def _load(self, conn: AsyncConnection[Any]) -> None:
        cur = await conn.execute(
            "SELECT name, class_codes, aliases FROM complaint_categories WHERE active ORDER BY name",
            prepare=True,
        )
        by_key: dict[str, tuple[str, list[str]]] = {}
        names = []
        for name, class_codes, aliases in await cur.fetchall():
            names.append(name)
            entry = (name, list(class_codes or []))
            for alias in aliases or ():
                by_key.setdefault(_fold(alias), entry)
            by_key[_fold(name)] = entry  # a name wins over another category's alias
        self._by_key, self._names = by_key, names
        self._loaded_at = time.monotonic()

    async def lookup(self, conn: AsyncConnection[Any], given: str) -> tuple[str, list[str]]:
        """The category's name and class codes; ``InvalidInput`` listing the known ones otherwise."""
        if time.monotonic() - self._loaded_at > self.ttl_s:
            async with self._lock:
                if time.monotonic() - self._loaded_at > self.ttl_s:
                    await self._load(conn)
        found = self._by_key.get(_fold(given))
        if found is None:
            known = self._names
            raise InvalidInput(
                f"unknown complaint category {given!r}; known categories: {', '.join(known[:30])}"
                + (" ..." if len(known) > 30 else ""),
                field="category",
                given=given,
            )
        return found


def parse_time(text: str | None, timezone: str) -> dt.datetime | None:
    """A complaint time from ISO 8601 text; a time without zone is read in the deployment's zone."""
    if text is None or not text.strip():
        return None
    raw = text.strip()
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError as exc:
        raise InvalidInput(
            f"time {text!r} is not ISO 8601; write e.g. 2025-03-02T08:30:00+08:00 or 2025-03-02",
            field="at",
            given=text,
        ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return value


# ------------------------------------------------------------------------------------------------
# The resolution log
# ------------------------------------------------------------------------------------------------


def log_entry(
    log_id: int,
    at: dt.datetime,
    *,
    actor: str,
    channel: str,
    query: dict[str, Any],
    status: str,
    rule: str | None,
    asset_code: str | None,
    owner_id: int | None,
    answer: bytes,
) -> bytes:
    """One ``resolution_log`` row as a JSON object, embedding the answer's bytes as they were sent."""
    head = orjson.dumps(
        {
            "id": log_id,
            "at": at.isoformat(),
            "actor": actor,
            "channel": channel,
            "query": query,
            "status": status,
            "rule": rule,
            "asset_code": asset_code,
            "owner_id": owner_id,
        }
    )
    # Splicing bytes instead of re-serialising the answer: it is the largest part, already encoded.
    return head[:-1] + b',"answer":' + answer + b"}"


LOG_COLUMNS = "id, at, actor, channel, query, status, rule, asset_code, owner_id, answer"
# Rows travel as one JSON array parameter: one statement per batch, and the parsing happens in the
# server (another core) rather than in the API's event loop.
_LOG_INSERT = (
    f"INSERT INTO resolution_log ({LOG_COLUMNS}) SELECT {LOG_COLUMNS} "
    "FROM jsonb_populate_recordset(NULL::resolution_log, %s::jsonb)"
)


class ResolutionLog(Protocol):
    """Where answers are recorded: an id first (it goes into the answer), then the entry."""

    async def reserve_id(self, conn: AsyncConnection[Any]) -> int:
        """A fresh log id."""
        ...

    async def write(self, conn: AsyncConnection[Any], entry: bytes) -> None:
        """Record the entry, a JSON object from :func:`log_entry` (now or soon)."""
        ...


class DirectLog:
    """Writes each entry before the answer is returned (CLI, tests, ``resolution_log_mode=sync``)."""

    async def reserve_id(self, conn: AsyncConnection[Any]) -> int:
        """A fresh id from the log's sequence."""
        cur = await conn.execute("SELECT nextval('resolution_log_id_seq')", prepare=True)
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def write(self, conn: AsyncConnection[Any], entry: bytes) -> None:
        """INSERT the entry on the caller's connection."""
        await conn.execute(_LOG_INSERT, ((b"[" + entry + b"]").decode(),), prepare=True)


class BatchLog:
    """Queues entries in memory and writes them with one INSERT every ``flush_ms`` or ``batch_rows``.

    What a crash loses: the entries queued since the last flush (at most ``flush_ms`` of answers,
    already sent to their callers). Ids come from the log's sequence in blocks, so an id is known
    before the row exists; gaps in ids after a restart are expected.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[AsyncConnection[Any]]],
        *,
        flush_ms: float = 50.0,
        batch_rows: int = 1000,
        id_block: int = 1000,
    ) -> None:
        self._connect = connect
        self._flush_s = flush_ms / 1000.0
        self._batch_rows = batch_rows
        self._id_block = id_block
        self._ids: deque[int] = deque()
        self._pending: list[bytes] = []
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection[Any] | None = None
        self._closing = False
        self.written = 0
        self.failures = 0
        self.dropped = 0
        # While the database is away the queue grows; past this many rows the oldest are dropped (and
        # counted) rather than letting the API run out of memory.
        self.max_pending = max(batch_rows * 100, 10_000)

    def start(self) -> None:
        """Start the background flusher (call inside the running event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def reserve_id(self, conn: AsyncConnection[Any]) -> int:
        """The next id of the current block; a new block costs one query per ``id_block`` answers."""
        if not self._ids:
            cur = await conn.execute(
                "SELECT nextval('resolution_log_id_seq') FROM generate_series(1, %s)",
                (self._id_block,),
                prepare=True,
            )
            fresh = [int(r[0]) for r in await cur.fetchall()]
            if not self._ids:  # another request may have refilled while this one waited
                self._ids.extend(fresh)
        return self._ids.popleft()

    async def write(self, conn: AsyncConnection[Any], entry: bytes) -> None:
        """Queue the entry; it reaches the table at the next flush."""
        if len(self._pending) >= self.max_pending:
            del self._pending[: len(self._pending) - self.max_pending + 1]
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("resolution log: database unreachable, %d entries dropped so far", self.dropped)
        self._pending.append(entry)
        if len(self._pending) >= self._batch_rows:
            self._wake.set()

    async def flush(self) -> None:
        """Write everything queued so far (the read endpoints call this so they see their own answers)."""
        async with self._flush_lock:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._insert(batch)
                except (psycopg.Error, OSError):
                    self.failures += 1
                    self._pending = batch + self._pending  # keep them for the next attempt
                    if self._conn is not None:
                        await self._conn.close()
                    self._conn = None
                    raise

    async def _insert(self, batch: list[bytes]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()
        await self._conn.execute(_LOG_INSERT, ((b"[" + b",".join(batch) + b"]").decode(),))
        self.written += len(batch)

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._flush_s)
            self._wake.clear()
            try:
                await self.flush()
            except (psycopg.Error, OSError):
                await asyncio.sleep(self._flush_s)  # database away: retry later, keep the queue

    async def close(self) -> None:
        """Flush what is queued and stop the flusher."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        try:
            await self.flush()
        finally:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


# ------------------------------------------------------------------------------------------------
# SQL
# ------------------------------------------------------------------------------------------------

_UNIT_COLS = "{a}.id, {a}.name, {a}.credit_code, {a}.phone, {a}.verified"
_NAMED_UNIT_COLS = (
    "{a}.id AS {a}_id, {a}.name AS {a}_name, {a}.credit_code AS {a}_cc, {a}.phone AS {a}_phone, "
    "{a}.verified AS {a}_verified"
)
_NO_UNIT = "NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::boolean"


def _units(*aliases: str, named: bool = False) -> str:
    template = _NAMED_UNIT_COLS if named else _UNIT_COLS
    return ", ".join(template.format(a=a) for a in aliases)


_CODE_SQL_NOW = f"""
SELECT a.code, a.class_code, a.state, a.in_use, a.decommissioned_at, a.decommission_reason,
       ST_X(p.pt), ST_Y(p.pt), a.installed_on, true, {_units("o", "m", "s")}
FROM assets a
CROSS JOIN LATERAL (SELECT ST_PointOnSurface(a.geom) AS pt) p
LEFT JOIN units o ON o.id = a.owner_id
LEFT JOIN units m ON m.id = a.maintainer_id
LEFT JOIN units s ON s.id = a.supervisor_id
WHERE a.code = %s
"""

# The parties at a past time: the asset's current units if their period had begun, else the closed
# period covering that time (periods never overlap, so at most one row).
_PARTIES_AT = """
LEFT JOIN LATERAL (
    SELECT true AS found, a.owner_id, a.maintainer_id, a.supervisor_id
    WHERE smartcode_period_start(a.responsible_since, a.installed_on) <= %(at)s
    UNION ALL
    SELECT true, r.owner_id, r.maintainer_id, r.supervisor_id FROM asset_responsibility r
    WHERE r.asset_id = a.id AND r.valid_from <= %(at)s AND r.valid_to > %(at)s
    LIMIT 1
) r ON true"""

_CODE_SQL_AT = f"""
SELECT a.code, a.class_code, a.state, a.in_use, a.decommissioned_at, a.decommission_reason,
       ST_X(p.pt), ST_Y(p.pt), a.installed_on, r.found IS NOT NULL, {_units("o", "m", "s")}
FROM assets a
CROSS JOIN LATERAL (SELECT ST_PointOnSurface(a.geom) AS pt) p
{_PARTIES_AT}
LEFT JOIN units o ON o.id = r.owner_id
LEFT JOIN units m ON m.id = r.maintainer_id
LEFT JOIN units s ON s.id = r.supervisor_id
WHERE a.code = %(code)s
"""


def _nearest_sql(srid: int, *, by_class: bool, at: bool) -> str:
    """Step 1 alone: the nearest assets (rows: code, class, state, in_use, distance, 3 x 5 unit columns)."""
    point = f"ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), {srid})"
    if at:
        alive = (
            "(a.decommissioned_at IS NULL OR a.decommissioned_at > %(at)s) "
            "AND (a.installed_on IS NULL OR a.installed_on <= (%(at)s AT TIME ZONE %(tz)s)::date)"
        )
        parties = _PARTIES_AT
        who = "r"
    else:
        alive = "a.in_use"
        parties = ""
        who = "a"
    columns = (
        "a.id, a.code, a.class_code, a.state, a.in_use, a.owner_id, a.maintainer_id, a.supervisor_id, "
        f"a.responsible_since, a.installed_on, ST_Distance(a.geom_m, {point}) AS dist"
    )
    if by_class:
        # One KNN scan per class, in the class's own plane (migration 0005): the GiST on
        # smartcode_class_plane(class, geom_m) holds each class far from every other, so the scan
        # from the point moved into class c's plane meets only class c, where a scan over all
        # classes would walk past every other class's assets. Moving both keeps the distances.
        plane = "smartcode_class_plane(a.class_code, a.geom_m)"
        target = f"smartcode_class_plane(q.cls, {point})"
        source = f"""
        FROM unnest(%(classes)s::text[], %(tolerances)s::float8[]) AS q(cls, tol)
        CROSS JOIN LATERAL (
            SELECT {columns} FROM assets a
            WHERE a.class_code = q.cls AND {alive} AND ST_DWithin({plane}, {target}, q.tol)
            ORDER BY {plane} <-> {target}
            LIMIT %(k)s
        ) a"""
    else:
        source = f"""
        FROM (
            SELECT {columns} FROM assets a
            WHERE {alive} AND ST_DWithin(a.geom_m, {point}, %(tol)s)
            ORDER BY a.geom_m <-> {point}
            LIMIT %(k)s
        ) a"""
    return f"""
    SELECT a.code, a.class_code, a.state, a.in_use, a.dist, {_units("o", "m", "s", named=True)}
    {source}
    {parties}
    LEFT JOIN units o ON o.id = {who}.owner_id
    LEFT JOIN units m ON m.id = {who}.maintainer_id
    LEFT JOIN units s ON s.id = {who}.supervisor_id
    """


# Steps 3-4: the zones containing the point at time %(zt)s and the rules that apply there. The rows
# share one layout with the asset rows of _location_sql:
#   kind, id, code, class, state, in_use, distance, level, name, zone code, category, priority,
#   then three units of five columns (id, name, credit code, phone, verified).
_AREA_CTES = """
z AS MATERIALIZED (
    SELECT DISTINCT z.id, z.level, z.name, z.code, z.unit_id
    FROM zone_pieces p JOIN zones z ON z.id = p.zone_id
    WHERE ST_Covers(p.geom, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326))
      AND z.county_code = %(county)s AND z.valid_from <= %(zt)s
      AND (z.valid_to IS NULL OR z.valid_to > %(zt)s)
), r AS (
    SELECT r.* FROM responsibility_rules r JOIN z ON z.level = r.zone_level AND z.name = r.zone_name
    UNION ALL
    SELECT r.* FROM responsibility_rules r WHERE r.zone_level IS NULL
)"""
_AREA_ROWS = f"""
SELECT 'zone', z.id, NULL::text, NULL::text, NULL::text, NULL::boolean, NULL::float8, z.level::text, z.name,
       z.code, NULL::text, NULL::int, {_units("u")}, {_NO_UNIT}, {_NO_UNIT}
FROM z LEFT JOIN units u ON u.id = z.unit_id
UNION ALL
SELECT 'rule', r.id, NULL, r.class_code::text, NULL, NULL, NULL, r.zone_level::text, r.zone_name, NULL,
       r.category, r.priority, {_units("u")}, {_NO_UNIT}, {_NO_UNIT}
FROM r JOIN units u ON u.id = r.unit_id
WHERE r.county_code = %(county)s AND r.valid_from <= %(zt)s AND (r.valid_to IS NULL OR r.valid_to > %(zt)s)
  AND (r.class_code IS NULL OR r.class_code = ANY(%(classes)s::text[]))
  AND (r.category IS NULL OR r.category = %(category)s)
"""
_AREA_SQL = f"WITH {_AREA_CTES}\n{_AREA_ROWS}"


def _location_sql(srid: int, *, by_class: bool, at: bool) -> str:
    """Steps 1-4 in one statement (one round trip): nearest assets, then zones and rules."""
    return f"""
    WITH near AS ({_nearest_sql(srid, by_class=by_class, at=at)}), {_AREA_CTES}
    SELECT 'asset', NULL::bigint, n.code::text, n.class_code::text, n.state, n.in_use, n.dist, NULL::text,
           NULL::text, NULL::text, NULL::text, NULL::int,
           n.o_id, n.o_name, n.o_cc::text, n.o_phone, n.o_verified,
           n.m_id, n.m_name, n.m_cc::text, n.m_phone, n.m_verified,
           n.s_id, n.s_name, n.s_cc::text, n.s_phone, n.s_verified
    FROM near n
    UNION ALL
    {_AREA_ROWS}
    """


# ------------------------------------------------------------------------------------------------
# Queries and answers
# ------------------------------------------------------------------------------------------------


@dataclass
class LocationQuery:
    """A complaint location as the caller sent it (x/y in ``crs``), with what it is about and when."""

    x: float
    y: float
    crs: str | None = None
    classes: Sequence[str] = ()
    category: str | None = None
    at: str | dt.datetime | None = None


@dataclass
class _Candidate:
    code: str
    class_code: str
    state: str
    in_use: bool
    distance: float
    owner: dict[str, Any] | None
    maintainer: dict[str, Any] | None
    supervisor: dict[str, Any] | None


# A zone containing the point: id, level, name, code, responsible unit.
_Zone = tuple[int, str, str, str | None, dict[str, Any] | None]


@dataclass
class _Rule:
    id: int
    level: str | None
    zone: str | None
    class_code: str | None
    category: str | None
    priority: int
    unit: dict[str, Any] | None

    def key(self) -> tuple[int, int, int]:
        # Explicit priority first, then the more specific rule (class and category named), then the
        # finer zone.
        specificity = (2 if self.category else 0) + (1 if self.class_code else 0)
        return (self.priority, specificity, LEVEL_RANK.get(self.level, 0))


@dataclass
class _Answer:
    explanation: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def _empty_answer(query: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": None,
        "status": STATUS_UNRESOLVED,
        "rule": RULE_NONE,
        "query": query,
        "asset": None,
        "owner": None,
        "maintainer": None,
        "supervisor": None,
        "candidates": [],
        "zones": [],
        "matched_rule": None,
        "explanation": [],
    }


class Resolver:
    """Resolves codes and locations; one instance per process, shared by concurrent requests."""

    def __init__(self, settings: Settings, area: ServiceArea | None = None) -> None:
        self.config = ResolveConfig.from_settings(settings)
        self.area = area or ServiceArea.from_settings(settings)
        self.catalog = ClassCatalog()
        self.categories = CategoryCache()
        srid = self.config.metric_srid
        self._location = {
            (by_class, at): _location_sql(srid, by_class=by_class, at=at)
            for by_class in (True, False)
            for at in (True, False)
        }

    async def prepare(self, conn: AsyncConnection[Any]) -> None:
        """Load the class catalogue (once at start-up; refreshed on demand)."""
        await self.catalog.load(conn)

    # --- by code -------------------------------------------------------------------------------------

    async def resolve_code(
        self,
        conn: AsyncConnection[Any],
        text: str,
        *,
        at: str | dt.datetime | None = None,
        log: ResolutionLog,
        actor: str,
        channel: str,
    ) -> tuple[dict[str, Any], bytes]:
        """The asset a scanned code names and its parties; ``NotFound`` or ``InvalidCode`` otherwise."""
        try:
            code = str(parse_code(text))
        except CheckDigitMismatch as exc:
            # Registered codes one typo away: most likely what the person meant to type.
            candidates = near_misses(normalize(text))
            cur = await conn.execute(
                "SELECT code FROM assets WHERE code = ANY(%s) ORDER BY code LIMIT 5",
                (candidates,),
                prepare=True,
            )
            exc.details["did_you_mean"] = [display_code(r[0]) for r in await cur.fetchall()]
            raise
        when = at if isinstance(at, dt.datetime) or at is None else parse_time(at, self.config.timezone)
        if when is None:
            cur = await conn.execute(_CODE_SQL_NOW, (code,), prepare=True)
        else:
            cur = await conn.execute(_CODE_SQL_AT, {"code": code, "at": when}, prepare=True)
        row = await cur.fetchone()
        if row is None:
            raise NotFound(
                f"code {display_code(code)} is well-formed but not registered", code=display_code(code)
            )
        if not self.catalog.by_code or row[1] not in self.catalog.by_code:
            await self.catalog.load(conn)
        cls = self.catalog.by_code[row[1]]
        owner, maintainer, supervisor = _unit(row, 10), _unit(row, 15), _unit(row, 20)
        query: dict[str, Any] = {"code": text, "at": _iso(when)}
        answer = _empty_answer(query)
        decommissioned_at: dt.datetime | None = row[4]
        asset = {
            "code": row[0],
            "code_display": display_code(row[0]),
            "class": {"code": cls.code, "name": cls.name, "geometry_type": cls.geometry_type},
            "state": row[2],
            "in_use": row[3],
            "decommissioned_at": _iso(decommissioned_at),
            "decommission_reason": row[5],
            "position": {"lon": round(row[6], 6), "lat": round(row[7], 6)},
            "distance_m": None,
        }
        lines = answer["explanation"]
        lines.append(
            f"code {asset['code_display']}: {cls.name} ({cls.code}), registered, state {row[2]}"
            + ("" if row[3] else f", decommissioned {_iso(decommissioned_at)}: {row[5] or 'no reason given'}")
        )
        status = STATUS_RESOLVED
        if when is not None:
            installed: dt.date | None = row[8]
            if (
                installed is not None
                and installed > when.astimezone(zoneinfo.ZoneInfo(self.config.timezone)).date()
            ):
                lines.append(f"at {when.isoformat()} the asset was not yet installed (installed {installed})")
            if decommissioned_at is not None and decommissioned_at <= when:
                lines.append(f"at {when.isoformat()} the asset was already decommissioned")
            if not row[9]:
                status = STATUS_UNRESOLVED
                lines.append(f"no responsibility period of this asset covers {when.isoformat()}")
            else:
                lines.append(f"parties as of {when.isoformat()} (responsibility period then)")
        if not row[3] and (when is None or decommissioned_at is None or decommissioned_at <= when):
            lines.append("the asset is out of use; its last responsible parties are shown")
        lines.append(f"owner: {_who(owner)}; maintainer: {_who(maintainer)}; supervisor: {_who(supervisor)}")
        if owner is None and status == STATUS_RESOLVED:
            lines.append(
                "no owner is recorded for this asset: use the maintainer or supervisor, or report it"
            )
        answer.update(
            status=status,
            rule=RULE_CODE,
            asset=asset,
            owner=owner,
            maintainer=maintainer,
            supervisor=supervisor,
        )
        return await self._finish(conn, answer, log, actor, channel, query, row[0], owner)

    # --- by location -----------------------------------------------------------------------------------

    def locate(self, x: float, y: float, crs_text: str | None) -> tuple[Crs, float, float]:
        """Convert the caller's x/y to WGS84 lon/lat and check it lies in the service area."""
        crs = parse_crs(crs_text)
        for value, label in ((x, "lon"), (y, "lat")):
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise InvalidInput(f"{label} must be a finite number, got {value!r}", field=label)
        lon, lat = (x, y) if crs == WGS84 else to_wgs84(x, y, crs)
        if crs.is_projected and not self.area.contains(lon, lat):
            # Chinese surveying writes X = northing: a swapped pair is the likeliest mistake.
            s_lon, s_lat = to_wgs84(y, x, crs)
            if math.isfinite(s_lon) and math.isfinite(s_lat) and self.area.contains(s_lon, s_lat):
                raise InvalidInput(
                    f"easting and northing look swapped for {crs.name}: ({x:g}, {y:g}) lies outside the "
                    f"service area but ({y:g}, {x:g}) inside; send x = easting ({y:g}), y = northing ({x:g})",
                    x=x,
                    y=y,
                )
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise InvalidInput(f"({x:g}, {y:g}) cannot be converted from {crs.name} to WGS84", x=x, y=y)
        self.area.check_point(lon, lat)
        return crs, lon, lat

    async def resolve_location(
        self, conn: AsyncConnection[Any], q: LocationQuery, *, log: ResolutionLog, actor: str, channel: str
    ) -> tuple[dict[str, Any], bytes]:
        """Run the rule chain for a location; the answer explains every step taken."""
        crs, lon, lat = self.locate(q.x, q.y, q.crs)
        when = (
            q.at if isinstance(q.at, dt.datetime) or q.at is None else parse_time(q.at, self.config.timezone)
        )
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=zoneinfo.ZoneInfo(self.config.timezone))
        now = dt.datetime.now(dt.UTC)
        if when is not None and when > now + _CLOCK_SKEW:
            raise InvalidInput(f"time {when.isoformat()} is in the future", field="at")
        if not self.catalog.by_code:
            await self.catalog.load(conn)
        classes: list[ClassInfo] = []
        for given in q.classes:
            for part in str(given).split(","):
                if part.strip():
                    info = await self.catalog.lookup(conn, part)
                    if info not in classes:
                        classes.append(info)
        category: str | None = None
        category_classes: list[str] = []
        if q.category is not None and q.category.strip():
            category, category_classes = await self.categories.lookup(conn, q.category)
        if not classes and category_classes:
            classes = [self.catalog.by_code[c] for c in category_classes if c in self.catalog.by_code]
        # A category that concerns no class (道路破损, 占道经营: no registered asset) is not about
        # whatever asset happens to be nearest: only "no class and no category" means any class.
        skip_assets = category is not None and not classes

        query: dict[str, Any] = {
            "x": q.x,
            "y": q.y,
            "crs": crs.name,
            "lon": round(lon, 7),
            "lat": round(lat, 7),
            "classes": [c.code for c in classes],
            "category": category,
            "at": _iso(when),
        }
        answer = _empty_answer(query)
        lines: list[str] = answer["explanation"]
        where = f"(lon {lon:.6f}, lat {lat:.6f})"
        if crs != WGS84:
            where += f", from {crs.name} ({q.x:g}, {q.y:g})"
        lines.append(
            f"location {where}, as of {when.isoformat() if when else 'now'}"
            + (f"; category {category}" if category else "")
        )
        mx, my = self.area.metric.project_point(lon, lat)

        # Step 1: nearest asset of the concerned classes; steps 3-4 data come in the same round trip.
        candidates: list[_Candidate] = []
        if skip_assets:
            zones, rules = await self._area(conn, lon, lat, when or now, [], category)
        else:
            candidates, zones, rules = await self._fetch(
                conn, classes, mx, my, lon, lat, when, when or now, [c.code for c in classes], category
            )
        answer["zones"] = self._zone_views(zones)
        what = ", ".join(f"{c.name} ({c.code})" for c in classes) if classes else "any class"
        rule_classes = [c.code for c in classes]
        if candidates:
            answer["candidates"] = [self._candidate_view(i, c) for i, c in enumerate(candidates, start=1)]
            nearest = candidates[0]
            cls = self.catalog.by_code[nearest.class_code]
            answer["asset"] = {
                "code": nearest.code,
                "code_display": display_code(nearest.code),
                "class": {"code": cls.code, "name": cls.name, "geometry_type": cls.geometry_type},
                "state": nearest.state,
                "in_use": nearest.in_use,
                "distance_m": round(nearest.distance, 2),
            }
            tolerance = self.config.tolerance(cls.geometry_type)
            lines.append(
                f"step 1 nearest asset: {cls.name} {display_code(nearest.code)} at {_m(nearest.distance)} "
                f"(within {tolerance:g} m for {cls.geometry_type} assets; "
                f"{len(candidates)} candidate(s) of {what}); "
                f"owner {_who(nearest.owner)}"
            )
            # Step 2: other owners nearly as close.
            margin = self.config.margin(nearest.distance)
            rivals = [
                c
                for c in candidates[1:]
                if (c.owner or {}).get("id") != (nearest.owner or {}).get("id")
                and c.distance - nearest.distance <= margin
            ]
            if rivals:
                names = "; ".join(
                    f"{display_code(c.code)} at {_m(c.distance)} owned by {_who(c.owner)}" for c in rivals
                )
                lines.append(
                    f"step 2 ambiguity: assets of other owners lie within {margin:.1f} m of the nearest: "
                    f"{names}; "
                    "not choosing one: check on site which asset the complaint is about"
                )
                answer.update(status=STATUS_AMBIGUOUS, rule=RULE_AMBIGUITY)
                return await self._finish(conn, answer, log, actor, channel, query, nearest.code, None)
            if nearest.owner is not None:
                lines.append(
                    f"step 2 ambiguity: none (no asset of another owner within {margin:.1f} m of the nearest)"
                )
                answer.update(
                    status=STATUS_RESOLVED,
                    rule=RULE_NEAREST,
                    owner=nearest.owner,
                    maintainer=nearest.maintainer,
                    supervisor=nearest.supervisor,
                )
                return await self._finish(
                    conn, answer, log, actor, channel, query, nearest.code, nearest.owner
                )
            lines.append(
                f"step 2 the nearest asset has no registered owner (无主): "
                f"looking for a responsibility rule for "
                f"{cls.name}"
            )
            answer["maintainer"], answer["supervisor"] = nearest.maintainer, nearest.supervisor
            rule_classes = [cls.code]
            if cls.code in classes:
                rules = [r for r in rules if r.class_code in (None, cls.code)]
            else:  # found without a class filter: its class's rules were not fetched yet
                zones, rules = await self._area(conn, lon, lat, when or now, rule_classes, category)
        elif skip_assets:
            lines.append(
                f"step 1 nearest asset: skipped: category {category} concerns no component class "
                "(it is routed by responsibility rules or jurisdiction, not by a nearby asset)"
            )
        else:
            tolerances = sorted({self.config.tolerance(c.geometry_type) for c in classes}) or [
                self.config.point_tolerance_m
            ]
            lines.append(
                f"step 1 nearest asset: no {'in-use ' if when is None else ''}asset of {what} within "
                f"{'/'.join(f'{t:g}' for t in tolerances)} m"
            )

        # Steps 3 and 4: the zones containing the point and the rules that apply there.
        answer["zones"] = self._zone_views(zones)
        asset_code = answer["asset"]["code"] if answer["asset"] else None
        in_zones = ", ".join(f"{LEVEL_LABEL[level]} {name}" for _, level, name, _, _ in zones) or "no zone"
        if rules:
            rules.sort(key=lambda r: r.key(), reverse=True)
            best = rules[0]
            tied = [r for r in rules if r.key() == best.key()]
            answer["candidates"] = answer["candidates"] or [
                self._rule_view(i, r) for i, r in enumerate(rules, 1)
            ]
            if len({(r.unit or {}).get("id") for r in tied}) > 1:
                names = "; ".join(f"rule #{r.id} -> {_who(r.unit)}" for r in tied)
                lines.append(
                    f"step 3 responsibility rules: {len(tied)} rules of equal priority and specificity "
                    f"name different "
                    f"units ({names}): fix the rules; not choosing one"
                )
                answer.update(status=STATUS_AMBIGUOUS, rule=RULE_RESPONSIBILITY)
                return await self._finish(conn, answer, log, actor, channel, query, asset_code, None)
            answer["matched_rule"] = self._rule_view(1, best)
            lines.append(
                f"step 3 responsibility rule #{best.id}: {self._rule_scope(best)} -> {_who(best.unit)} "
                f"(priority {best.priority}; {len(rules)} rule(s) apply here, in {in_zones})"
            )
            answer.update(status=STATUS_RESOLVED, rule=RULE_RESPONSIBILITY, owner=best.unit)
            return await self._finish(conn, answer, log, actor, channel, query, asset_code, best.unit)
        scope = ", ".join(rule_classes) if rule_classes else "any class"
        lines.append(
            f"step 3 responsibility rules: none for {scope}"
            + (f" / category {category}" if category else "")
            + f" in {in_zones}"
        )

        # Step 4: the street office of the street containing the point.
        streets = [z for z in zones if z[1] == "street"]
        street_units = {(z[4] or {}).get("id") for z in streets if z[4] is not None}
        if len(street_units) > 1:
            names = "; ".join(f"{z[2]} -> {_who(z[4])}" for z in streets)
            lines.append(f"step 4 jurisdiction: the point lies on the boundary of several streets ({names})")
            answer["candidates"] = answer["candidates"] or [
                {"rank": i, "zone": {"level": "street", "name": z[2]}, "unit": z[4]}
                for i, z in enumerate(streets, 1)
            ]
            answer.update(status=STATUS_AMBIGUOUS, rule=RULE_JURISDICTION)
            return await self._finish(conn, answer, log, actor, channel, query, asset_code, None)
        if street_units:
            street = next(z for z in streets if z[4] is not None)
            lines.append(f"step 4 jurisdiction (属地兜底): street {street[2]} -> {_who(street[4])}")
            answer.update(status=STATUS_FALLBACK, rule=RULE_JURISDICTION, owner=street[4])
            return await self._finish(conn, answer, log, actor, channel, query, asset_code, street[4])
        if streets:
            lines.append(
                f"step 4 jurisdiction: street {streets[0][2]} has no responsible street office recorded"
            )
            reason = f"street zone {streets[0][2]} has no responsible unit"
        elif zones:
            lines.append("step 4 jurisdiction: the point lies in no street zone")
            reason = "the point lies in no street zone"
        else:
            lines.append("step 4 jurisdiction: the point lies outside every zone")
            reason = "the point lies outside every zone"
        lines.append(f"unresolved: {reason}; no asset and no rule for {scope} decide it")
        answer["reason"] = reason
        return await self._finish(conn, answer, log, actor, channel, query, asset_code, None)

    async def _fetch(
        self,
        conn: AsyncConnection[Any],
        classes: list[ClassInfo],
        mx: float,
        my: float,
        lon: float,
        lat: float,
        when: dt.datetime | None,
        zone_time: dt.datetime,
        rule_classes: list[str],
        category: str | None,
    ) -> tuple[list[_Candidate], list[_Zone], list[_Rule]]:
        params: dict[str, Any] = {
            "x": mx,
            "y": my,
            "k": self.config.candidates,
            "lon": lon,
            "lat": lat,
            "county": self.config.county,
            "zt": zone_time,
            "classes": rule_classes,
            "category": category,
        }
        if when is not None:
            params["at"] = when
            params["tz"] = self.config.timezone
        if classes:
            params["tolerances"] = [self.config.tolerance(c.geometry_type) for c in classes]
        else:
            params["tol"] = max(
                self.config.point_tolerance_m, self.config.line_tolerance_m, self.config.polygon_tolerance_m
            )
        cur = await conn.execute(self._location[(bool(classes), when is not None)], params, prepare=True)
        candidates: list[_Candidate] = []
        rows = await cur.fetchall()
        for row in rows:
            if row[0] != "asset":
                continue
            info = self.catalog.by_code.get(row[3])
            if info is None:
                await self.catalog.load(conn)
                info = self.catalog.by_code[row[3]]
            # Without a class the search radius is the widest; each asset must be within its own.
            if row[6] > self.config.tolerance(info.geometry_type):
                continue
            candidates.append(
                _Candidate(
                    row[2],
                    row[3],
                    row[4],
                    row[5],
                    float(row[6]),
                    _unit(row, 12),
                    _unit(row, 17),
                    _unit(row, 22),
                )
            )
        candidates.sort(key=lambda c: (c.distance, c.code))
        zones, rules = self._area_rows(rows)
        return candidates[: self.config.candidates], zones, rules

    async def _area(
        self,
        conn: AsyncConnection[Any],
        lon: float,
        lat: float,
        when: dt.datetime,
        classes: list[str],
        category: str | None,
    ) -> tuple[list[_Zone], list[_Rule]]:
        cur = await conn.execute(
            _AREA_SQL,
            {
                "lon": lon,
                "lat": lat,
                "county": self.config.county,
                "zt": when,
                "classes": classes,
                "category": category,
            },
            prepare=True,
        )
        return self._area_rows(await cur.fetchall())

    @staticmethod
    def _zone_views(zones: list[_Zone]) -> list[dict[str, Any]]:
        return [
            {"id": z_id, "level": level, "name": name, "code": code, "unit": unit}
            for z_id, level, name, code, unit in zones
        ]

    @staticmethod
    def _area_rows(rows: Sequence[Sequence[Any]]) -> tuple[list[_Zone], list[_Rule]]:
        zones: list[_Zone] = []
        rules: list[_Rule] = []
        for row in rows:
            if row[0] == "zone":
                zones.append((row[1], row[7], row[8], row[9], _unit(row, 12)))
            elif row[0] == "rule":
                rules.append(_Rule(row[1], row[7], row[8], row[3], row[10], row[11], _unit(row, 12)))
        zones.sort(key=lambda z: -LEVEL_RANK.get(z[1], 0))
        return zones, rules

    def _candidate_view(self, rank: int, c: _Candidate) -> dict[str, Any]:
        info = self.catalog.by_code[c.class_code]
        return {
            "rank": rank,
            "code": c.code,
            "code_display": display_code(c.code),
            "class": {"code": info.code, "name": info.name},
            "distance_m": round(c.distance, 2),
            "owner": c.owner,
        }

    def _rule_scope(self, rule: _Rule) -> str:
        zone = f"{LEVEL_LABEL[rule.level]} {rule.zone}" if rule.level else "whole district"
        cls = self.catalog.by_code.get(rule.class_code or "")
        what = f"class {cls.name} ({cls.code})" if cls else "any class"
        if rule.category:
            what += f", category {rule.category}"
        return f"{zone}, {what}"

    def _rule_view(self, rank: int, rule: _Rule) -> dict[str, Any]:
        return {
            "rank": rank,
            "rule_id": rule.id,
            "zone": {"level": rule.level, "name": rule.zone} if rule.level else None,
            "class": rule.class_code,
            "category": rule.category,
            "priority": rule.priority,
            "unit": rule.unit,
        }

    async def _finish(
        self,
        conn: AsyncConnection[Any],
        answer: dict[str, Any],
        log: ResolutionLog,
        actor: str,
        channel: str,
        query: dict[str, Any],
        asset_code: str | None,
        owner: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], bytes]:
        """Give the answer its log id, serialise it once, and hand the same bytes to the log."""
        log_id = await log.reserve_id(conn)
        answer["id"] = log_id
        now = dt.datetime.now(dt.UTC)
        answer["resolved_at"] = now.isoformat()
        body = orjson.dumps(answer)
        entry = log_entry(
            log_id,
            now,
            actor=actor,
            channel=channel,
            query=query,
            status=answer["status"],
            rule=answer["rule"],
            asset_code=asset_code,
            owner_id=owner["id"] if owner else None,
            answer=body,
        )
        await log.write(conn, entry)
        return answer, body


# ------------------------------------------------------------------------------------------------
# Reading the log
# ------------------------------------------------------------------------------------------------


async def get_resolution(conn: AsyncConnection[Any], log_id: int) -> dict[str, Any]:
    """One logged answer with who asked, when and through which channel; ``NotFound`` otherwise."""
    cur = await conn.execute(
        "SELECT id, at, actor, channel, query, answer FROM resolution_log WHERE id = %s",
        (log_id,),
        prepare=True,
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no resolution with id {log_id}", resolution_id=log_id)
    return {
        "id": row[0],
        "at": row[1].isoformat(),
        "actor": row[2],
        "channel": row[3],
        "query": row[4],
        "answer": row[5],
    }


async def list_resolutions(
    conn: AsyncConnection[Any],
    *,
    asset: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Logged answers, newest first, optionally for one asset code, one status or since a time."""
    conditions = ["true"]
    params: list[Any] = []
    if asset:
        conditions.append("asset_code = %s")
        params.append(str(parse_code(asset)))
    if status:
        conditions.append("status = %s")
        params.append(status)
    if since is not None:
        conditions.append("at >= %s")
        params.append(since)
    params.append(limit)
    cur = await conn.execute(
        "SELECT id, at, actor, channel, status, rule, asset_code, owner_id, query FROM resolution_log "
        f"WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT %s",
        params,
    )
    return [
        {
            "id": r[0],
            "at": r[1].isoformat(),
            "actor": r[2],
            "channel": r[3],
            "status": r[4],
            "rule": r[5],
            "asset_code": r[6],
            "owner_id": r[7],
            "query": r[8],
        }
        for r in await cur.fetchall()
    ]


# ------------------------------------------------------------------------------------------------
# Synchronous use (CLI, tests)
# ------------------------------------------------------------------------------------------------


def resolution_connection_kwargs() -> dict[str, Any]:
    """How resolution connections are opened (the API's pool, the CLI, the benchmark)."""
    return {
        # Each lookup is one statement: autocommit spares the BEGIN/COMMIT round trips.
        "autocommit": True,
        # Statements are prepared on first use and reused for the connection's lifetime ...
        "prepare_threshold": 0,
        # ... with their generic plan. Left to itself PostgreSQL kept re-planning the location query
        # for every call (a custom plan estimated cheaper than the generic one): 1.5 ms of planning
        # for 0.1 ms of execution. The generic plans use the same indexes (docs/benchmarks.md).
        "options": "-c plan_cache_mode=force_generic_plan",
    }


def run_sync(conninfo: str, work: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
    """Run one async resolution task on a fresh connection, from synchronous code."""

    async def main() -> T:
        async with await AsyncConnection.connect(conninfo, **resolution_connection_kwargs()) as conn:
            return await work(conn)

    return asyncio.run(main())
