"""The page a QR label opens, ``GET /c/{code}``, and its report form ``POST /c/{code}/report`` (扫码报事).

Server-rendered HTML in Chinese (templates in ``api/pages/``), no external asset, usable with
JavaScript off: the form posts as a plain multipart form; the inline script only adds the phone's
position (and the distance to the registered position when the label is valid).

What is shown: everyone sees the class, the printed code, the state, the owner, maintainer and
supervisor with phones, and the label's verdict. Only a label whose signature verifies also gets the
registered position (for the distance check): a typed code without signature, or a failed or revoked
label, gets the passer-by view only. Staff read more through the JSON API with a token; staff signed
in on the map (its session cookie) also see the asset's recent complaints and their status here, in a
page marked private so no shared cache keeps it.

Abuse of the anonymous form: a per-address rate limit (:mod:`api.report_limit`) and a form token (the
code and the time the page was served, signed with a server key) that a report must carry back:
a post that did not come from a page this server served recently for this code is refused.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import math
import time
import zoneinfo
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.datastructures import QueryParams, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import SESSION_COOKIE, Services, cookie_header_actor
from api.errors import status_for
from api.params import optional_number
from api.report_limit import SlidingWindowLimiter
from api.routes.resolve import ResolveRuntime
from api.routes.resolve import runtime as resolve_runtime
from common.errors import CheckDigitMismatch, InvalidCode, InvalidInput, NotFound, SmartcodeError
from common.settings import Settings
from qr.signing import LabelKeys, LabelVerdict, keys_from_settings, verify
from registry import categories, complaints, open311
from registry.access import Action, Actor, authorize
from registry.codes import parse_code
from registry.labels import LabelStatus
from registry.resolution import resolution_connection_kwargs

T = TypeVar("T")
router = APIRouter(tags=["scan page"])
log = logging.getLogger("smartcode.scan")

PAGES = Path(__file__).resolve().parent.parent / "pages"
ACTOR = "scan-page"
# The report body: one photo plus a few short fields.
REPORT_MAX_BYTES = complaints.PHOTO_MAX_BYTES + 256 * 1024
_FIELD_MAX_BYTES = 16 * 1024

ROLES = (("owner", "权属单位"), ("maintainer", "养护单位"), ("supervisor", "主管部门"))
STAFF_COMPLAINTS = 10  # how many of an asset's complaints a signed-in member of staff sees on the page
COMPLAINT_STATUS_CLASS = {
    "received": "st-warn",
    "accepted": "st-warn",
    "returned": "st-bad",
    "closed": "st-ok",
}
STATE_CLASS = {"完好": "st-ok", "破损": "st-bad", "丢失": "st-bad", "占用": "st-warn"}
VERDICT_TEXT = {
    "valid": "标签有效",
    "failed": "标签未通过验证",
    "revoked": "标签已作废",
    "decommissioned": "已注销",
    "unsigned": "未验证标签",
}
VERDICT_HINT = {
    "valid": "此标签由登记单位签发，信息可信。",
    "failed": "标签可能被伪造或已损坏，请勿拨打标签上印刷的其他号码；以下信息来自登记系统。欢迎举报。",
    "revoked": "此标签已作废（已更换、被盗或为伪造），以下信息来自登记系统。欢迎举报。",
    "decommissioned": "该部件已注销，不再使用。如现场仍有此部件或标签，欢迎上报。",
    "unsigned": "未通过标签签名验证（手动输入的编码），仅显示公开信息。",
}


# How long the categories offered on the scan page and the Open311 service codes are trusted: they
# change a few times a year, and are asked on every report.
CATEGORY_TTL_S = 30.0


class ScanRuntime:
    """The scan page's templates, form key, rate limiter and write connections (to the primary)."""

    def __init__(self, settings: Settings, conninfo: str) -> None:
        self.settings = settings
        self.config = settings.scan
        self._keys: LabelKeys | None = None
        self._form_key = self.config.form_key.encode() if self.config.form_key else None
        self.limiter = SlidingWindowLimiter(self.config.report_limit, self.config.report_window_s)
        # Complaints are written on the primary: the resolve pool may be read-only or a replica. An
        # Open311 post resolves on this pool too, so it is sized and set up like the resolve pool
        # (generic plans for the lookups), only writable.
        self.write_pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max(2, settings.resolve.pool_size),
            open=False,
            kwargs=resolution_connection_kwargs(read_only=False),
        )
        self.templates = Environment(
            loader=FileSystemLoader(PAGES), autoescape=select_autoescape(["html"]), auto_reload=False
        )
        self._categories: dict[str, tuple[float, list[str]]] = {}
        self._service_codes: dict[str, tuple[float, str]] = {}
        self.revoked = RevokedLabels(self.config.revocation_check_s)

    async def open(self) -> None:
        """Open the write pool."""
        await self.write_pool.open(wait=True)

    async def close(self) -> None:
        """Close the write pool."""
        await self.write_pool.close()

    def render(
        self, name: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any
    ) -> HTMLResponse:
        """A page from ``api/pages``."""
        body = self.templates.get_template(name).render(**context)
        return HTMLResponse(body, status_code=status, headers=headers)

    @property
    def keys(self) -> LabelKeys:
        """The label signing keys (read once; a rotated key file is picked up at restart)."""
        if self._keys is None:
            self._keys = keys_from_settings(self.settings.labels)
        return self._keys

    @property
    def form_key(self) -> bytes:
        """The key of the form token: the setting, or one derived from the current label key."""
        if self._form_key is None:
            label_key = self.keys.keys[self.keys.current]
            self._form_key = hmac.new(label_key, b"smartcode-scan-form/1", hashlib.sha256).digest()
        return self._form_key

    def _mac(self, code: str, stamp: int) -> str:
        digest = hmac.new(self.form_key, f"report|{code}|{stamp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")

    def form_token(self, code: str, now: float | None = None) -> str:
        """The token a report form carries: when the page was served for this code, signed."""
        stamp = int(time.time() if now is None else now)
        return f"{stamp}.{self._mac(code, stamp)}"

    def check_form_token(self, code: str, token: str | None, now: float | None = None) -> None:
        """``InvalidInput`` unless ``token`` was issued by this server for ``code`` and is recent."""
        stamp_text, _, mac = (token or "").partition(".")
        current = time.time() if now is None else now
        if (
            not (stamp_text.isascii() and stamp_text.isdigit() and len(stamp_text) <= 12)
            or not hmac.compare_digest(mac, self._mac(code, int(stamp_text)))
            or not (-60 <= current - int(stamp_text) <= self.config.form_max_age_s)
        ):
            raise InvalidInput(
                "表单已失效，请重新打开部件页面后再提交 / the form expired: reload the page", field="t"
            )

    async def categories(self, conn: AsyncConnection[Any], class_code: str) -> list[str]:
        """Complaint categories offered for a class: those that concern it, then the scan page's own."""

        async def load() -> list[str]:
            names = await complaints.categories_for_class(conn, class_code)
            return [*names, *complaints.SCAN_CATEGORIES]

        return await _kept(self._categories, class_code, load)

    async def service_code(self, conn: AsyncConnection[Any], given: str) -> str:
        """The active category an Open311 ``service_code`` names (known names kept ``CATEGORY_TTL_S``)."""
        # Only names that exist are kept, by their folded spelling (unknown codes raise and are asked
        # every time), so the store is bounded by the categories; a deactivated one is refused after
        # at most the TTL.
        key = categories.fold(given)
        return await _kept(self._service_codes, key, lambda: open311.check_service_code(conn, key))


