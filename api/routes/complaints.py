"""``/api/v1/complaints/{reference}`` and ``/api/v1/assets/{code}/complaints``: complaints for staff (token).

The reporter's contact is shown to administrators and to the units responsible for the asset
(owner, maintainer, supervisor); other token holders see the complaint without it.
``POST /api/v1/complaints`` files one (the case system's JSON door beside Open311; with photos, the
same fields as ``multipart/form-data`` parts and the photos in ``photo_1`` … ``photo_3``), and
``POST /api/v1/complaints/{reference}/status`` moves a complaint (签收 / 退件 / 办结) as
``registry.complaint_status`` allows.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import re
import tempfile
import zoneinfo
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import require_actor, services
from api.params import BIGINT_MAX
from api.routes.resolve import runtime
from api.routes.scan import scan_runtime
from api.uploads import MIB, check_declared_size, read_capped_body, receive_form
from common.errors import InvalidInput, NotFound
from registry import categories, complaint_status, complaints
from registry.access import Action, require
from registry.db import Actor
from registry.dispatch_accuracy import dispatch_accuracy
from registry.schemas import ComplaintCreate, ComplaintStatusChange

router = APIRouter(tags=["complaints"])


def _sees_contact(actor: Actor, parties: tuple[int | None, ...]) -> bool:
    return actor.admin or (actor.unit_id is not None and actor.unit_id in parties)


async def _actor(request: Request) -> Actor:
    # Checked against the database every time (not the resolve path's token cache): a revoked token
    # must stop reading reporters' contacts at once.
    def check() -> Actor:
        with services(request).session() as session:
            return require_actor(request, session)

    return await run_in_threadpool(check)


# Photo parts read from a form: a few beyond PHOTOS_MAX are read so they can be refused by name.
_PHOTO_PARTS = complaints.PHOTOS_MAX + 5
_PHOTO_LIMIT = complaints.PHOTOS_MAX * complaints.PHOTO_MAX_BYTES + MIB
_REPORTER_PART = re.compile(r"reporter\[(\w+)\]")
_PHOTOS = (
    f"照片放在 photo_1 … photo_{complaints.PHOTOS_MAX} 中（每张最多 "
    f"{complaints.PHOTO_MAX_BYTES // MIB} MiB，JPEG、PNG 或 WebP）；其余字段与 JSON 同名，reporter 写作 "
    f"reporter[phone] 等 / photos go in the parts photo_1 … photo_{complaints.PHOTOS_MAX} (at most "
    f"{complaints.PHOTO_MAX_BYTES // MIB} MiB each, JPEG, PNG or WebP, judged by their bytes); the other "
    "parts are the JSON fields by name, the reporter as reporter[name], reporter[phone], reporter[email]"
)
_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": _PHOTOS,
    "properties": {
        **{name: {"type": "string"} for name in ComplaintCreate.model_fields if name != "reporter"},
        **{f"reporter[{k}]": {"type": "string"} for k in ("name", "phone", "email")},
        **{f"photo_{n}": {"type": "string", "format": "binary"} for n in range(1, complaints.PHOTOS_MAX + 1)},
    },
}


def _validated(payload: Any) -> ComplaintCreate:
    try:
        return ComplaintCreate.model_validate(payload)
    except ValidationError as exc:
        # As FastAPI reports a body it validated itself (422, each problem under "body").
        problems = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in problems]) from None


async def _json_complaint(request: Request, limit: int) -> ComplaintCreate:
    # The route is exempt from the app's body cap (a form with photos is larger): it caps JSON itself.
    try:
        payload = orjson.loads(await read_capped_body(request, limit))
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {}}]
        ) from None
    return _validated(payload)


def _photo_number(part: str) -> int:
    digits = part.rpartition("_")[2]
    return int(digits) if digits.isdigit() else 0


async def _form_complaint(request: Request) -> tuple[ComplaintCreate, list[complaints.Photo]]:
    """The fields and photos of a multipart post; every photo checked before anything is stored."""
    check_declared_size(request, _PHOTO_LIMIT)
    wanted: dict[str, str | None] = {f"photo_{n}": f"photo-{n}" for n in range(1, _PHOTO_PARTS + 1)}
    wanted["photo"] = "photo"  # the scan page's part name: refused by name below, not dropped unsaid
    photos: list[complaints.Photo] = []
    with tempfile.TemporaryDirectory(prefix="smartcode-complaint-") as folder:
        form = await receive_form(request, pathlib.Path(folder), limit=_PHOTO_LIMIT, files=wanted)
        for name in sorted(form.files, key=_photo_number):
            if not 1 <= _photo_number(name) <= complaints.PHOTOS_MAX:
                raise InvalidInput(
                    f"{name}：每件诉求最多 {complaints.PHOTOS_MAX} 张照片，放在 photo_1 … "
                    f"photo_{complaints.PHOTOS_MAX} 中 / {name}: at most {complaints.PHOTOS_MAX} photos, in "
                    f"the parts photo_1 … photo_{complaints.PHOTOS_MAX}",
                    field=name,
                )
            photos.append(complaints.check_photo(form.files[name].path.read_bytes(), part=name))
    payload: dict[str, Any] = {}
    reporter: dict[str, str] = {}
    for name, value in form.fields.items():
        if not value:
            continue  # an empty part is an absent field, as in an HTML form
        if match := _REPORTER_PART.fullmatch(name):
            reporter[match.group(1)] = value
        else:
            payload[name] = value
    if reporter:
        payload["reporter"] = reporter
    return _validated(payload), photos


@router.post(
    "/complaints",
    status_code=201,
    summary="File a complaint (诉求): resolved on arrival, answered with the responsible units (token)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ComplaintCreate.model_json_schema()},
                "multipart/form-data": {"schema": _FORM_SCHEMA},
            },
        }
    },
    responses={
        201: {"description": "the complaint with its resolution; Location names it"},
        404: {"description": "NotFound: the code is well-formed but not registered"},
        409: {"description": "Conflict: this source already sent a case with this external_id"},
        413: {"description": "the body (JSON, or the form with its photos) is larger than allowed"},
    },
)
async def post_complaint(request: Request) -> Response:
    """Record a complaint from the case system (``source: case_system``) or another client (``api``).

    Give the scanned ``code``, a location (``x``/``y`` in ``crs``: WGS84, GCJ-02, BD-09, CGCS2000 or an
    EPSG code), or both; ``category`` is a complaint category by its name. The answer is the
    complaint as ``GET /complaints/{reference}`` shows it: its resolution (owner, maintainer, supervisor,
    rule chain) and status. ``external_id`` (the sender's own case id) makes a repeated post harmless:
    the second is refused with 409 naming the first reference. Photos come as ``multipart/form-data``
    (``photo_1`` … ``photo_3``, checked like the scan page's: size-capped, type-checked by their bytes);
    one refused refuses the post, and nothing is stored.
    """

    def check() -> Actor:
        with services(request).session() as session:
            return require_actor(request, session, Action.POST_COMPLAINT)

    # The token first: nobody's photos are read before the caller may post.
    actor = await run_in_threadpool(check)
    photos: list[complaints.Photo] = []
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind == "multipart/form-data":
        body, photos = await _form_complaint(request)
    else:
        body = await _json_complaint(request, services(request).settings.api.max_body_kb * 1024)
    if body.source == "case_system":
        require(actor, Action.FILE_AS_CASE_SYSTEM)
    if body.code is None and body.x is None and body.y is None:
        raise InvalidInput(
            "须提供 code 或位置（x、y）/ give the scanned code, a location (x and y), or both", field="code"
        )
    rt, sc = runtime(request), scan_runtime(request)
    reported_at = body.reported_at
    if reported_at is not None and reported_at.tzinfo is None:
        reported_at = reported_at.replace(tzinfo=zoneinfo.ZoneInfo(sc.settings.area.timezone))
    # A few minutes of clock skew between the case system and us are not an error; a date ahead is a typo
    # that would resolve the complaint against a registry that does not exist yet.
    if reported_at is not None and reported_at > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
        raise InvalidInput(
            f"reported_at {reported_at.isoformat()} 在将来 / reported_at is in the future",
            field="reported_at",
        )
    async with sc.write_pool.connection() as conn:
        category = None
        if body.category:
            try:
                category = await sc.service_code(conn, body.category)
            except InvalidInput as exc:
                raise InvalidInput(
                    f"未知的诉求类别 / unknown category {categories.fold(body.category)!r} "
                    "(GET /api/v1/categories lists them)",
                    field="category",
                ) from exc
        data = complaints.ComplaintIn(
            source=body.source,
            description=body.description,
            category=category,
            code=body.code,
            x=body.x,
            y=body.y,
            crs=body.crs if body.x is not None or body.y is not None else None,
            accuracy_m=body.accuracy_m,
            external_id=body.external_id,
            reported_at=reported_at,
            reporter={str(k): v for k, v in body.reporter.items() if v},
            address=body.address,
            photos=photos,
            client_ip=request.client.host if request.client else None,
        )
        view = await complaints.create_complaint(
            conn,
            conn,
            rt.resolver,
            rt.log,
            data,
            actor=actor.name,
            settings=sc.settings.area,
            hotspot_rules=sc.settings.hotspots,
        )
    headers = {**_etag(view), "Location": f"{request.url.path}/{view['reference']}"}
    return Response(orjson.dumps(view), status_code=201, media_type="application/json", headers=headers)


@router.get("/assets/{code}/complaints", summary="Complaints about one asset, newest first (token)")
async def asset_complaints(
    request: Request, code: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Response:
    """The complaint history of an asset: what was reported, when, and who was named responsible."""
    actor = await _actor(request)
    async with scan_runtime(request).write_pool.connection() as conn:
        parties = await complaints.asset_parties(conn, code)
        items = await complaints.asset_complaints(
            conn, code, limit=limit, contact=_sees_contact(actor, parties)
        )
    return Response(orjson.dumps({"items": items}), media_type="application/json")


@router.get("/complaints/{reference}", summary="One complaint with its resolution and history (token)")
async def get_complaint(request: Request, reference: str) -> Response:
    """A complaint by its reference number (e.g. SC-20261206-000123)."""
    actor = await _actor(request)
    async with scan_runtime(request).write_pool.connection() as conn:
        view = await complaints.get_complaint(conn, reference, contact=actor.admin)
        if not actor.admin and view["asset_code"]:
            try:
                parties = await complaints.asset_parties(conn, view["asset_code"])
            except NotFound:
                parties = (None, None, None)
            if _sees_contact(actor, parties):
                view = await complaints.get_complaint(conn, reference, contact=True)
    return Response(orjson.dumps(view), media_type="application/json", headers=_etag(view))


def _etag(view: dict[str, Any]) -> dict[str, str]:
    return {"ETag": f'"{view["version"]}"'}


_IF_MATCH = re.compile(r'^\s*(?:W/)?"?(\d{1,9})"?\s*$')


def expected_version(body_version: int | None, if_match: str | None) -> tuple[int, bool]:
    """The version the caller saw (body, or If-Match as the ETag ``"3"``); whether it came as If-Match."""
    header: int | None = None
    if if_match is not None:
        match = _IF_MATCH.match(if_match)
        if match is None:
            raise InvalidInput(
                f'If-Match 须为诉求的版本号，如 "3" / If-Match must be the complaint\'s version (its ETag, '
                f'e.g. "3"), got {if_match[:40]!r}',
                field="If-Match",
            )
        header = int(match.group(1))
    if header is not None and body_version is not None and header != body_version:
        raise InvalidInput(
            f"If-Match（{header}）与 version（{body_version}）不一致 / If-Match ({header}) and version "
            f"({body_version}) disagree",
            field="version",
        )
    if header is not None:
        return header, True
    if body_version is None:
        raise InvalidInput(
            "须提供读到的版本号（version 或 If-Match），以免覆盖别人的更新 / send the version you read "
            "(body field version, or If-Match) so a concurrent update is not overwritten",
            field="version",
        )
    return body_version, False


@router.post(
    "/complaints/{reference}/status",
    summary="Change a complaint's status: accepted 签收, returned 退件, closed 办结 (token)",
    responses={412: {"description": "PreconditionFailed: the If-Match version is no longer current"}},
)
def change_status(request: Request, reference: str, body: ComplaintStatusChange) -> Response:
    """Move the complaint if its version is still the one you read; the updated view with its history.

    Allowed: received → accepted / returned / closed; accepted → accepted (a progress note) /
    returned / closed; returned and closed are final. A return needs a reason. The case system
    (admin or reader token) may do all three; the unit the complaint was routed to (its owner or
    maintainer) may accept or return it. A stale version is refused: 409 (body ``version``) or 412
    (``If-Match``), naming the current version.
    """
    version, from_header = expected_version(body.version, request.headers.get("if-match"))
    action = Action.CLOSE_COMPLAINT if body.status == "closed" else Action.ROUTE_COMPLAINT
    with services(request).session() as session:
        actor = require_actor(request, session, action)
        view = complaint_status.change_status(
            session,
            reference,
            body.status,
            actor=actor,
            reason=body.reason,
            expected_version=version,
            unit_id=body.unit_id,
            if_match=from_header,
        )
    return Response(orjson.dumps(view), media_type="application/json", headers=_etag(view))


# The registry's records start in this century; dates far outside are typing errors, not queries.
EARLIEST, LATEST = dt.date(2000, 1, 1), dt.date(2100, 12, 31)


@router.get(
    "/dispatch-accuracy",
    summary="Dispatch accuracy per unit (分拨准确性): routed, returned, disputed, upheld (token)",
)
def get_dispatch_accuracy(
    request: Request,
    since: Annotated[
        dt.date | None, Query(alias="from", description="first day (local); 30 days back")
    ] = None,
    until: Annotated[dt.date | None, Query(alias="to", description="last day (local), default today")] = None,
    unit: Annotated[int | None, Query(ge=1, le=BIGINT_MAX, description="one unit only")] = None,
) -> dict[str, Any]:
    """Per unit over the complaints received in a period: how often the registry sent the case right."""
    svc = services(request)
    zone = zoneinfo.ZoneInfo(svc.settings.area.timezone)
    with svc.session() as session:
        require_actor(request, session)
        for name, day in (("from", since), ("to", until)):
            if day is not None and not EARLIEST <= day <= LATEST:
                raise InvalidInput(f"{name} {day} is outside {EARLIEST} … {LATEST}", field=name)
        last = until or dt.datetime.now(zone).date()
        first = since or last - dt.timedelta(days=29)
        if first > last:
            raise InvalidInput(f"from {first} is after to {last}", field="from")
        start = dt.datetime.combine(first, dt.time(), zone)
        end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone)
        return dispatch_accuracy(session, since=start, until=end, unit_id=unit)
