"""``/open311/v2/``: Open311 GeoReport v2 for case systems and Open311 clients (JSON and XML).

Services are complaint categories, service requests are complaints (see ``registry/open311.py``).
Errors are answered the GeoReport way (``[{"code": 400, "description": "..."}]`` or
``<errors><error>``), not in the ``/api/v1`` shape, because Open311 clients parse them.
Posting needs ``api_key``: any live API token (admin, reader or unit); a missing or unknown key is 403.
FixMyStreet's update extension (``servicerequestupdates``) reads and posts status changes; who may
post which is the access policy's (``registry.complaint_status``).
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
import psycopg
import sqlalchemy.exc
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from psycopg import AsyncConnection
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from api.deps import services
from api.params import optional_number
from api.routes.resolve import runtime
from api.routes.scan import scan_runtime
from common.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    SmartcodeError,
    Unauthorized,
)
from common.settings import Settings
from registry import complaint_status, complaints, open311, tokens
from registry.access import Action, Actor, require, require_role

router = APIRouter(prefix="/open311/v2", tags=["open311"])
log = logging.getLogger("smartcode.api")

FORMATS = ("json", "xml")
_FIELD_MAX = 4000
# A reporter's contact field: longer is refused, never cut (a cut e-mail address reaches nobody).
_CONTACT_MAX = 200

# GeoReport's element names for list items, by their list's name.
_ITEM_TAGS = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "service_requests_updates": "request_update",
    "service_request_updates": "request_update",
}


class _BadFormat(SmartcodeError):
    """A path that does not end in .json or .xml."""


def _status(exc: SmartcodeError) -> int:
    if isinstance(exc, InvalidInput | Conflict):
        return 400
    if isinstance(exc, Unauthorized | Forbidden):
        return 403
    if isinstance(exc, NotFound | _BadFormat):
        return 404
    if isinstance(exc, DatabaseUnavailable):
        return 503
    return 500


# Characters XML 1.0 cannot carry at all (most C0 controls, surrogates, U+FFFE/U+FFFF): written as
# U+FFFD so that one odd description never makes the whole answer unreadable to an XML client.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: Any) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def _xml_value(parent: ET.Element, tag: str, value: Any) -> None:
    element = ET.SubElement(parent, tag)
    if isinstance(value, list):
        item_tag = _ITEM_TAGS.get(tag, "item")
        for item in value:
            _xml_value(element, item_tag, item)
    elif isinstance(value, dict):
        for key, inner in value.items():
            _xml_value(element, key, inner)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = _xml_text(value)


def render(fmt: str, root: str, body: Any, status: int = 200) -> Response:
    """A GeoReport answer: ``body`` as JSON, or as XML under ``root`` (lists get the spec's item tags)."""
    if fmt == "xml":
        element = ET.Element(root)
        items = body if isinstance(body, list) else [body]
        item_tag = _ITEM_TAGS.get(root, "item")
        for item in items:
            if isinstance(body, list):
                _xml_value(element, item_tag, item)
            else:
                for key, value in item.items():
                    _xml_value(element, key, value)
        xml = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(element, encoding="unicode").encode()
        return Response(xml, status_code=status, media_type="text/xml; charset=utf-8")
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(fmt: str, exc: SmartcodeError) -> Response:
    status = _status(exc)
    message = exc.message if status < 500 else "内部错误 / internal error"
    return _error_body(fmt, status, message)


def _error_body(fmt: str, status: int, message: str) -> Response:
    if fmt == "xml":
        errors = ET.Element("errors")
        error = ET.SubElement(errors, "error")
        ET.SubElement(error, "code").text = str(status)
        ET.SubElement(error, "description").text = _xml_text(message)
        xml = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(errors, encoding="unicode").encode()
        return Response(xml, status_code=status, media_type="text/xml; charset=utf-8")
    return Response(
        orjson.dumps([{"code": status, "description": message}]),
        status_code=status,
        media_type="application/json",
    )


def body_too_large(path: str, message: str) -> Response:
    """The body cap's 413 in GeoReport's error shape, in the format the path asks for."""
    return _error_body("xml" if path.endswith(".xml") else "json", 413, message)


async def _answer(fmt: str, make: Callable[[], Awaitable[Response]]) -> Response:
    if fmt not in FORMATS:
        return _error("json", _BadFormat("格式须为 .json 或 .xml / the format must be .json or .xml"))
    try:
        return await make()
    except SmartcodeError as exc:
        return _error(fmt, exc)
    # Open311 clients parse every error as [{code, description}]: the body cap's 413, a lost database
    # and a bug are answered in that shape too, never in /api/v1's (and never with the cause's text).
    except HTTPException as exc:
        return _error_body(fmt, exc.status_code, str(exc.detail))
    except (psycopg.DataError, sqlalchemy.exc.DataError):
        # A value the database cannot hold (a NUL character in an id or a code) is the caller's input.
        return _error_body(
            fmt,
            400,
            "请求中有无法保存的值（如 NUL 字符）/ a value in the request cannot be stored (e.g. a NUL)",
        )
    except (psycopg.OperationalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError) as exc:
        log.warning("database unavailable on an Open311 request: %s", type(exc).__name__)
        return _error_body(fmt, 503, "数据库暂不可用，请稍后重试 / the database is unavailable: retry later")
    except Exception:
        log.exception("unexpected error on an Open311 request")
        return _error_body(
            fmt, 500, "内部错误，已记录 / internal error: the failure was logged on the server"
        )


def _split(name: str) -> tuple[str, str]:
    # services/{code}.json: the code is everything before the last dot.
    stem, dot, fmt = name.rpartition(".")
    return (stem, fmt) if dot else (name, "")


def _jurisdiction(request: Request, given: str | None) -> None:
    county = services(request).settings.area.county_code
    if given not in (None, "", county):
        raise InvalidInput(
            f"jurisdiction_id 须为 {county} 或不填 / jurisdiction_id must be {county} or absent",
            field="jurisdiction_id",
        )


@router.get("/services.{fmt}", summary="Service list: the complaint categories")
async def service_list(request: Request, fmt: str) -> Response:
    """Every active complaint category as a GeoReport service."""

    async def make() -> Response:
        _jurisdiction(request, request.query_params.get("jurisdiction_id"))

        def read() -> list[dict[str, Any]]:
            with services(request).session() as session:
                return open311.service_list(session)

        return render(fmt, "services", await run_in_threadpool(read))

    return await _answer(fmt, make)


@router.get("/services/{name}", summary="Service definition: the attributes of one service")
async def service_definition(request: Request, name: str) -> Response:
    """The attributes a request for this service may carry (``asset_code``)."""
    code, fmt = _split(name)

    async def make() -> Response:
        _jurisdiction(request, request.query_params.get("jurisdiction_id"))

        def read() -> dict[str, Any]:
            with services(request).session() as session:
                return open311.service_definition(session, code)

        return render(fmt, "service_definition", await run_in_threadpool(read))

    return await _answer(fmt, make)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if len(text) > _FIELD_MAX:
        raise InvalidInput(f"{name} 过长 / {name} is longer than {_FIELD_MAX} characters", field=name)
    return text


def _coordinate(form: FormData, name: str) -> float | None:
    text = _field(form, name)
    return optional_number(text, name, f"{name} 须为数字 / {name} must be a number, got {text!r}")


async def _authenticate(
    conn: AsyncConnection[Any], settings: Settings, api_key: str, action: Action = Action.POST_COMPLAINT
) -> Actor:
    # On a connection to the primary (a revocation counts at the next post), without the ORM or a
    # thread hop: on the posting hot path, the connection the complaint is then written on.
    if not api_key:
        raise Forbidden("缺少 api_key / api_key is required to post a service request")
    try:
        actor = await tokens.authenticate_async(conn, api_key, settings)
    except Unauthorized as exc:
        raise Forbidden(_REVOKED) from exc
    # For an update the role is checked here and the complaint's units by the service.
    return require(actor, action) if action == Action.POST_COMPLAINT else require_role(actor, action)


_REVOKED = "api_key 无效或已吊销 / the api_key is unknown or revoked"


_MAX_FIELDS = 64
_MAX_FILE_PARTS = 5


def _urlencoded(body: bytes) -> FormData:
    # Starlette reads unescaped bytes of a urlencoded body as Latin-1, but `curl -d 'service_code=井盖破损'`
    # and many case systems send UTF-8 unescaped: read the body as UTF-8, then unescape (also UTF-8).
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            "表单须为 UTF-8 编码 / the form-encoded body must be UTF-8 (percent-encoded or not)"
        ) from exc
    try:
        # errors="strict": a percent-encoded GBK value would otherwise become U+FFFD and be stored so.
        pairs: list[tuple[str, str | UploadFile]] = list(
            parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS, errors="strict")
        )
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            "表单须为 UTF-8 编码 / the form-encoded body must be UTF-8 (percent-encoded or not)"
        ) from exc
    except ValueError as exc:
        raise InvalidInput(f"表单字段过多 / the form has more than {_MAX_FIELDS} fields") from exc
    return FormData(pairs)