async def _kept(store: dict[str, tuple[float, T]], key: str, load: Callable[[], Awaitable[T]]) -> T:
    # The value kept under ``key`` while it is younger than CATEGORY_TTL_S, else a fresh one.
    now = time.monotonic()
    hit = store.get(key)
    if hit is None or hit[0] < now:
        hit = (now + CATEGORY_TTL_S, await load())
        store[key] = hit
    return hit[1]


class RevokedLabels:
    """The revoked label editions, kept in memory and re-read at most every ``ttl_s`` seconds.

    A revocation is final and rare, while every scan of a genuine label asks about it: one query per
    ``ttl_s`` instead of one per scan (measured: the lookup was a quarter of the page's time). The
    re-read takes only what was revoked since the last one (minus a margin for transactions that
    committed late). ``ttl_s`` 0 asks the database every time.
    """

    # A revocation committed up to this long after its transaction began is still picked up.
    _MARGIN = dt.timedelta(minutes=10)

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._revoked: set[tuple[str, int]] = set()
        self._next = 0.0
        self._since: dt.datetime | None = None

    async def is_revoked(self, conn: AsyncConnection[Any], code: str, edition: int) -> bool:
        """Whether this edition of the code's label was revoked (as of at most ``ttl_s`` ago)."""
        if self.ttl_s <= 0:
            cur = await conn.execute(
                "SELECT 1 FROM label_issues WHERE code = %s AND edition = %s AND revoked_at IS NOT NULL",
                (code, edition),
                prepare=True,
            )
            return await cur.fetchone() is not None
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.ttl_s  # before the await: concurrent scans do not all re-read
            try:
                await self._refresh(conn)
            except Exception:
                self._next = 0.0
                raise
        return (code, edition) in self._revoked

    async def _refresh(self, conn: AsyncConnection[Any]) -> None:
        since = self._since - self._MARGIN if self._since is not None else None
        cur = await conn.execute(
            "SELECT now(), coalesce(array_agg(code), '{}'), coalesce(array_agg(edition), '{}') "
            "FROM label_issues WHERE revoked_at IS NOT NULL "
            "AND (%(since)s::timestamptz IS NULL OR revoked_at >= %(since)s::timestamptz)",
            {"since": since},
            prepare=True,
        )
        row = await cur.fetchone()
        assert row is not None
        self._revoked.update(zip(row[1], row[2], strict=True))
        self._since = row[0]


