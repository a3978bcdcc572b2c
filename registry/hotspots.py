"""Hot-spot warnings (高频 / 热点预警): many complaints about one asset, or one kind of problem at one place.

Two rules, checked for every complaint in the transaction that records it (docs/hotspots.md):

* 高频 (kind ``asset``): the scanned asset has gathered ``min_complaints`` complaints within
  ``window_days`` days;
* 热点 (kind ``place``): complaints of the complaint's category within ``radius_m`` metres of it
  (measured on ``complaints.geom_m``, the metric SRID) number ``min_complaints`` within the window.

A warning is raised once: while it is live (not expired), a further complaint of the same asset, or
of the category within ``radius_m`` of the warning's centre, joins it (its count and last complaint
move) instead of raising another. Raising emits ``hotspot.warning`` in the same transaction, so a
rolled-back complaint raises nothing. A warning expires ``window_days`` after its last complaint.

Concurrent complaints about the same asset or place are serialised by transaction-level advisory
locks taken after the complaint's insert and before the count, so N complaints arriving at once raise
exactly one warning. The write path costs two or three index lookups (measured in docs/hotspots.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import text
from sqlalchemy.orm import Session

from common.errors import Conflict, InvalidInput, NotFound
from common.settings import HOTSPOT_RADIUS_MAX_M, HotspotSettings
from registry.access import Action, Actor, require
from registry.events import emit_async

KINDS = ("asset", "place")
STATES = ("active", "acknowledged", "expired")
KIND_LABELS = {"asset": "高频", "place": "热点"}
STATE_LABELS = {"active": "预警中", "acknowledged": "已确认", "expired": "已过期"}


@dataclass(frozen=True)
class NewComplaint:
    """What the hot-spot check needs of a complaint just inserted (in the still open transaction)."""

    id: int
    reference: str
    received_at: dt.datetime
    asset_code: str | None
    category: str | None
    located: bool
    owner_id: int | None


# --- the write path ------------------------------------------------------------------------------------

# Serialise the complaints of one asset: the count after the lock sees every committed complaint.
_LOCK_ASSET = "SELECT pg_advisory_xact_lock(hashtextextended('smartcode.hotspot.asset:' || %s, 0))"

# Serialise complaints of one category that may be within R of each other: a grid of cells 2R wide,
# locked for the cells the square [p - R, p + R] touches (at most four, in key order against deadlocks).
# Two complaints within R of each other share the cell of either one.
_LOCK_PLACE = """
SELECT pg_advisory_xact_lock(k) FROM (
  SELECT DISTINCT hashtextextended(concat_ws(':', 'smartcode.hotspot.place', %(category)s::text,
                                             floor((ST_X(c.geom_m) + d.dx) / (2 * %(r)s)),
                                             floor((ST_Y(c.geom_m) + d.dy) / (2 * %(r)s))), 0) AS k
  FROM complaints c
  CROSS JOIN (VALUES (-1, -1), (-1, 1), (1, -1), (1, 1)) s(sx, sy)
  CROSS JOIN LATERAL (SELECT s.sx * %(r)s::float8 AS dx, s.sy * %(r)s::float8 AS dy) d
  WHERE c.id = %(id)s
  ORDER BY k
) locks
"""

# Join the live 高频 warning of the asset, if any; retire one whose window has passed.
_JOIN_ASSET = """
stale AS (
  UPDATE hotspot_warnings SET state = 'expired', expired_at = last_at + make_interval(days => window_days)
  WHERE kind = 'asset' AND asset_code = %(code)s AND state <> 'expired'
    AND last_at <= %(at)s - make_interval(days => window_days)
  RETURNING id
),
joined AS (
  UPDATE hotspot_warnings SET count = count + 1, last_complaint_id = %(id)s, last_at = %(at)s
  WHERE kind = 'asset' AND asset_code = %(code)s AND state <> 'expired'
    AND last_at > %(at)s - make_interval(days => window_days)
  RETURNING id
)
"""

# The complaints about the asset within the window (index-only on complaints_asset_received_idx).
COUNT_ASSET_SQL = """
SELECT count(*), min(received_at) FROM complaints
WHERE asset_code = %(code)s AND received_at > %(at)s - make_interval(days => %(days)s)
"""

_RAISE_ASSET = """
INSERT INTO hotspot_warnings AS w (
  kind, asset_code, centre, unit_id, count, min_complaints, window_days, first_complaint_id, first_at,
  last_complaint_id, last_at, raised_by_complaint_id)
