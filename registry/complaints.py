"""Complaints (诉求): a report about an asset or a place, resolved on arrival and kept as it arrived.

A complaint comes from the scan page (扫码报事), the 12345 case system, an Open311 client or the API.
On arrival it is resolved (by the scanned code, or by its location when there is no code) with the
public entry points of :mod:`registry.resolution`; the answer (responsible units, rule chain,
explanation) is stored with the complaint and its resolution log id. The record is never rewritten:
only its status moves, and every status is a row of ``complaint_history`` (migration 0013).

Like the resolver, this module talks to PostgreSQL through async psycopg (the case system posts at
hundreds a second); :func:`registry.resolution.run_sync` serves synchronous callers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from psycopg import AsyncConnection, errors

from common.errors import Conflict, InvalidInput, NotFound
from common.settings import AreaSettings, HotspotSettings
from registry import hotspots
from registry.codes import parse_code
from registry.events import emit_many_async
from registry.jsonb import jsonb
from registry.resolution import LocationQuery, ResolutionLog, Resolver

SOURCES = ("scan", "case_system", "open311", "api")
STATUS_RECEIVED = "received"
# The case system's statuses (issue 15); what may follow what is registry.complaint_status.TRANSITIONS.
STATUSES = ("received", "accepted", "returned", "closed")
STATUS_LABELS = {"received": "已受理", "accepted": "已签收", "returned": "已退件", "closed": "已办结"}

PHOTO_MAX_BYTES = 5 * 1024 * 1024
PHOTOS_MAX = 3
# An Open311 photo link (media_url): stored as sent, never fetched. Longer links are refused, not cut.
MEDIA_URL_MAX = 2000
# Spaces and C0/C1 control characters have no place in a URL (they would be percent-encoded); a link
# carrying them is a mistake or an attempt to smuggle a second line into whatever displays it.
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f]")
# GeoReport v2 lets a description run to 4000 characters; the scan page's form asks for at most 2000.
DESCRIPTION_MAX = 4000
# Categories the scan page offers beside those of the asset's class: a problem with the label
# itself, and a label found far from where the registry places the asset.
LABEL_CATEGORY = "标签损坏或疑似伪造"
POSITION_CATEGORY = "位置与登记不符"
OTHER_CATEGORY = "其他问题"
SCAN_CATEGORIES = (LABEL_CATEGORY, POSITION_CATEGORY, OTHER_CATEGORY)

# Magic bytes of the image types accepted: what the bytes are, not what the file name or the
# client's Content-Type claim.
_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"


def sniff_image(data: bytes) -> str:
    """The MIME type of a JPEG, PNG or WebP image judged by its first bytes; ``InvalidInput`` otherwise."""
    if data.startswith(_JPEG):
        return "image/jpeg"
    if data.startswith(_PNG):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise InvalidInput(
        "照片须为 JPEG、PNG 或 WebP 图片 / the photo must be a JPEG, PNG or WebP image", field="photo"
    )


@dataclass(frozen=True)
class Photo:
    """A photo as received: its bytes, type-checked and size-capped by :func:`check_photo`."""

    data: bytes
    content_type: str

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes (to spot the same photo sent twice)."""
        return hashlib.sha256(self.data).hexdigest()


def check_photo(data: bytes, part: str | None = None) -> Photo:
    """A photo after the checks: not empty, at most ``PHOTO_MAX_BYTES``, JPEG/PNG/WebP by its bytes.

    ``part`` names the form part the photo came in (``photo_2``): the error then says which photo it was.
    """
    name, prefix = part or "photo", f"{part}：" if part else ""
    if not data:
        raise InvalidInput(prefix + "照片是空文件 / the photo is empty", field=name)
    if len(data) > PHOTO_MAX_BYTES:
        raise InvalidInput(
            f"{prefix}照片超过 {PHOTO_MAX_BYTES // (1024 * 1024)} MiB / the photo is larger than "
            f"{PHOTO_MAX_BYTES // (1024 * 1024)} MiB",
            field=name,
            size=len(data),
        )
    try:
        return Photo(data=data, content_type=sniff_image(data))
    except InvalidInput as exc:
        raise InvalidInput(prefix + exc.message, field=name) from None