def scan_runtime(request: Request) -> ScanRuntime:
    """The app's scan-page runtime."""
    return request.app.state.scan


async def label_verdict(
    conn: AsyncConnection[Any],
    keys: LabelKeys,
    revoked: RevokedLabels,
    code: str,
    signature: str | None,
    in_use: bool,
) -> str:
    """The label's verdict: valid, failed, revoked, decommissioned or unsigned.

    The same decision, in the same order, as ``registry.labels.label_status`` (a test holds them
    equal), but on the page's own async connection and with the revocations cached: going through a
    thread and an ORM session for it tripled the page's p99 under load (docs/scan.md).
    """
    verdict = verify(code, signature, keys)
    if verdict.status is LabelVerdict.FAILED:
        return LabelStatus.FAILED.value
    if not in_use:
        return LabelStatus.DECOMMISSIONED.value
    if verdict.status is LabelVerdict.MISSING:
        return LabelStatus.UNSIGNED.value
    assert verdict.edition is not None
    if await revoked.is_revoked(conn, code, verdict.edition):
        return LabelStatus.REVOKED.value
    return LabelStatus.VALID.value


def _parties(source: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "title": title, "unit": source.get(key)} for key, title in ROLES]


def _error_page(sc: ScanRuntime, exc: SmartcodeError, *, back: str | None = None) -> HTMLResponse:
    status = status_for(exc)
    suggestions: list[str] = []
    if isinstance(exc, NotFound):
        title, message = "未找到该部件", "该编码格式正确，但尚未登记。请核对标签上的编码。"
    elif isinstance(exc, CheckDigitMismatch):
        title, message = "编码校验失败", "编码的校验位不正确，可能输错了一位或两位顺序颠倒。"
        suggestions = list(exc.details.get("did_you_mean", []))
    elif isinstance(exc, InvalidCode):
        title, message = "编码格式有误", "智慧码应为 17 位数字，例如 440310-0118-000123-4。"
    else:
        title, message = "提交未成功", exc.message
    return sc.render(
        "error.html",
        status=status,
        title=title,
        message=message,
        suggestions=suggestions,
        back=back,
        status_code=status,
    )


async def staff_actor(svc: Services, cookie_header: str | None) -> Actor | None:
    """The member of staff signed in on the map (its session cookie) who opened a scan page; else None.

    Passers-by send no such cookie and cost nothing: the database is asked only when the cookie's name
    is in the header.
    """
    if not cookie_header or SESSION_COOKIE not in cookie_header:
        return None
    try:
        actor = await run_in_threadpool(cookie_header_actor, svc, cookie_header)
    except SmartcodeError as exc:  # the page still serves its public part
        log.warning("scan page: session not checked: %s", exc.message)
        return None
    return actor if actor is not None and authorize(actor, Action.READ_FULL) else None