SELECT 'asset', %(code)s::text,
       coalesce((SELECT smartcode_tile_anchor(a.geom) FROM assets a WHERE a.code = %(code)s::text), c.geom),
       c.owner_id, %(count)s, %(n)s, %(days)s,
       (SELECT f.id FROM complaints f
         WHERE f.asset_code = %(code)s::text AND f.received_at > %(at)s - make_interval(days => %(days)s)
         ORDER BY f.received_at, f.id LIMIT 1),
       %(first)s, c.id, c.received_at, c.id
FROM complaints c WHERE c.id = %(id)s
ON CONFLICT (asset_code) WHERE kind = 'asset' AND state <> 'expired'
DO UPDATE SET count = w.count + 1, last_complaint_id = EXCLUDED.last_complaint_id, last_at = EXCLUDED.last_at
RETURNING id, (xmax = 0) AS raised, ST_X(centre), ST_Y(centre), count
"""

# Join the nearest live 热点 warning of the category whose centre is within its radius of the complaint.
# Each warning has its own radius, which no index can use; the box of the largest radius allowed can
# (hotspot_warnings_place_live_gist on category and centre), so a category with many live warnings
# elsewhere in the district costs no more than one with few.
_JOIN_PLACE = f"""
joined AS (
  UPDATE hotspot_warnings SET count = count + 1, last_complaint_id = %(id)s, last_at = %(at)s
  WHERE id = (
    SELECT w.id FROM hotspot_warnings w, complaints c
    WHERE c.id = %(id)s AND w.kind = 'place' AND w.state <> 'expired' AND w.category = %(category)s
      AND w.centre_m && ST_Expand(c.geom_m, {HOTSPOT_RADIUS_MAX_M})
      AND ST_DWithin(w.centre_m, c.geom_m, w.radius_m)
      AND w.last_at > %(at)s - make_interval(days => w.window_days)
    ORDER BY w.centre_m <-> c.geom_m LIMIT 1
  )
  RETURNING id
)
"""

# The complaints of the category within R of the complaint in the window: one scan of
# complaints_category_geom_m_gist (category, received_at, geom_m).
COUNT_PLACE_SQL = """
SELECT count(*), min(o.received_at), (array_agg(o.id ORDER BY o.received_at, o.id))[1]
FROM complaints c JOIN complaints o
  ON o.category = c.category AND o.received_at > %(at)s - make_interval(days => %(days)s)
 AND ST_DWithin(o.geom_m, c.geom_m, %(r)s)
WHERE c.id = %(id)s AND o.geom_m IS NOT NULL AND o.category IS NOT NULL
"""


# Join a live warning, or else count: one statement (one round trip on the posting hot path). The
# count runs only when nothing was joined (a one-time filter on the joined id); it sees every complaint
# committed before the lock statement that precedes it.
def _join_or_count(join: str, count: str) -> str:
    return (
        f"WITH {join} SELECT j.id, n.* FROM (SELECT min(id) AS id FROM joined) j "
        f"LEFT JOIN LATERAL ({count} AND j.id IS NULL) n ON true"
    )


_JOIN_OR_COUNT_ASSET = _join_or_count(_JOIN_ASSET, COUNT_ASSET_SQL)
_JOIN_OR_COUNT_PLACE = _join_or_count(_JOIN_PLACE, COUNT_PLACE_SQL)

_RAISE_PLACE = """
INSERT INTO hotspot_warnings (
  kind, category, centre, radius_m, unit_id, count, min_complaints, window_days, first_complaint_id,
  first_at, last_complaint_id, last_at, raised_by_complaint_id)
SELECT 'place', c.category, c.geom, %(r)s, c.owner_id, %(count)s, %(n)s, %(days)s, %(first_id)s, %(first)s,
       c.id, c.received_at, c.id