async def _form(request: Request) -> FormData:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        return _urlencoded(await request.body())
    try:
        # A few file parts are read only to be refused by name (a client sending a photo as "media").
        form = await request.form(max_files=_MAX_FILE_PARTS, max_fields=_MAX_FIELDS)
    except HTTPException as exc:
        if exc.status_code == 413:
            raise  # the body cap
        raise InvalidInput(f"表单无法读取 / the form could not be read: {exc.detail}") from exc
    except Exception as exc:  # Starlette reports unreadable bodies in several exception types
        raise InvalidInput("表单无法读取 / the form-encoded body could not be read") from exc
    files = [name for name, value in form.multi_items() if not isinstance(value, str)]
    if files:
        await form.close()
        raise InvalidInput(
            f"此处不接收文件（{files[0]}）：照片请以 media_url 链接提交 / part {files[0]!r} is a file: "
            "Open311 requests take no files here (send a link to the photo as media_url)",
            field=files[0],
        )
    return form


@router.post("/requests.{fmt}", summary="Post a service request (a complaint), form-encoded")
async def post_request(request: Request, fmt: str) -> Response:
    """Record a complaint, resolve it on arrival, and answer its id and the responsible unit."""

    async def make() -> Response:
        form = await _form(request)
        api_key = _field(form, "api_key")
        rt, sc = runtime(request), scan_runtime(request)
        # One connection to the primary for the whole post: token, service code, resolution and the write.
        async with sc.write_pool.connection() as conn:
            actor = await _authenticate(conn, sc.settings, api_key)
            _jurisdiction(request, _field(form, "jurisdiction_id"))
            service_code = _field(form, "service_code")
            if not service_code:
                raise InvalidInput("缺少 service_code / service_code is required", field="service_code")
            reporter = {k: _field(form, k) for k in ("email", "phone", "first_name", "last_name")}
            for name, value in reporter.items():
                if len(value) > _CONTACT_MAX:
                    raise InvalidInput(
                        f"{name} 最多 {_CONTACT_MAX} 字 / {name} is longer than {_CONTACT_MAX} characters",
                        field=name,
                    )
            category = await sc.service_code(conn, service_code)
            lat, lon = _coordinate(form, "lat"), _coordinate(form, "long")
            asset_code = _field(form, f"attribute[{open311.ASSET_CODE_ATTRIBUTE}]")
            if (lat is None) != (lon is None):
                raise InvalidInput(
                    "lat 与 long 须同时提供 / lat and long must be given together", field="lat"
                )
            address = _field(form, "address_string") or None
            address_id = _field(form, "address_id") or None
            if lat is not None:
                address_id = None  # lat/long win over an address id (docs/open311.md)
            elif address_id is not None:
                place = await open311.locate_address(conn, sc.settings.area.county_code, address_id)
                lat, lon, address = place.lat, place.lon, place.name
            if lat is None and lon is None and not asset_code:
                raise InvalidInput(
                    "须提供 lat/long、address_id 或 attribute[asset_code] / a location (lat and long), "
                    "an address_id or attribute[asset_code] is required",
                    field="lat",
                )
            data = complaints.ComplaintIn(
                source="open311",
                description=_field(form, "description"),
                category=category,
                code=asset_code or None,
                x=lon,
                y=lat,
                crs="wgs84" if lat is not None else None,
                reporter={k: v for k, v in reporter.items() if v},
                address=address,
                address_id=address_id,
                media_url=_field(form, "media_url") or None,  # checked by the service; never fetched
                client_ip=request.client.host if request.client else None,
            )
            try:
                reference, resolved = await complaints.file_complaint(
                    conn,
                    conn,
                    rt.resolver,
                    rt.log,
                    data,
                    actor=actor.name,
                    settings=sc.settings.area,
                    hotspot_rules=sc.settings.hotspots,
                )
            except NotFound as exc:
                # A posted field naming nothing is a bad request (400), as the specification says;
                # 404 is for a resource asked for by its address (a request id, a service definition).
                if "code" not in exc.details:
                    raise
                raise InvalidInput(
                    f"attribute[asset_code]：智慧码 {exc.details['code']} 未登记 / "
                    f"attribute[asset_code]: code {exc.details['code']} is not registered",
                    field=f"attribute[{open311.ASSET_CODE_ATTRIBUTE}]",
                ) from exc
        unit = open311.agency_of(resolved.answer)
        notice = (
            f"已受理，责任单位：{unit} / received; responsible unit: {unit}" if unit else "已受理 / received"
        )
        body = [{"service_request_id": reference, "service_notice": notice, "account_id": None}]
        return render(fmt, "service_requests", body)

    return await _answer(fmt, make)


