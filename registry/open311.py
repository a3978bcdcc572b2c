"""Open311 GeoReport v2 in the registry's terms: services are complaint categories, requests are complaints.

The service code is the category's name (the case system's own wording, e.g. 路灯不亮); a service
request id is the complaint's reference (SC-20261206-000123). A complaint's status maps to the two
GeoReport statuses: 办结 (closed) and 退件 (returned: not this unit's, the case is dispatched again as
another) are ``closed``, received and accepted are ``open``; ``status_notes`` says which and why.

FixMyStreet's update extension (``servicerequestupdates``) reads every status change as an update
and posts status changes with its extended statuses (:data:`EXTENDED_STATUSES`). The HTTP side
(JSON/XML, errors) lives in ``api/routes/open311.py``; this module builds the plain dictionaries
both formats share.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy.orm import Session

from common.errors import InvalidInput, NotFound
from registry import addresses, categories
from registry.complaints import STATUS_LABELS

ASSET_CODE_ATTRIBUTE = "asset_code"
CLOSED_STATUSES = ("closed", "returned")
DEFAULT_WINDOW = dt.timedelta(days=90)
MAX_REQUESTS = 1000
MAX_UPDATES = 1000

# FixMyStreet's extended statuses (and GeoReport's plain open / closed) as complaint statuses. In
# progress of any kind is 签收; fixed or not, a case that needs nothing more is 办结; "not ours" and
# "sent elsewhere" are 退件.
EXTENDED_STATUSES = {
    "OPEN": "accepted",
    "INVESTIGATING": "accepted",
    "IN_PROGRESS": "accepted",
    "ACTION_SCHEDULED": "accepted",
    "FIXED": "closed",
    "CLOSED": "closed",
    "NO_FURTHER_ACTION": "closed",
    "UNABLE_TO_FIX": "closed",
    "DUPLICATE": "closed",
    "CANCELLED": "closed",
    "NOT_COUNCILS_RESPONSIBILITY": "returned",
    "INTERNAL_REFERRAL": "returned",
}
# A complaint's status as an update's status, in the same vocabulary.
UPDATE_STATUS = {
    "received": "OPEN",
    "accepted": "IN_PROGRESS",
    "returned": "NOT_COUNCILS_RESPONSIBILITY",
    "closed": "CLOSED",
}


def open311_status(status: str) -> str:
    """The GeoReport status of a complaint status: ``closed`` once 办结 or 退件, ``open`` before."""
    return "closed" if status in CLOSED_STATUSES else "open"


def status_notes(status: str, reason: str | None) -> str:
    """``status_notes``: the status in Chinese, and the reason given with it (e.g. why it was returned)."""
    label = STATUS_LABELS.get(status, status)
    return f"{label}：{reason}" if reason else label


def complaint_status_of(update_status: str) -> str:
    """The complaint status an update's ``status`` asks for (``InvalidInput`` for one not supported).

    Case and spaces are forgiven (``not councils responsibility``, as FixMyStreet itself reads them).
    """
    key = "_".join(update_status.strip().upper().replace("-", " ").split())
    if key not in EXTENDED_STATUSES:
        raise InvalidInput(
            f"不支持的状态 {update_status!r} / unsupported status {update_status!r}: one of "
            + ", ".join(EXTENDED_STATUSES),
            field="status",
        )
    return EXTENDED_STATUSES[key]


def service_list(session: Session) -> list[dict[str, Any]]:
    """The active complaint categories as GeoReport services."""
    return [_service(c) for c in categories.list_categories(session)]


def _service(category: dict[str, Any]) -> dict[str, Any]:
    return {
        "service_code": category["name"],
        "service_name": category["name"],
        "description": category["description"] or category["name"],
        # Every service has the asset_code attribute, so every service has a definition to read.
        "metadata": True,
        "type": "realtime",
        "keywords": ", ".join(category["aliases"]),
        "group": "城市部件 / city assets" if category["classes"] else "其他 / other",
    }


def service_definition(session: Session, service_code: str) -> dict[str, Any]:
    """The definition of one service: its attributes (``NotFound`` for an unknown or inactive code)."""
    category = categories.find_category(session, service_code)
    if category is None or category["name"] != categories.fold(service_code):
        raise NotFound(f"没有服务代码 {service_code!r} / no service with code {service_code!r}")
    return {
        "service_code": category["name"],
        "attributes": [
            {
                "variable": True,
                "code": ASSET_CODE_ATTRIBUTE,
                "datatype": "string",
                "required": False,
                "datatype_description": (
                    "17 位智慧码（可带连字符），如 440310-0118-000123-4 / the 17-digit asset code"
                ),
                "order": 1,
                "description": "扫码得到的部件编码 / the code scanned from the asset's label",
            }
        ],
    }


async def check_service_code(conn: AsyncConnection[Any], service_code: str) -> str:
    """The category name a posted service code names; ``InvalidInput`` when it is not an active one."""
    cur = await conn.execute(
        "SELECT name FROM complaint_categories WHERE active AND name = %s",
        (categories.fold(service_code),),
        prepare=True,
    )
    row = await cur.fetchone()
    if row is None:
        raise InvalidInput(f"未知的服务代码 / unknown service_code {service_code!r}", field="service_code")
    return str(row[0])


async def locate_address(conn: AsyncConnection[Any], county_code: str, address_id: str) -> addresses.Address:
    """The registered address a posted ``address_id`` names; ``InvalidInput`` (400) for an unknown one."""
    found = await addresses.find_address(conn, county_code, address_id)
    if found is None:
        raise InvalidInput(
            f"address_id：标准地址库中没有 {address_id!r} / address_id: {address_id!r} is not in the "
            "standard address register",
            field="address_id",
        )
    return found


@dataclass
class RequestFilter:
    """What ``GET requests`` asks for; ``ids`` wins over every other filter, as the specification says."""

    ids: Sequence[str] = ()
    service_codes: Sequence[str] = ()
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    status: str | None = None


def parse_datetime(text: str, name: str, timezone: str) -> dt.datetime:
    """A W3C / ISO 8601 date-time; without an offset it is read in the deployment's time zone."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidInput(
            f"{name} 须为 ISO 8601 时间 / {name} must be an ISO 8601 date-time, got {text!r}", field=name
        ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return value