FROM complaints c WHERE c.id = %(id)s
RETURNING id, true, ST_X(centre), ST_Y(centre), count
"""


def _event(
    warning_id: int,
    kind: str,
    row: Sequence[Any],
    complaint: NewComplaint,
    rules: HotspotSettings,
    first_at: dt.datetime,
) -> dict[str, Any]:
    return {
        "id": warning_id,
        "kind": kind,
        "kind_label": KIND_LABELS[kind],
        "asset_code": complaint.asset_code if kind == "asset" else None,
        "category": complaint.category if kind == "place" else None,
        "location": {"lon": row[2], "lat": row[3]} if row[2] is not None else None,
        "radius_m": rules.radius_m if kind == "place" else None,
        "count": int(row[4]),
        "min_complaints": rules.min_complaints,
        "window_days": rules.window_days,
        "unit_id": complaint.owner_id,
        "first_at": first_at.isoformat(),
        "raised_by": complaint.reference,
        "state": "active",
    }


async def check_complaint(
    conn: AsyncConnection[Any], complaint: NewComplaint, rules: HotspotSettings
) -> list[int]:
    """Raise or join the warnings a complaint just inserted tips; the ids of those it raised.

    Call it inside the transaction that inserted the complaint: the warning and its ``hotspot.warning``
    event commit or roll back with it.
    """
    raised: list[int] = []
    params: dict[str, Any] = {
        "id": complaint.id,
        "at": complaint.received_at,
        "days": rules.window_days,
        "n": rules.min_complaints,
        "r": rules.radius_m,
        "code": complaint.asset_code,
        "category": complaint.category,
    }
    if complaint.asset_code is not None:
        await conn.execute(_LOCK_ASSET, (complaint.asset_code,), prepare=True)
        cur = await conn.execute(_JOIN_OR_COUNT_ASSET, params, prepare=True)
        counted = await cur.fetchone()
        assert counted is not None  # one row: the joined warning's id, else the count
        if counted[0] is None:
            count, first = int(counted[1]), counted[2]
            if count >= rules.min_complaints:
                cur = await conn.execute(
                    _RAISE_ASSET, {**params, "count": count, "first": first}, prepare=True
                )
                row = await cur.fetchone()
                assert row is not None
                if row[1]:
                    raised.append(int(row[0]))
                    data = _event(int(row[0]), "asset", row, complaint, rules, first)
                    await emit_async(conn, "hotspot.warning", data, subject=complaint.asset_code)
    if complaint.category is not None and complaint.located:
        await conn.execute(_LOCK_PLACE, params, prepare=True)
        cur = await conn.execute(_JOIN_OR_COUNT_PLACE, params, prepare=True)
        counted = await cur.fetchone()
        assert counted is not None
        if counted[0] is None:
            count, first, first_id = int(counted[1]), counted[2], counted[3]
            if count >= rules.min_complaints:
                cur = await conn.execute(
                    _RAISE_PLACE,
                    {**params, "count": count, "first": first, "first_id": first_id},
                    prepare=True,
                )
                row = await cur.fetchone()
                assert row is not None
                raised.append(int(row[0]))
                data = _event(int(row[0]), "place", row, complaint, rules, first)
                await emit_async(conn, "hotspot.warning", data, subject=complaint.reference)
    return raised


# --- reading and acknowledging -------------------------------------------------------------------------

# Warnings whose window has passed since their last complaint are marked expired when read.
_EXPIRE = """
UPDATE hotspot_warnings SET state = 'expired', expired_at = last_at + make_interval(days => window_days)
WHERE state <> 'expired' AND last_at <= now() - make_interval(days => window_days)
"""

_SELECT = """
SELECT w.id, w.kind, w.asset_code, w.category, ST_X(w.centre) AS lon, ST_Y(w.centre) AS lat, w.radius_m,
       w.unit_id, u.name AS unit_name, w.count, w.min_complaints, w.window_days,
       f.reference AS first_reference, w.first_at, l.reference AS last_reference, w.last_at,
       r.reference AS raised_by, w.raised_at, w.state, w.acknowledged_at, w.acknowledged_by, w.expired_at