@router.get("/requests.{fmt}", summary="Service requests: by ids, service code, dates and status")
async def list_requests(request: Request, fmt: str) -> Response:
    """Complaints as GeoReport requests, newest first (the last 90 days unless dates are given)."""

    async def make() -> Response:
        params = request.query_params
        _jurisdiction(request, params.get("jurisdiction_id"))
        timezone = services(request).settings.area.timezone

        def many(name: str) -> list[str]:
            return [p.strip() for p in params.get(name, "").split(",") if p.strip()]

        def date(name: str) -> Any:
            text = params.get(name)
            return open311.parse_datetime(text, name, timezone) if text else None

        query = open311.RequestFilter(
            ids=many("service_request_id"),
            service_codes=many("service_code"),
            start=date("start_date"),
            end=date("end_date"),
            status=params.get("status") or None,
        )
        async with scan_runtime(request).write_pool.connection() as conn:
            items = await open311.list_requests(conn, query, timezone)
        return render(fmt, "service_requests", items)

    return await _answer(fmt, make)


@router.get("/requests/{name}", summary="One service request by its id (the complaint's reference)")
async def get_request(request: Request, name: str) -> Response:
    """One complaint as a GeoReport request, with the responsible unit as ``agency_responsible``."""
    reference, fmt = _split(name)

    async def make() -> Response:
        _jurisdiction(request, request.query_params.get("jurisdiction_id"))
        timezone = services(request).settings.area.timezone
        async with scan_runtime(request).write_pool.connection() as conn:
            item = await open311.get_request(conn, reference, timezone)
        return render(fmt, "service_requests", [item])

    return await _answer(fmt, make)