async def _staff_complaints(sc: ScanRuntime, code: str) -> list[dict[str, Any]]:
    zone = zoneinfo.ZoneInfo(sc.settings.area.timezone)
    async with sc.write_pool.connection() as conn:
        items = await complaints.asset_complaints(conn, code, limit=STAFF_COMPLAINTS)
    return [
        {
            "reference": c["reference"],
            "received": dt.datetime.fromisoformat(c["received_at"])
            .astimezone(zone)
            .strftime("%Y-%m-%d %H:%M"),
            "category": c["category"],
            "description": c["description"],
            "status": c["status"],
            "status_label": c["status_label"],
            "status_class": COMPLAINT_STATUS_CLASS.get(c["status"], "st-off"),
            "status_reason": c["status_reason"],
        }
        for c in items
    ]


async def render_page(
    rt: ResolveRuntime, sc: ScanRuntime, code: str, signature: str | None, staff: Actor | None = None
) -> HTMLResponse:
    """The scan page for ``code`` as a label (``signature``) or a typed code opens it; error pages too.

    For ``staff`` (signed in on the map) the page adds the asset's recent complaints with their status.
    """

    async def look_up(conn: AsyncConnection[Any]) -> tuple[dict[str, Any], list[str], str]:
        answer, _ = await rt.resolver.resolve_code(conn, code, log=rt.log, actor="anonymous", channel="scan")
        asset = answer["asset"]
        categories = await sc.categories(conn, asset["class"]["code"])
        verdict = await label_verdict(
            conn, sc.keys, sc.revoked, asset["code"], signature, bool(asset["in_use"])
        )
        return answer, categories, verdict

    try:
        # A lookup: on the replica while it is fit (api/replicas.py); the report form writes on the primary.
        answer, categories, verdict = await rt.read(look_up)
        asset = answer["asset"]
        recent = await _staff_complaints(sc, asset["code"]) if staff is not None else None
    except SmartcodeError as exc:
        return _error_page(sc, exc)
    state = asset["state"] if asset["in_use"] else "已注销"
    return sc.render(
        "scan.html",
        # What staff see must never be kept by a shared cache and served to the next passer-by.
        headers={"Cache-Control": "private, no-store"} if staff is not None else None,
        staff_complaints=recent,
        asset={
            "code": asset["code"],
            "code_display": asset["code_display"],
            "class_name": asset["class"]["name"],
        },
        state_label=state,
        state_class=STATE_CLASS.get(state, "st-off") if asset["in_use"] else "st-off",
        verdict=verdict,
        verdict_text=VERDICT_TEXT[verdict],
        verdict_hint=VERDICT_HINT.get(verdict),
        # The registered position only for a genuine label: a typed code must not map the network.
        position=asset["position"] if verdict == "valid" else None,
        far_m=sc.config.far_m,
        parties=_parties(answer),
        categories=categories,
        preselect=complaints.LABEL_CATEGORY if verdict in ("failed", "revoked") else None,
        position_category=complaints.POSITION_CATEGORY,
        form_token=sc.form_token(asset["code"]),
        signature=signature,
        photo_mb=complaints.PHOTO_MAX_BYTES // (1024 * 1024),
    )


@router.get("/c/{code}", response_class=HTMLResponse, summary="The page a QR label opens (HTML, public)")
async def scan_page(request: Request, code: str) -> HTMLResponse:
    """What this component is, who is responsible, whether the label is genuine, and a report form.

    Normally answered by :class:`ScanFastPath`; this route is the same page for the OpenAPI document
    and any caller that reaches it another way.
    """
    signature = request.query_params.get("s") or None
    staff = await staff_actor(request.app.state.services, request.headers.get("cookie"))
    return await render_page(resolve_runtime(request), scan_runtime(request), code, signature, staff)