def check_media_url(url: str) -> str:
    """A photo link as GeoReport's ``media_url``: an http(s) URL, at most ``MEDIA_URL_MAX`` characters.

    Refused (``InvalidInput`` naming media_url): other schemes (``ftp:``, ``javascript:``, ``data:``),
    credentials in the link (``user:pass@``), spaces and control characters, a link with no host.
    The registry stores the link and never fetches it.
    """
    if len(url) > MEDIA_URL_MAX:
        raise InvalidInput(
            f"media_url 最多 {MEDIA_URL_MAX} 字符 / media_url is longer than {MEDIA_URL_MAX} characters",
            field="media_url",
        )
    if _URL_UNSAFE.search(url):
        raise InvalidInput(
            "media_url 不能含空格或控制字符 / media_url must not contain spaces or control characters",
            field="media_url",
        )
    try:
        parts = urlsplit(url)
        scheme, host, _ = parts.scheme.lower(), parts.hostname, parts.port  # a bad port raises ValueError
    except ValueError:
        scheme, host = "", None
    if scheme not in ("http", "https") or not host:
        raise InvalidInput(
            "media_url 须为 http:// 或 https:// 开头的图片地址 / media_url must be an http or https URL "
            "with a host",
            field="media_url",
        )
    if "@" in urlsplit(url).netloc:
        raise InvalidInput(
            "media_url 不能含用户名或密码 / media_url must not carry a user name or password (user:pass@)",
            field="media_url",
        )
    return url


@dataclass
class ComplaintIn:
    """A complaint as it arrives; give a scanned ``code``, a location (``x``/``y`` in ``crs``), or both."""

    source: str
    description: str = ""
    category: str | None = None
    code: str | None = None
    x: float | None = None
    y: float | None = None
    crs: str | None = None
    accuracy_m: float | None = None
    external_id: str | None = None
    reported_at: dt.datetime | None = None
    reporter: dict[str, str] = field(default_factory=dict)
    photos: Sequence[Photo] = ()
    label_status: str | None = None
    client_ip: str | None = None
    address: str | None = None  # as the reporter wrote it (Open311 address_string); kept with the location
    address_id: str | None = None  # the standard address register's id the location was taken from
    media_url: str | None = None  # Open311's link to a photo the client hosts; stored, never fetched


def reference_for(complaint_id: int, received_at: dt.datetime, timezone: str) -> str:
    """The reference people quote: ``SC-<local date>-<id, at least 6 digits>``, e.g. SC-20261206-000123."""
    day = received_at.astimezone(zoneinfo.ZoneInfo(timezone)).strftime("%Y%m%d")
    return f"SC-{day}-{complaint_id:06d}"


def _check(data: ComplaintIn) -> None:
    if data.source not in SOURCES:
        raise InvalidInput(f"unknown complaint source {data.source!r}; one of {', '.join(SOURCES)}")
    if len(data.description) > DESCRIPTION_MAX:
        raise InvalidInput(
            f"问题描述最多 {DESCRIPTION_MAX} 字 / the description exceeds {DESCRIPTION_MAX} characters",
            field="description",
        )
    if data.media_url is not None:
        check_media_url(data.media_url)
    if len(data.photos) > PHOTOS_MAX:
        raise InvalidInput(f"at most {PHOTOS_MAX} photos per complaint", field="photo")
    if (data.x is None) != (data.y is None):
        raise InvalidInput("a location needs both coordinates (lon and lat, or x and y)", field="lat")
    if data.code is None and data.x is None:
        raise InvalidInput("a complaint needs a scanned code or a location", field="code")
    if data.accuracy_m is not None and not (math.isfinite(data.accuracy_m) and data.accuracy_m >= 0):
        raise InvalidInput("accuracy must be a non-negative number of metres", field="accuracy")