@router.get(
    "/servicerequestupdates.{fmt}",
    summary="Service request updates (FixMyStreet's extension): status changes",
)
async def list_updates(request: Request, fmt: str) -> Response:
    """Every status change of a complaint as an update, oldest first, between start_date and end_date."""

    async def make() -> Response:
        params = request.query_params
        _jurisdiction(request, params.get("jurisdiction_id"))
        timezone = services(request).settings.area.timezone

        def date(name: str) -> Any:
            text = params.get(name)
            return open311.parse_datetime(text, name, timezone) if text else None

        ids = [p.strip() for p in params.get("service_request_id", "").split(",") if p.strip()]
        async with scan_runtime(request).write_pool.connection() as conn:
            items = await open311.list_updates(
                conn, timezone, start=date("start_date"), end=date("end_date"), ids=ids
            )
        return render(fmt, "service_requests_updates", items)

    return await _answer(fmt, make)


@router.post(
    "/servicerequestupdates.{fmt}", summary="Post a service request update (FixMyStreet's extension)"
)
async def post_update(request: Request, fmt: str) -> Response:
    """Change a complaint's status from an update: its ``status`` (extended statuses) and ``description``.

    ``NOT_COUNCILS_RESPONSIBILITY`` is a return (退件) and needs a description; ``update_id`` (the
    client's id) makes a repeated post harmless: the update it names is answered again.
    """

    async def make() -> Response:
        form = await _form(request)
        api_key = _field(form, "api_key")
        _jurisdiction(request, _field(form, "jurisdiction_id"))
        reference = _field(form, "service_request_id")
        if not reference:
            raise InvalidInput(
                "缺少 service_request_id / service_request_id is required", field="service_request_id"
            )
        given = _field(form, "status")
        if not given:
            raise InvalidInput("缺少 status / status is required", field="status")
        status = open311.complaint_status_of(given)
        timezone = services(request).settings.area.timezone
        if stamp := _field(form, "updated_datetime"):
            open311.parse_datetime(stamp, "updated_datetime", timezone)  # checked; the registry's clock rules
        action = Action.CLOSE_COMPLAINT if status == "closed" else Action.ROUTE_COMPLAINT
        async with scan_runtime(request).write_pool.connection() as conn:
            actor = await _authenticate(conn, services(request).settings, api_key, action)
        update_ref = _field(form, "update_id") or None
        description = _field(form, "description")

        def change() -> dict[str, Any]:
            with services(request).session() as session:
                return complaint_status.change_status(
                    session,
                    reference,
                    status,
                    actor=actor,
                    reason=description or None,
                    update_ref=update_ref,
                )

        view = await run_in_threadpool(change)
        history = view["history"]
        update = next((h for h in history if update_ref and h["update_ref"] == update_ref), history[-1])
        return render(fmt, "service_request_updates", [{"update_id": update["update_id"]}])

    return await _answer(fmt, make)