FROM hotspot_warnings w
JOIN complaints f ON f.id = w.first_complaint_id
JOIN complaints l ON l.id = w.last_complaint_id
JOIN complaints r ON r.id = w.raised_by_complaint_id
LEFT JOIN units u ON u.id = w.unit_id
"""


def expire(session: Session) -> int:
    """Mark the warnings whose window has passed since their last complaint as expired; how many."""
    return int(session.execute(text(_EXPIRE)).rowcount or 0)  # type: ignore[attr-defined]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def view(row: Any) -> dict[str, Any]:
    """A warning as the API shows it."""
    return {
        "id": row.id,
        "kind": row.kind,
        "kind_label": KIND_LABELS[row.kind],
        "asset_code": row.asset_code,
        "category": row.category,
        "location": {"lon": round(row.lon, 7), "lat": round(row.lat, 7)} if row.lon is not None else None,
        "radius_m": row.radius_m,
        "unit": {"id": row.unit_id, "name": row.unit_name} if row.unit_id is not None else None,
        "count": row.count,
        "min_complaints": row.min_complaints,
        "window_days": row.window_days,
        "first_complaint": {"reference": row.first_reference, "at": _iso(row.first_at)},
        "last_complaint": {"reference": row.last_reference, "at": _iso(row.last_at)},
        "raised_by": row.raised_by,
        "raised_at": _iso(row.raised_at),
        "state": row.state,
        "state_label": STATE_LABELS[row.state],
        "acknowledged_at": _iso(row.acknowledged_at),
        "acknowledged_by": row.acknowledged_by,
        "expired_at": _iso(row.expired_at),
    }


def list_warnings(
    session: Session,
    *,
    kind: str | None = None,
    state: str | None = None,
    category: str | None = None,
    unit_id: int | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Warnings, newest first, filtered by kind, state, category, responsible unit and WGS84 box."""
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"预警类型须为 asset（高频）或 place（热点）/ unknown kind {kind!r}", field="kind")
    if state is not None and state not in STATES:
        raise InvalidInput(
            f"状态须为 {' / '.join(STATES)} 之一 / unknown state {state!r}: one of {', '.join(STATES)}",
            field="state",
        )
    expire(session)
    where = []
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    for name, value in (("kind", kind), ("state", state), ("category", category), ("unit_id", unit_id)):
        if value is not None:
            where.append(f"w.{name} = :{name}")
            params[name] = value
    if bbox is not None:
        where.append("w.centre && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
        params |= dict(zip(("x0", "y0", "x1", "y1"), bbox, strict=True))
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY w.id DESC"
    rows = session.execute(text(sql + " LIMIT :limit OFFSET :offset"), params).all()
    return [view(row) for row in rows]


def get_warning(session: Session, warning_id: int) -> dict[str, Any]:
    """One warning by id (``NotFound`` otherwise)."""
    expire(session)
    row = session.execute(text(_SELECT + " WHERE w.id = :id"), {"id": warning_id}).one_or_none()
    if row is None:
        raise NotFound(
            f"没有编号为 {warning_id} 的预警 / no hot-spot warning {warning_id}", warning=warning_id
        )
    return view(row)


def acknowledge(session: Session, warning_id: int, actor: Actor) -> dict[str, Any]:
    """Mark a warning acknowledged (its responsible unit or an administrator); it keeps counting until it
    expires. Acknowledging an acknowledged warning changes nothing; an expired one is a ``Conflict``."""
    current = get_warning(session, warning_id)
    unit = current["unit"]["id"] if current["unit"] else None
    require(actor, Action.ACKNOWLEDGE_HOTSPOT, unit, what=f"hot-spot warning {warning_id}")
    if current["state"] == "expired":
        raise Conflict(
            f"预警 {warning_id} 已过期，无需确认 / warning {warning_id} has expired", warning=warning_id
        )
    if current["state"] == "active":
        session.execute(
            text(
                "UPDATE hotspot_warnings SET state = 'acknowledged', acknowledged_at = now(), "
                "acknowledged_by = :by WHERE id = :id"
            ),
            {"id": warning_id, "by": actor.name},
        )
    return get_warning(session, warning_id)