async def _distance_m(
    conn: AsyncConnection[Any], srid: int, code: str, lon: float, lat: float
) -> float | None:
    # On the metric column, so a cable's distance is to the line, not to one point of it.
    cur = await conn.execute(
        f"SELECT ST_Distance(geom_m, ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4326), {int(srid)})) "
        "FROM assets WHERE code = %s",
        (lon, lat, code),
        prepare=True,
    )
    row = await cur.fetchone()
    return round(float(row[0]), 1) if row and row[0] is not None else None


@dataclass
class Resolved:
    """What a complaint's arrival resolved: the answer, the asset, where the reporter stood."""

    answer: dict[str, Any]
    asset_code: str | None
    lon: float | None
    lat: float | None
    location_given: dict[str, Any] | None
    distance_m: float | None


async def resolve_complaint(
    conn: AsyncConnection[Any],
    resolver: Resolver,
    log: ResolutionLog,
    data: ComplaintIn,
    *,
    actor: str,
    metric_srid: int,
) -> Resolved:
    """Check a complaint and resolve it (reads only: ``conn`` may be a read-only or replica connection).

    With a code, the asset's parties answer (``NotFound`` / ``InvalidCode`` for a bad code) and a
    location that cannot be used (outside the service area) is kept as given but not placed. Without
    a code, the location is resolved with the rule chain and must be usable.
    """
    _check(data)
    lon: float | None = None
    lat: float | None = None
    location_given: dict[str, Any] | None = None
    if data.x is not None and data.y is not None:
        location_given = {"x": data.x, "y": data.y, "crs": data.crs or "wgs84"}
        try:
            _, lon, lat = resolver.locate(data.x, data.y, data.crs)
        except InvalidInput as exc:
            if data.code is None:
                raise
            location_given["note"] = exc.message
    if data.address:
        location_given = {**(location_given or {}), "address": data.address[:500]}
    if data.address_id:
        location_given = {**(location_given or {}), "address_id": data.address_id}
    if data.code is not None:
        answer, _ = await resolver.resolve_code(
            conn, data.code, at=data.reported_at, log=log, actor=actor, channel=data.source
        )
    else:
        assert data.x is not None and data.y is not None
        query = LocationQuery(x=data.x, y=data.y, crs=data.crs, category=data.category, at=data.reported_at)
        answer, _ = await resolver.resolve_location(conn, query, log=log, actor=actor, channel=data.source)
    asset_code = answer["asset"]["code"] if data.code is not None and answer.get("asset") else None
    distance = None
    if asset_code is not None and lon is not None and lat is not None:
        distance = await _distance_m(conn, metric_srid, asset_code, lon, lat)
    return Resolved(answer, asset_code, lon, lat, location_given, distance)


async def record_complaint(
    conn: AsyncConnection[Any],
    data: ComplaintIn,
    resolved: Resolved,
    *,
    actor: str,
    timezone: str,
    hotspot_rules: HotspotSettings | None = None,
) -> str:
    """Write a resolved complaint, its photos and its first history row in one transaction; its reference.

    ``conn`` must be a connection to the primary that may write. The case system's own id is unique
    per source: posting the same case again raises ``Conflict`` naming the first reference. The same
    transaction raises or joins hot-spot warnings (:mod:`registry.hotspots`; the settings' defaults
    when ``hotspot_rules`` is None).
    """
    rules = hotspot_rules or HotspotSettings.model_construct()
    try:
        return await _insert(conn, data, resolved, actor=actor, timezone=timezone, rules=rules)
    except errors.UniqueViolation as exc:
        if data.external_id is None or exc.diag.constraint_name != "complaints_external_idx":
            raise
        cur = await conn.execute(
            "SELECT reference FROM complaints WHERE source = %s AND external_id = %s",
            (data.source, data.external_id),
        )
        row = await cur.fetchone()
        raise Conflict(
            f"case {data.external_id!r} from {data.source} is already recorded"
            + (f" as {row[0]}" if row else ""),
            reference=row[0] if row else None,
        ) from exc


