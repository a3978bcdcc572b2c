"""Ownership resolution: from a scanned code or a complaint location to the responsible units.

The parts:

* :mod:`registry.rule_chain`: the decision (rule chain steps 1-5 and the explanation), a pure function
  of the rows it is given;
* :mod:`registry.resolution_sql`: the statements a lookup runs, and how their rows (read by column
  name) become the chain's inputs;
* :mod:`registry.resolution_log`: the log writer, bound to the primary database;
* this module: :class:`Resolver`, which runs the queries on a read-only connection, asks the chain,
  and hands the answer to the log writer; plus the names callers use.

Everything is evaluated as of the complaint's time (``at``): responsibility periods of assets,
zone generations and rule versions.

This is the hot path of the API (thousands of lookups a second), so it talks to PostgreSQL through
psycopg directly (async, prepared statements, one round trip per step, no ORM) and builds plain
dicts serialised once with orjson. The same code serves the CLI and the tests through
:func:`run_lookup`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
import zoneinfo
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import RowMaker, namedtuple_row
from sqlalchemy.engine import make_url

from common.errors import CheckDigitMismatch, InvalidInput, NotFound
from common.settings import Settings
from gis.area import ServiceArea
from gis.crs import WGS84, Crs, parse_crs, to_wgs84
from registry import messages
from registry import resolution_sql as sql
from registry.access import public_resolution
from registry.codes import near_misses, normalize, parse_code
from registry.names import fold as _fold
from registry.resolution_log import (
    BatchLog,
    DirectLog,
    ResolutionLog,
    get_resolution,
    list_resolutions,
    log_entry,
)
from registry.rule_chain import (
    LEVEL_LABEL,
    LEVEL_RANK,
    RULE_AMBIGUITY,
    RULE_CODE,
    RULE_JURISDICTION,
    RULE_NEAREST,
    RULE_NONE,
    RULE_RESPONSIBILITY,
    STATUS_AMBIGUOUS,
    STATUS_FALLBACK,
    STATUS_RESOLVED,
    STATUS_UNRESOLVED,
    Candidate,
    ClassInfo,
    Decision,
    ResolveConfig,
    Rule,
    Zone,
    decide_code,
    decide_location,
    display_code,
    missing_rule_class,
    nearest_candidates,
    skips_assets,
)

__all__ = [
    "LEVEL_LABEL",
    "LEVEL_RANK",
    "RULE_AMBIGUITY",
    "RULE_CODE",
    "RULE_JURISDICTION",
    "RULE_NEAREST",
    "RULE_NONE",
    "RULE_RESPONSIBILITY",
    "STATUS_AMBIGUOUS",
    "STATUS_FALLBACK",
    "STATUS_RESOLVED",
    "STATUS_UNRESOLVED",
    "BatchLog",
    "CategoryCache",
    "ClassCatalog",
    "ClassInfo",
    "DirectLog",
    "LocationQuery",
    "ResolutionLog",
    "ResolveConfig",
    "Resolver",
    "conninfo_from_url",
    "display_code",
    "get_resolution",
    "list_resolutions",
    "parse_time",
    "resolution_connection_kwargs",
    "run_lookup",
    "run_sync",
]

# Clocks disagree a little; a complaint time a few minutes ahead is still "now".
_CLOCK_SKEW = dt.timedelta(minutes=5)
# The class catalogue is re-read at most this often when a client names a class it does not know.
_CATALOG_RELOAD_S = 5.0

T = TypeVar("T")
Row = Any  # a psycopg namedtuple_row row: columns as attributes


def conninfo_from_url(url: str) -> str:
    """A libpq connection string from a SQLAlchemy URL (``postgresql+psycopg://...``)."""
    parsed = make_url(url)
    hosts = parsed.query.get("host")
    if isinstance(hosts, tuple):
        # Several hosts (a read URL naming replicas): libpq wants them as one list, ports as another.
        names, ports = zip(*(h.rpartition(":")[::2] if ":" in h else (h, "") for h in hosts), strict=True)
        params = {k: v for k, v in parsed.query.items() if k != "host" and isinstance(v, str)}
        return psycopg.conninfo.make_conninfo(
            host=",".join(names),
            port=",".join(p or "5432" for p in ports),
            dbname=parsed.database,
            user=parsed.username,
            password=parsed.password,
            **params,
        )
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# The row maker of each statement, made once: a statement's columns never change, and psycopg's
# namedtuple_row would otherwise re-read and hash the column names on every execution.
_ROW_MAKERS: dict[str, RowMaker[Any]] = {}


def _named_rows(statement: str) -> Callable[[AsyncCursor[Any]], RowMaker[Any]]:
    def factory(cursor: AsyncCursor[Any]) -> RowMaker[Any]:
        make = _ROW_MAKERS.get(statement)
        if make is None:
            make = namedtuple_row(cursor)
            if cursor.description is not None:
                _ROW_MAKERS[statement] = make
        return make

    return factory


async def _rows(conn: AsyncConnection[Any], statement: str, params: Any = None) -> list[Row]:
    """All rows of a prepared statement, each a named tuple of its columns."""
    cur = conn.cursor(row_factory=_named_rows(statement))
    await cur.execute(statement, params, prepare=True)
    return await cur.fetchall()


# ------------------------------------------------------------------------------------------------
# Reference data
# ------------------------------------------------------------------------------------------------


class ClassCatalog:
    """Component classes by code, name and alias, read from the database and refreshed on a miss."""

    def __init__(self) -> None:
        self.by_code: dict[str, ClassInfo] = {}
        self._by_name: dict[str, str] = {}
        self._loaded_at = -math.inf
        self._lock = asyncio.Lock()

    async def load(self, conn: AsyncConnection[Any]) -> None:
        """(Re)read the class table."""
        by_code: dict[str, ClassInfo] = {}
        by_name: dict[str, str] = {}
        for row in await _rows(conn, sql.CLASSES_SQL):
            code = row.code
            by_code[code] = ClassInfo(code, row.name, row.geometry_type)
            for label in (row.name, *(row.aliases or ())):
                by_name.setdefault(_fold(label), code)
        self.by_code, self._by_name = by_code, by_name
        self._loaded_at = time.monotonic()

    async def know(self, conn: AsyncConnection[Any], codes: Sequence[str]) -> None:
        """Re-read the table if any of these codes (found in the data) is not known yet."""
        if not self.by_code or any(code not in self.by_code for code in codes):
            await self.load(conn)

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
        by_key: dict[str, tuple[str, list[str]]] = {}
        names = []
        for row in await _rows(conn, sql.CATEGORIES_SQL):
            name = row.name
            names.append(name)
            entry = (name, list(row.class_codes or []))
            for alias in row.aliases or ():
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
# Lookups
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


# Decisions by code kept per process (see Resolver._code_memo): about 4.4 KB each, 18 MB in all.
CODE_MEMO_ENTRIES = 4096


class _CodeMemo:
    """A decision by code for the present, and its passer-by view encoded (filled on first use)."""

    __slots__ = ("decision", "public_tail")

    def __init__(self, decision: Decision) -> None:
        # Shared by every request with the same row: the answers refer to its dicts and only read them.
        self.decision = decision
        self.public_tail: bytes | None = None


class Resolver:
    """Resolves codes and locations; one instance per process, shared by concurrent requests.

    ``conn`` is a read connection (it may refuse writes, and may be a replica's); the answer is
    recorded through ``log``, which writes to the primary on its own connection.
    """

    def __init__(self, settings: Settings, area: ServiceArea | None = None) -> None:
        self.config = ResolveConfig.from_settings(settings)
        self.area = area or ServiceArea.from_settings(settings)
        self.catalog = ClassCatalog()
        self.categories = CategoryCache()
        self._by_code: OrderedDict[tuple[Any, ClassInfo], _CodeMemo] = OrderedDict()
        srid = self.config.metric_srid
        self._location = {
            (by_class, at): sql.location_sql(srid, by_class=by_class, at=at)
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
        public: bool = False,
    ) -> tuple[dict[str, Any], bytes]:
        """The asset a scanned code names and its parties; ``NotFound`` or ``InvalidCode`` otherwise.

        Returns the full answer and its JSON; with ``public`` the JSON is the passer-by view of it
        (``registry.access.public_resolution``) instead. The log records the full answer either way.
        """
        try:
            code = str(parse_code(text))
        except CheckDigitMismatch as exc:
            # Registered codes one typo away: most likely what the person meant to type.
            known = await _rows(conn, sql.KNOWN_CODES_SQL, (near_misses(normalize(text)),))
            exc.details["did_you_mean"] = [display_code(r.code) for r in known]
            raise
        when = at if isinstance(at, dt.datetime) or at is None else parse_time(at, self.config.timezone)
        if when is None:
            rows = await _rows(conn, sql.CODE_SQL_NOW, (code,))
        else:
            rows = await _rows(conn, sql.CODE_SQL_AT, {"code": code, "at": when})
        if not rows:
            raise NotFound(
                f"code {display_code(code)} is well-formed but not registered", code=display_code(code)
            )
        class_code = rows[0].class_code
        cls = self.catalog.by_code.get(class_code)
        if cls is None:
            await self.catalog.know(conn, [class_code])
            cls = self.catalog.by_code[class_code]
        query: dict[str, Any] = {"code": text, "at": _iso(when)}
        if when is not None:
            # As of a time: the lines name the time, so nothing is kept.
            decision = decide_code(self.config, cls, sql.code_row(rows[0]), when)
            answer, body = await self._finish(_empty_answer(query), decision, log, actor, channel)
            return answer, self._public_body(answer, None) if public else body
        memo = self._code_memo(rows[0], cls)
        answer, body = await self._finish(_empty_answer(query), memo.decision, log, actor, channel)
        return answer, self._public_body(answer, memo) if public else body

    def _code_memo(self, row: Any, cls: ClassInfo) -> _CodeMemo:
        """The decision for a row of ``CODE_SQL_NOW``, decided once while the row stays the same.

        The key is the whole row (every column the decision reads: state, units, names, phones) and
        the class as the catalogue has it, so any change in the registry gives a new key on the next
        lookup, and no entry can go stale; the SQL still runs on every request. Only the order of
        arrival bounds the table (the oldest entry goes first).
        """
        key = (row, cls)
        memo = self._by_code.get(key)
        if memo is None:
            memo = _CodeMemo(decide_code(self.config, cls, sql.code_row(row), None))
            if len(self._by_code) >= CODE_MEMO_ENTRIES:
                self._by_code.popitem(last=False)
            self._by_code[key] = memo
        return memo

    def _public_body(self, answer: dict[str, Any], memo: _CodeMemo | None) -> bytes:
        """``orjson.dumps(public_resolution(answer))``, with everything but the log id encoded once per memo.

        The passer-by view depends only on the decision (status, rule, asset, parties) and the id,
        which comes first: the rest is kept as encoded bytes and the id is put in front of them.
        """
        tail = memo.public_tail if memo is not None else None
        if tail is None:
            view = public_resolution(answer, self.config.lang)
            del view["id"]
            tail = orjson.dumps(view)[1:]  # without the opening brace
            if memo is not None:
                memo.public_tail = tail
        return b'{"id":%d,%s' % (answer["id"], tail)

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
        lang = self.config.lang
        line = messages.text(lang, "location", lon=lon, lat=lat)
        if crs != WGS84:
            line += messages.text(lang, "location.from", crs=crs.name, x=q.x, y=q.y)
        line += messages.text(lang, "location.when", when=messages.when(when, lang, self.config.timezone))
        if category:
            line += messages.text(lang, "location.category", category=category)
        answer["explanation"].append(line)

        # Step 1 data (nearest assets) and steps 3-4 data (zones, rules) come in one round trip.
        rule_classes = [c.code for c in classes]
        zone_time = when or now
        candidates: list[Candidate] = []
        if skips_assets(category, classes):
            zones, rules = await self._area(conn, lon, lat, zone_time, [], category)
        else:
            mx, my = self.area.metric.project_point(lon, lat)
            candidates, zones, rules = await self._fetch(
                conn, classes, mx, my, lon, lat, when, zone_time, rule_classes, category
            )
            # An owner-less nearest asset found without naming its class: its class's rules are needed.
            missing = missing_rule_class(self.config, candidates, rule_classes)
            if missing is not None:
                zones, rules = await self._area(conn, lon, lat, zone_time, [missing], category)
        decision = decide_location(
            self.config,
            self.catalog.by_code,
            classes=classes,
            category=category,
            as_of=when,
            candidates=candidates,
            zones=zones,
            rules=rules,
        )
        return await self._finish(answer, decision, log, actor, channel)

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
    ) -> tuple[list[Candidate], list[Zone], list[Rule]]:
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
            params["tol"] = self.config.widest_tolerance()
        rows = await _rows(conn, self._location[(bool(classes), when is not None)], params)
        found, zones, rules = sql.location_rows(rows)
        await self.catalog.know(conn, [c.class_code for c in found])
        return nearest_candidates(self.config, self.catalog.by_code, found), zones, rules

    async def _area(
        self,
        conn: AsyncConnection[Any],
        lon: float,
        lat: float,
        when: dt.datetime,
        classes: list[str],
        category: str | None,
    ) -> tuple[list[Zone], list[Rule]]:
        params = {
            "lon": lon,
            "lat": lat,
            "county": self.config.county,
            "zt": when,
            "classes": classes,
            "category": category,
        }
        _, zones, rules = sql.location_rows(await _rows(conn, sql.AREA_SQL, params))
        return zones, rules

    async def _finish(
        self, answer: dict[str, Any], decision: Decision, log: ResolutionLog, actor: str, channel: str
    ) -> tuple[dict[str, Any], bytes]:
        """Fill the answer, give it its log id, serialise it once, and hand the same bytes to the log."""
        answer.update(
            status=decision.status,
            rule=decision.rule,
            asset=decision.asset,
            owner=decision.owner,
            maintainer=decision.maintainer,
            supervisor=decision.supervisor,
            candidates=decision.candidates,
            zones=decision.zones,
            matched_rule=decision.matched_rule,
        )
        answer["explanation"].extend(decision.explanation)
        if decision.reason is not None:
            answer["reason"] = decision.reason
        log_id = await log.reserve_id()
        answer["id"] = log_id
        now = dt.datetime.now(dt.UTC)
        answer["resolved_at"] = now.isoformat()
        body = orjson.dumps(answer)
        entry = log_entry(
            log_id,
            now,
            actor=actor,
            channel=channel,
            query=answer["query"],
            status=decision.status,
            rule=decision.rule,
            asset_code=decision.asset_code,
            owner_id=decision.owner["id"] if decision.owner else None,
            answer=body,
        )
        await log.write(entry)
        return answer, body