_REQUEST_SQL = """
SELECT c.reference, c.category, c.description, c.status, c.status_at, c.received_at,
       ST_X(c.geom), ST_Y(c.geom), c.resolution, c.location_given ->> 'address', c.status_reason,
       c.location_given ->> 'address_id', c.media_url
FROM complaints c
"""


def agency_of(answer: dict[str, Any]) -> str | None:
    """The unit that acts on a complaint: its maintainer's name, else the owner's, else the supervisor's."""
    for role in ("maintainer", "owner", "supervisor"):
        unit = answer.get(role)
        if unit and unit.get("name"):
            return str(unit["name"])
    return None


def _request_view(row: Sequence[Any], timezone: str) -> dict[str, Any]:
    zone = zoneinfo.ZoneInfo(timezone)
    answer = row[8] or {}
    return {
        "service_request_id": row[0],
        "status": open311_status(row[3]),
        "status_notes": status_notes(row[3], row[10]),
        "service_name": row[1],
        "service_code": row[1],
        "description": row[2] or None,
        "agency_responsible": agency_of(answer),
        "service_notice": None,
        "requested_datetime": row[5].astimezone(zone).isoformat(timespec="seconds"),
        "updated_datetime": row[4].astimezone(zone).isoformat(timespec="seconds"),
        "expected_datetime": None,
        "address": row[9],
        "address_id": row[11],
        "zipcode": None,
        "lat": round(row[7], 7) if row[7] is not None else None,
        "long": round(row[6], 7) if row[6] is not None else None,
        # The link the client posted; photos uploaded on the scan page have no public address.
        "media_url": row[12],
    }