async def _insert(
    conn: AsyncConnection[Any],
    data: ComplaintIn,
    resolved: Resolved,
    *,
    actor: str,
    timezone: str,
    rules: HotspotSettings,
) -> str:
    answer = resolved.answer

    def unit_id(role: str) -> int | None:
        unit = answer.get(role)
        return int(unit["id"]) if unit else None

    async with conn.transaction():
        cur = await conn.execute(
            "SELECT nextval(pg_get_serial_sequence('complaints', 'id')), now()", prepare=True
        )
        row = await cur.fetchone()
        assert row is not None
        complaint_id, received_at = int(row[0]), row[1]
        reference = reference_for(complaint_id, received_at, timezone)
        await conn.execute(
            """
            INSERT INTO complaints (
                id, reference, source, external_id, received_at, reported_at, category, asset_code,
                label_status, description, geom, location_given, accuracy_m, distance_m, reporter,
                client_ip, resolution_id, resolution_status, resolution_rule, owner_id, maintainer_id,
                supervisor_id, resolution, actor, status, status_at, status_by, media_url)
            OVERRIDING SYSTEM VALUE
            VALUES (%(id)s, %(ref)s, %(source)s, %(ext)s, %(at)s, %(reported)s, %(category)s, %(code)s,
                %(label)s, %(description)s,
                CASE WHEN %(lon)s::float8 IS NULL THEN NULL
                     ELSE ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) END,
                %(given)s, %(accuracy)s, %(distance)s, %(reporter)s, %(ip)s, %(rid)s, %(rstatus)s,
                %(rule)s, %(owner)s, %(maintainer)s, %(supervisor)s, %(answer)s, %(actor)s,
                'received', %(at)s, %(actor)s, %(media_url)s)
            """,
            {
                "id": complaint_id,
                "ref": reference,
                "source": data.source,
                "ext": data.external_id,
                "at": received_at,
                "reported": data.reported_at,
                "category": data.category,
                "code": resolved.asset_code,
                "label": data.label_status,
                "description": data.description,
                "lon": resolved.lon,
                "lat": resolved.lat,
                "given": jsonb(resolved.location_given) if resolved.location_given is not None else None,
                "accuracy": data.accuracy_m,
                "distance": resolved.distance_m,
                "reporter": jsonb(data.reporter),
                "ip": data.client_ip,
                "rid": answer.get("id"),
                "rstatus": answer.get("status"),
                "rule": answer.get("rule"),
                "owner": unit_id("owner"),
                "maintainer": unit_id("maintainer"),
                "supervisor": unit_id("supervisor"),
                "answer": jsonb(answer),
                "actor": actor,
                "media_url": data.media_url,
            },
            prepare=True,
        )
        for seq, photo in enumerate(data.photos, start=1):
            await conn.execute(
                "INSERT INTO complaint_photos (complaint_id, seq, content_type, size_bytes, sha256, data) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (complaint_id, seq, photo.content_type, len(photo.data), photo.sha256, photo.data),
                prepare=True,
            )
        # In the complaint's transaction: a complaint that is rolled back never announced itself.
        subject = event_subject(resolved.asset_code, answer, reference)
        created = {
            "reference": reference,
            "external_id": data.external_id,
            "source": data.source,
            "category": data.category,
            "asset_code": resolved.asset_code,
            "received_at": received_at.isoformat(),
            "status": STATUS_RECEIVED,
            "location": {"lon": resolved.lon, "lat": resolved.lat} if resolved.lon is not None else None,
        }
        resolution = {
            "reference": reference,
            "external_id": data.external_id,
            "source": data.source,
            "asset_code": resolved.asset_code,
            "resolution_id": answer.get("id"),
            "status": answer.get("status"),
            "rule": answer.get("rule"),
            "matched_rule": answer.get("matched_rule"),
            **{role: _unit_ref(answer.get(role)) for role in ("owner", "maintainer", "supervisor")},
        }
        await emit_many_async(
            conn, [("complaint.created", created), ("complaint.resolved", resolution)], subject=subject
        )
        new = hotspots.NewComplaint(
            id=complaint_id,
            reference=reference,
            received_at=received_at,
            asset_code=resolved.asset_code,
            category=data.category,
            located=resolved.lon is not None,
            owner_id=unit_id("owner"),
        )
        await hotspots.check_complaint(conn, new, rules)
    return reference