# ------------------------------------------------------------------------------------------------
# Connections, and synchronous use (CLI, tests)
# ------------------------------------------------------------------------------------------------


def resolution_connection_kwargs(*, read_only: bool = True) -> dict[str, Any]:
    """How lookup connections are opened (the API's read pool, the CLI, the benchmark).

    ``read_only`` (the default) makes every transaction on them read-only: a lookup never writes,
    and the same settings then work on a read replica.
    """
    options = [
        # Statements are prepared on first use and reused for the connection's lifetime with their
        # generic plan. Left to itself PostgreSQL kept re-planning the location query for every call
        # (a custom plan estimated cheaper than the generic one): 1.5 ms of planning for 0.1 ms of
        # execution. The generic plans use the same indexes (docs/benchmarks.md).
        "-c plan_cache_mode=force_generic_plan",
    ]
    if read_only:
        options.append("-c default_transaction_read_only=on")
    return {
        # Each lookup is one statement: autocommit spares the BEGIN/COMMIT round trips.
        "autocommit": True,
        "prepare_threshold": 0,
        "options": " ".join(options),
    }


def run_sync(conninfo: str, work: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
    """Run one async read task (e.g. reading the log) on a fresh read-only connection, from sync code."""

    async def main() -> T:
        async with await AsyncConnection.connect(conninfo, **resolution_connection_kwargs()) as conn:
            return await work(conn)

    return asyncio.run(main())


def run_lookup(
    conninfo: str,
    work: Callable[[AsyncConnection[Any], DirectLog], Awaitable[T]],
    *,
    read_conninfo: str | None = None,
) -> T:
    """Run one lookup from sync code: a read-only connection for it, a log writer on the primary.

    ``conninfo`` is the primary's (the log is written there); ``read_conninfo`` where the lookup
    reads (a replica's), by default the primary too, on its own read-only connection.
    """

    async def main() -> T:
        async with (
            await AsyncConnection.connect(
                read_conninfo or conninfo, **resolution_connection_kwargs()
            ) as read,
            await AsyncConnection.connect(conninfo, autocommit=True) as write,
        ):
            return await work(read, DirectLog.on(write))

    return asyncio.run(main())