class ScanFastPath:
    """Serves ``GET /c/{code}`` straight from ASGI, before FastAPI's routing (as ``ResolveFastPath``).

    Measured: routing and the request machinery cost the page about half its throughput against
    the JSON resolve it is built on (docs/scan.md).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer scan pages; pass everything else on."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        code = path[3:] if path.startswith("/c/") and scope["method"] == "GET" else ""
        if not code or "/" in code:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        signature = QueryParams(scope["query_string"]).get("s") or None
        cookie = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"cookie"), None)
        staff = await staff_actor(state.services, cookie)
        response = await render_page(state.resolve, state.scan, code, signature, staff)
        await response(scope, receive, send)


def _float(form_value: Any, name: str) -> float | None:
    text = form_value.strip() if isinstance(form_value, str) else ""
    return optional_number(text, name, f"位置数据无效 / {name} is not a number")


class _TooLarge(Exception):
    """A photo over the cap: answered 413, like a body over the cap."""


async def _photo(value: Any) -> list[complaints.Photo]:
    if not isinstance(value, UploadFile):
        return []
    data = await value.read(complaints.PHOTO_MAX_BYTES + 1)
    if not data and not value.filename:
        return []  # the file input left empty
    if len(data) > complaints.PHOTO_MAX_BYTES:
        raise _TooLarge
    return [complaints.check_photo(data)]


def _too_large(sc: ScanRuntime, back: str) -> HTMLResponse:
    return sc.render(
        "error.html",
        status=413,
        title="提交内容过大",
        message=f"照片不能超过 {complaints.PHOTO_MAX_BYTES // (1024 * 1024)} MB，请压缩后重试。",
        back=back,
        status_code=413,
    )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


@router.post(
    "/c/{code}/report",
    response_class=HTMLResponse,
    summary="Report a problem at this component",
    responses={429: {"description": "too many reports from this address (a page saying when to retry)"}},
)
async def report(request: Request, code: str) -> HTMLResponse:
    """Record a complaint about the scanned asset and answer with its reference and who handles it."""
    rt: ResolveRuntime = resolve_runtime(request)
    sc = scan_runtime(request)
    back = f"/c/{code}"
    client = request.client.host if request.client else "unknown"
    if not sc.limiter.allow(client):
        wait = sc.limiter.retry_after(client)
        return sc.render(
            "error.html",
            status=429,
            headers={"Retry-After": str(wait)},
            title="提交过于频繁",
            message=f"同一网络提交次数过多，请约 {max(1, math.ceil(wait / 60))} 分钟后再试。",
            back=back,
            status_code=429,
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > REPORT_MAX_BYTES:
        return _too_large(sc, back)
    try:
        plain = str(parse_code(code))
        back = f"/c/{plain}"
        try:
            form = await request.form(max_files=1, max_fields=16, max_part_size=_FIELD_MAX_BYTES)
        except StarletteHTTPException as exc:
            raise InvalidInput(f"表单无法读取 / the form could not be read: {exc.detail}") from exc
        signature = _text(form.get("s")) or None
        if signature:
            back += f"?s={signature}"
        sc.check_form_token(plain, _text(form.get("t")))
        category = _text(form.get("category"))
        lat, lon = _float(form.get("lat"), "lat"), _float(form.get("lon"), "lon")
        contact = _text(form.get("contact"))[:40]
        photos = await _photo(form.get("photo"))
        async with rt.pool.connection() as read:
            class_code, in_use = await _asset_facts(read, plain)
            if category not in await sc.categories(read, class_code):
                raise InvalidInput("请选择问题类别 / choose a category offered on the page", field="category")
            data = complaints.ComplaintIn(
                source="scan",
                description=_text(form.get("description")),
                category=category,
                code=plain,
                x=lon,
                y=lat,
                crs="wgs84",
                accuracy_m=_float(form.get("accuracy"), "accuracy"),
                reporter={"phone": contact} if contact else {},
                photos=photos,
                label_status=await label_verdict(read, sc.keys, sc.revoked, plain, signature, in_use),
                client_ip=client,
            )
            async with sc.write_pool.connection() as write:
                view = await complaints.create_complaint(
                    read,
                    write,
                    rt.resolver,
                    rt.log,
                    data,
                    actor=ACTOR,
                    settings=sc.settings.area,
                    hotspot_rules=sc.settings.hotspots,
                )
    except SmartcodeError as exc:
        return _error_page(sc, exc, back=back)
    except _TooLarge:
        return _too_large(sc, back)
    far = view["distance_m"] is not None and view["distance_m"] > sc.config.far_m
    return sc.render(
        "done.html", complaint=view, parties=_parties(view["resolution"]), far=far, signature=signature
    )


async def _asset_facts(conn: AsyncConnection[Any], code: str) -> tuple[str, bool]:
    cur = await conn.execute("SELECT class_code, in_use FROM assets WHERE code = %s", (code,), prepare=True)
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"code {code} is well-formed but not registered", code=code)
    return str(row[0]), bool(row[1])