async def get_request(conn: AsyncConnection[Any], service_request_id: str, timezone: str) -> dict[str, Any]:
    """One service request by its id (the complaint's reference), or ``NotFound``."""
    cur = await conn.execute(
        _REQUEST_SQL + "WHERE c.reference = %s", (service_request_id.strip().upper(),), prepare=True
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"没有该诉求 / no service request {service_request_id!r}")
    return _request_view(row, timezone)


async def list_requests(
    conn: AsyncConnection[Any], query: RequestFilter, timezone: str, *, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Service requests matching ``query``, newest first, at most ``MAX_REQUESTS``.

    Without ids or dates the last 90 days are listed (the specification's default window).
    """
    where: list[str] = []
    params: list[Any] = []
    if query.ids:
        where.append("c.reference = ANY(%s)")
        params.append([i.strip().upper() for i in query.ids])
    else:
        if query.service_codes:
            where.append("c.category = ANY(%s)")
            params.append([categories.fold(c) for c in query.service_codes])
        start, end = query.start, query.end
        if start is None and end is None:
            start = (now or dt.datetime.now(dt.UTC)) - DEFAULT_WINDOW
        if start is not None and end is not None and end < start:
            raise InvalidInput("end_date 早于 start_date / end_date is before start_date", field="end_date")
        if start is not None:
            where.append("c.received_at >= %s")
            params.append(start)
        if end is not None:
            where.append("c.received_at <= %s")
            params.append(end)
        if query.status is not None:
            if query.status not in ("open", "closed"):
                raise InvalidInput(
                    f"status 须为 open 或 closed / status must be open or closed, got {query.status!r}"
                )
            where.append(("" if query.status == "closed" else "NOT ") + "(c.status = ANY(%s))")
            params.append(list(CLOSED_STATUSES))
    sql = _REQUEST_SQL + ("WHERE " + " AND ".join(where) if where else "") + " ORDER BY c.id DESC LIMIT %s"
    params.append(MAX_REQUESTS)
    cur = await conn.execute(sql, params)
    return [_request_view(row, timezone) for row in await cur.fetchall()]


_UPDATES_SQL = """
SELECT h.id, c.reference, h.status, h.reason, h.at
FROM complaint_history h JOIN complaints c ON c.id = h.complaint_id
"""


def _update_view(row: Sequence[Any], timezone: str) -> dict[str, Any]:
    return {
        "update_id": str(row[0]),
        "service_request_id": row[1],
        "status": UPDATE_STATUS.get(row[2], row[2].upper()),
        "updated_datetime": row[4].astimezone(zoneinfo.ZoneInfo(timezone)).isoformat(timespec="seconds"),
        "description": status_notes(row[2], row[3]),
        "media_url": None,
        # The registry's own status, for clients that map codes rather than FixMyStreet's statuses.
        "external_status_code": row[2],
    }


async def list_updates(
    conn: AsyncConnection[Any],
    timezone: str,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    ids: Sequence[str] = (),
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Status changes of complaints as service request updates, oldest first, at most ``MAX_UPDATES``.

    Every row of a complaint's history after the first (its arrival) is an update. Without dates
    the last 90 days are listed.
    """
    if start is None and end is None:
        start = (now or dt.datetime.now(dt.UTC)) - DEFAULT_WINDOW
    if start is not None and end is not None and end < start:
        raise InvalidInput("end_date 早于 start_date / end_date is before start_date", field="end_date")
    where: list[str] = ["h.version > 1"]
    params: list[Any] = []
    if start is not None:
        where.append("h.at >= %s")
        params.append(start)
    if end is not None:
        where.append("h.at <= %s")
        params.append(end)
    if ids:
        where.append("c.reference = ANY(%s)")
        params.append([i.strip().upper() for i in ids])
    sql = _UPDATES_SQL + "WHERE " + " AND ".join(where) + " ORDER BY h.id LIMIT %s"
    cur = await conn.execute(sql, [*params, MAX_UPDATES])
    return [_update_view(row, timezone) for row in await cur.fetchall()]