def _unit_ref(unit: dict[str, Any] | None) -> dict[str, Any] | None:
    return {"id": unit.get("id"), "name": unit.get("name")} if unit else None


def event_subject(asset_code: str | None, resolution: dict[str, Any] | None, reference: str) -> str:
    """The subject of a complaint's events: its asset's code (scanned, else resolved), else its reference.

    Events of one subject are delivered in order, so every event of a complaint uses the same one.
    """
    if asset_code:
        return asset_code
    asset = (resolution or {}).get("asset")
    if isinstance(asset, dict) and asset.get("code"):
        return str(asset["code"])
    return reference


async def file_complaint(
    read_conn: AsyncConnection[Any],
    write_conn: AsyncConnection[Any],
    resolver: Resolver,
    log: ResolutionLog,
    data: ComplaintIn,
    *,
    actor: str,
    settings: AreaSettings,
    hotspot_rules: HotspotSettings | None = None,
) -> tuple[str, Resolved]:
    """Resolve (on ``read_conn``) and record (on ``write_conn``) one complaint; its reference and answer.

    The two may be one connection to the primary (an Open311 post uses one: a second checkout per
    request cost more than it spread).
    """
    resolved = await resolve_complaint(
        read_conn, resolver, log, data, actor=actor, metric_srid=settings.metric_srid
    )
    reference = await record_complaint(
        write_conn, data, resolved, actor=actor, timezone=settings.timezone, hotspot_rules=hotspot_rules
    )
    return reference, resolved


async def create_complaint(
    read_conn: AsyncConnection[Any],
    write_conn: AsyncConnection[Any],
    resolver: Resolver,
    log: ResolutionLog,
    data: ComplaintIn,
    *,
    actor: str,
    settings: AreaSettings,
    hotspot_rules: HotspotSettings | None = None,
) -> dict[str, Any]:
    """:func:`file_complaint`, then the complaint's view as the API shows it."""
    rules = hotspot_rules
    reference, _ = await file_complaint(
        read_conn, write_conn, resolver, log, data, actor=actor, settings=settings, hotspot_rules=rules
    )
    return await get_complaint(write_conn, reference, contact=True)


VIEW_SQL = """
SELECT c.reference, c.source, c.external_id, c.received_at, c.reported_at, c.category, c.asset_code,
       c.label_status, c.description, ST_X(c.geom), ST_Y(c.geom), c.location_given, c.accuracy_m,
       c.distance_m, c.reporter, c.resolution_id, c.resolution_status, c.resolution_rule, c.resolution,
       c.status, c.status_at, c.version,
       (SELECT count(*) FROM complaint_photos p WHERE p.complaint_id = c.id), c.id, c.status_reason,
       c.status_unit_id, c.media_url
FROM complaints c
"""


def row_view(row: Sequence[Any], *, contact: bool) -> dict[str, Any]:
    """A row of ``VIEW_SQL`` as the API shows a complaint (without its history)."""
    answer = row[18] or {}
    lon, lat = row[9], row[10]
    return {
        "reference": row[0],
        "source": row[1],
        "external_id": row[2],
        "received_at": row[3].isoformat(),
        "reported_at": row[4].isoformat() if row[4] else None,
        "category": row[5],
        "asset_code": row[6],
        "asset_code_display": display_code(row[6]) if row[6] else None,
        "label_status": row[7],
        "description": row[8],
        "location": {"lon": round(lon, 7), "lat": round(lat, 7)} if lon is not None else None,
        "location_given": row[11],
        "accuracy_m": row[12],
        "distance_m": row[13],
        "reporter": row[14] if contact else None,
        "photos": row[22],
        "media_url": row[26],
        "status": row[19],
        "status_label": STATUS_LABELS.get(row[19], row[19]),
        "status_at": row[20].isoformat(),
        "status_reason": row[24],
        "status_unit_id": row[25],
        "version": row[21],
        "resolution": {
            "id": row[15],
            "status": row[16],
            "rule": row[17],
            "owner": answer.get("owner"),
            "maintainer": answer.get("maintainer"),
            "supervisor": answer.get("supervisor"),
            "matched_rule": answer.get("matched_rule"),
            "explanation": answer.get("explanation", []),
        },
    }


async def get_complaint(
    conn: AsyncConnection[Any], reference: str, *, contact: bool = False
) -> dict[str, Any]:
    """One complaint by its reference, with its history; the reporter's contact only when ``contact``."""
    cur = await conn.execute(VIEW_SQL + "WHERE c.reference = %s", (reference.strip().upper(),), prepare=True)
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no complaint with reference {reference!r}", reference=reference)
    view = row_view(row, contact=contact)
    cur = await conn.execute(
        HISTORY_SQL,
        (row[23],),
        prepare=True,
    )
    view["history"] = [history_item(h) for h in await cur.fetchall()]
    return view


HISTORY_COLUMNS = "version, at, actor, status, reason, id, unit_id, update_ref"
HISTORY_SQL = f"SELECT {HISTORY_COLUMNS} FROM complaint_history WHERE complaint_id = %s ORDER BY id"


def history_item(h: Sequence[Any]) -> dict[str, Any]:
    """One row of ``complaint_history`` (as selected by ``HISTORY_SQL``) as the views show it."""
    return {
        "update_id": str(h[5]),
        "version": h[0],
        "at": h[1].isoformat(),
        "actor": h[2],
        "status": h[3],
        "status_label": STATUS_LABELS.get(h[3], h[3]),
        "reason": h[4],
        "unit_id": h[6],
        "update_ref": h[7],  # the client's own id of the update (Open311 update_id), if it sent one
    }


async def asset_complaints(
    conn: AsyncConnection[Any], code: str, *, limit: int = 100, contact: bool = False
) -> list[dict[str, Any]]:
    """The complaints about one asset, newest first (``InvalidCode`` for a malformed code)."""
    plain = str(parse_code(code))
    cur = await conn.execute(
        VIEW_SQL + "WHERE c.asset_code = %s ORDER BY c.id DESC LIMIT %s", (plain, limit), prepare=True
    )
    rows = await cur.fetchall()
    views = {row[23]: row_view(row, contact=contact) for row in rows}
    for view in views.values():
        view["history"] = []
    if views:
        # One read for every complaint's history, not one per complaint.
        cur = await conn.execute(
            f"SELECT complaint_id, {HISTORY_COLUMNS} FROM complaint_history "
            "WHERE complaint_id = ANY(%s) ORDER BY id",
            (list(views),),
            prepare=True,
        )
        for h in await cur.fetchall():
            views[h[0]]["history"].append(history_item(h[1:]))
    return list(views.values())


async def asset_parties(conn: AsyncConnection[Any], code: str) -> tuple[int | None, int | None, int | None]:
    """The current owner, maintainer and supervisor ids of an asset (``NotFound`` when unregistered)."""
    plain = str(parse_code(code))
    cur = await conn.execute(
        "SELECT owner_id, maintainer_id, supervisor_id FROM assets WHERE code = %s", (plain,), prepare=True
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(
            f"code {display_code(plain)} is well-formed but not registered", code=display_code(plain)
        )
    return row[0], row[1], row[2]


async def categories_for_class(conn: AsyncConnection[Any], class_code: str) -> list[str]:
    """The active complaint categories that concern a component class, by name."""
    cur = await conn.execute(
        "SELECT name FROM complaint_categories WHERE active AND %s = ANY(class_codes) ORDER BY name",
        (class_code,),
        prepare=True,
    )
    return [r[0] for r in await cur.fetchall()]


def display_code(code: str) -> str:
    """The printed form of a 17-digit code (``440310-0118-000123-4``)."""
    return parse_code(code).formatted
