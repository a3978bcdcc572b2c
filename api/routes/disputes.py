"""``/api/v1/disputes``: a unit objects to its responsibility (异议); administrators review and decide.

Opening takes either a JSON body (no evidence) or ``multipart/form-data`` with the same fields as
text parts and the evidence files in the parts ``evidence_1`` … ``evidence_N``
(``SMARTCODE_DISPUTES_EVIDENCE_MAX_FILES``). ``POST /{id}/evidence`` adds files the same way while
the dispute waits for its decision. The token is checked, and a declared size over the cap
refused, before any of the body is read. The service is :mod:`registry.disputes`; docs/disputes.md.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import tempfile
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.deps import require_actor, services
from api.params import BIGINT_MAX, RowId
from api.responses import OrjsonResponse
from api.uploads import MIB, check_declared_size, missing, read_capped_body, receive_form
from common.errors import InvalidInput
from common.settings import DisputeSettings
from registry import disputes as dispute_service
from registry.access import Action, Actor

router = APIRouter(prefix="/disputes", tags=["disputes"])


class DisputeOpen(BaseModel):
    """What a unit objects to, and why."""

    model_config = ConfigDict(extra="forbid")

    subject_kind: Literal["asset", "rule", "complaint"]
    subject_id: str = Field(
        min_length=1, max_length=64, description="asset code, rule id or complaint reference"
    )
    reason: str = Field(min_length=1, max_length=dispute_service.REASON_MAX)
    unit_id: int | None = Field(
        default=None, ge=1, le=BIGINT_MAX, description="the objecting unit (administrators only)"
    )
    role: Literal["owner", "maintainer", "unit"] | None = None


class Move(BaseModel):
    """A state change: the version read, and an optional note."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1)
    note: str | None = Field(default=None, max_length=dispute_service.REASON_MAX)


class DecisionIn(BaseModel):
    """The ruling: upheld (with the change) or rejected, always with the reason."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1)
    outcome: Literal["upheld", "rejected"]
    reason: str = Field(min_length=1, max_length=dispute_service.REASON_MAX)
    new_unit_id: int | None = Field(
        default=None,
        ge=1,
        le=BIGINT_MAX,
        description="asset: who takes the disputed roles; rule: the new unit (none: close it)",
    )
    effective_at: dt.datetime | None = Field(default=None, description="from when (default: now)")


# Evidence parts read from a form; beyond SMARTCODE_DISPUTES_EVIDENCE_MAX_FILES the service refuses
# them by name rather than the form dropping them unsaid.
_EVIDENCE_PARTS = 20
# The forms list the first five evidence parts (the default cap); the rest follow the same pattern.
_MORE_PARTS = (
    "证据文件放在 evidence_1 … evidence_N 中，N 最多为 SMARTCODE_DISPUTES_EVIDENCE_MAX_FILES（默认 5，最多 "
    f"{_EVIDENCE_PARTS}）/ evidence files go in the parts evidence_1 … evidence_N, N up to "
    f"SMARTCODE_DISPUTES_EVIDENCE_MAX_FILES (default 5, at most {_EVIDENCE_PARTS})"
)

_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": _MORE_PARTS,
    "required": ["subject_kind", "subject_id", "reason"],
    "properties": {
        "subject_kind": {"type": "string", "enum": list(dispute_service.SUBJECT_KINDS)},
        "subject_id": {"type": "string"},
        "reason": {"type": "string"},
        "unit_id": {"type": "integer"},
        "role": {"type": "string", "enum": ["owner", "maintainer", "unit"]},
        **{f"evidence_{n}": {"type": "string", "format": "binary"} for n in range(1, 6)},
    },
}


def _evidence_fields(count: int) -> dict[str, str | None]:
    return {f"evidence_{n}": f"evidence-{n}" for n in range(1, count + 1)}


def _authenticate(request: Request, action: Action = Action.OPEN_DISPUTE) -> Actor:
    with services(request).session() as session:
        return require_actor(request, session, action)


async def _receive_evidence(
    request: Request, config: DisputeSettings
) -> tuple[list[dispute_service.Evidence], dict[str, str | None]]:
    """The evidence files of a multipart form, in part order, and its text fields (empty: None)."""
    limit = config.evidence_max_files * config.evidence_max_mib * MIB + MIB
    check_declared_size(request, limit)
    evidence: list[dispute_service.Evidence] = []
    with tempfile.TemporaryDirectory(prefix="smartcode-dispute-") as folder:
        form = await receive_form(
            request, pathlib.Path(folder), limit=limit, files=_evidence_fields(_EVIDENCE_PARTS)
        )
        for name in sorted(form.files, key=lambda n: int(n.rsplit("_", 1)[1])):
            received = form.files[name]
            evidence.append(dispute_service.Evidence(received.filename, received.path.read_bytes()))
    return evidence, {name: form.text(name) for name in form.fields}


async def _json_body(request: Request, limit: int) -> Any:
    body = await read_capped_body(request, limit)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("the body is not valid JSON") from None


def _parse_open(payload: Any) -> DisputeOpen:
    try:
        return DisputeOpen.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


@router.post(
    "",
    status_code=201,
    summary="Object to an asset, rule or complaint resolution (a named unit, or an administrator for it)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": DisputeOpen.model_json_schema()},
                "multipart/form-data": {"schema": _FORM_SCHEMA},
            },
        }
    },
    responses={413: {"description": "the body (evidence) is larger than allowed"}},
)
async def open_dispute(request: Request) -> OrjsonResponse:
    """Open a dispute; its view, with the review's last day (``due_on``)."""
    actor = await run_in_threadpool(_authenticate, request)
    svc = services(request)
    config = svc.settings.disputes
    evidence: list[dispute_service.Evidence] = []
    kind, _, _ = request.headers.get("content-type", "").partition(";")
    if kind.strip().lower() == "multipart/form-data":
        evidence, fields = await _receive_evidence(request, config)
        for required in ("subject_kind", "subject_id", "reason"):
            if fields.get(required) is None:
                raise missing(required)
        unit_text = fields.get("unit_id")
        if unit_text is not None and not (unit_text.strip().isascii() and unit_text.strip().isdigit()):
            raise InvalidInput(f"unit_id {unit_text!r:.40} is not a unit id", field="unit_id")
        data = _parse_open(
            {
                "subject_kind": fields.get("subject_kind"),
                "subject_id": fields.get("subject_id"),
                "reason": fields.get("reason"),
                "unit_id": int(unit_text.strip()[:20]) if unit_text else None,
                "role": fields.get("role"),
            }
        )
    else:
        data = _parse_open(await _json_body(request, svc.settings.api.max_body_kb * 1024))

    def write() -> dict[str, Any]:
        with svc.session() as session:
            return dispute_service.open_dispute(
                session,
                actor,
                subject_kind=data.subject_kind,
                subject_id=data.subject_id,
                reason=data.reason,
                evidence=evidence,
                unit_id=data.unit_id,
                role=data.role,
                settings=svc.settings,
            )

    view = await run_in_threadpool(write)
    url = f"{request.url.path.rstrip('/')}/{view['id']}"
    return OrjsonResponse(_with_urls(view, url), status_code=201, headers={"Location": url})


def dispute_url(request: Request, dispute_id: int | None) -> str | None:
    """The path of a dispute's own view (``GET /api/v1/disputes/{id}``), or None for no dispute."""
    if dispute_id is None:
        return None
    return str(request.app.url_path_for("get_dispute", dispute_id=str(dispute_id)))


def _with_urls(view: dict[str, Any], base: str) -> dict[str, Any]:
    for item in view.get("evidence", []):
        item["url"] = f"{base}/evidence/{item['seq']}"
    return view


StateQ = Annotated[
    Literal["open", "under_review", "upheld", "rejected", "withdrawn"] | None, Query(description="state")
]
UnitQ = Annotated[int | None, Query(alias="unit", ge=1, le=BIGINT_MAX, description="the objecting unit's id")]
Seq = Annotated[int, Path(ge=1, le=32767, description="the evidence file's number")]
ClassQ = Annotated[str | None, Query(alias="class", description="component class code, e.g. 0118")]
ZoneQ = Annotated[str | None, Query(description="zone name (the smallest zone of the subject)")]
KindQ = Annotated[Literal["asset", "rule", "complaint"] | None, Query(description="subject kind")]
FromQ = Annotated[dt.datetime | None, Query(description="opened at or after (with a time zone)")]
ToQ = Annotated[dt.datetime | None, Query(description="opened before (with a time zone)")]
OverdueQ = Annotated[bool | None, Query(description="true: only overdue; false: only not overdue")]


def _filter(
    state: StateQ = None,
    unit: UnitQ = None,
    class_: ClassQ = None,
    zone: ZoneQ = None,
    subject_kind: KindQ = None,
    opened_from: FromQ = None,
    opened_to: ToQ = None,
    overdue: OverdueQ = None,
) -> dispute_service.DisputeFilter:
    """The ledger's filters from the query string (shared by the list, the export and the analysis)."""
    return dispute_service.DisputeFilter(
        state=state,
        unit_id=unit,
        class_code=class_,
        zone=zone,
        subject_kind=subject_kind,
        opened_from=opened_from,
        opened_to=opened_to,
        overdue=overdue,
    )


FilterQ = Annotated[dispute_service.DisputeFilter, Depends(_filter)]


@router.get("", summary="The dispute ledger (异议台账), newest first (token)")
def list_disputes(
    request: Request,
    flt: FilterQ,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Disputes matching every filter given, one page of them, with the total."""
    svc = services(request)
    with svc.session() as session:
        require_actor(request, session)
        items, total = dispute_service.list_disputes(
            session, flt, limit=limit, offset=offset, settings=svc.settings
        )
    return {"total": total, "limit": limit, "offset": offset, "items": items}


@router.get(
    "/export",
    summary="Export the dispute ledger (异议台账) as CSV or XLSX, Chinese headers, local times (token)",
    response_class=Response,
    responses={200: {"content": {media: {} for media in dispute_service.MEDIA_TYPES.values()}}},
)
def export_disputes(
    request: Request,
    flt: FilterQ,
    format: Annotated[Literal["csv", "xlsx"], Query(description="csv or xlsx")] = "csv",
) -> Response:
    """The matching disputes, oldest first, one row each."""
    svc = services(request)
    with svc.session() as session:
        require_actor(request, session)
        body = dispute_service.export_ledger(session, flt, format, settings=svc.settings)
    return Response(
        body,
        media_type=dispute_service.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="disputes.{format}"'},
    )


@router.get("/stats", summary="Disputes by class, unit, zone and outcome: counts, upheld rate, median days")
def dispute_stats(
    request: Request,
    flt: FilterQ,
) -> dict[str, Any]:
    """The analysis of similar cases over the matching disputes."""
    svc = services(request)
    with svc.session() as session:
        require_actor(request, session)
        return dispute_service.stats(session, flt, settings=svc.settings)


@router.get("/{dispute_id}", summary="One dispute with its history and evidence list (token)")
def get_dispute(request: Request, dispute_id: RowId) -> dict[str, Any]:
    """Who objected to what and why, each state with who, when and why, the evidence files."""
    svc = services(request)
    with svc.session() as session:
        require_actor(request, session)
        view = dispute_service.get_dispute(session, dispute_id, settings=svc.settings)
    return _with_urls(view, request.url.path.rstrip("/"))


@router.get(
    "/{dispute_id}/evidence/{seq}",
    summary="One evidence file (token)",
    response_class=Response,
    responses={
        200: {"content": {t: {} for t in ("image/jpeg", "image/png", "image/webp", "application/pdf")}}
    },
)
def get_evidence(request: Request, dispute_id: RowId, seq: Seq) -> Response:
    """The file as it was sent, with its type judged from its bytes."""
    with services(request).session() as session:
        require_actor(request, session)
        data, content_type, _ = dispute_service.get_evidence(session, dispute_id, seq)
    return Response(
        data,
        media_type=content_type,
        headers={
            "Content-Disposition": f'attachment; filename="dispute-{dispute_id}-{seq}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


_ADD_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": _MORE_PARTS,
    "required": ["version", "evidence_1"],
    "properties": {
        "version": {"type": "integer", "minimum": 1, "description": "the dispute's version you read"},
        "note": {"type": "string", "description": "what the files are (recorded in the history)"},
        **{f"evidence_{n}": {"type": "string", "format": "binary"} for n in range(1, 6)},
    },
}
_VERSION_MAX = 2**31 - 1


def _form_version(value: str | None) -> int:
    """The ``version`` text part as a number, or the error naming it."""
    if value is None:
        raise missing("version")
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 10 and 1 <= int(digits) <= _VERSION_MAX):
        raise InvalidInput(
            f"version 须为读到的异议版本号（正整数） / version must be the dispute's version you read (a "
            f"positive whole number), not {value[:40]!r}",
            field="version",
        )
    return int(digits)


@router.post(
    "/{dispute_id}/evidence",
    summary="Add evidence files to a dispute still open or under review (the objecting unit, admin)",
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _ADD_FORM_SCHEMA}}}
    },
    responses={413: {"description": "the body (evidence) is larger than allowed"}},
)
async def add_evidence(request: Request, dispute_id: RowId) -> OrjsonResponse:
    """补充证据: the files in ``evidence_1`` … ``evidence_N``, the ``version`` read, an optional ``note``.

    Checked as at opening (type by the bytes, size, the per-dispute cap counting the files already
    attached); the dispute's version moves by one and its history records who added what, when.
    """
    actor = await run_in_threadpool(_authenticate, request, Action.ADD_DISPUTE_EVIDENCE)
    svc = services(request)
    kind, _, _ = request.headers.get("content-type", "").partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise InvalidInput(
            "补充证据须以 multipart/form-data 上传 / send the evidence as multipart/form-data: the files in "
            "evidence_1 … evidence_N, the version you read in version"
        )
    evidence, fields = await _receive_evidence(request, svc.settings.disputes)
    version = _form_version(fields.get("version"))
    note = fields.get("note")

    def write() -> dict[str, Any]:
        with svc.session() as session:
            return dispute_service.add_evidence(
                session, actor, dispute_id, evidence, version=version, note=note, settings=svc.settings
            )

    view = await run_in_threadpool(write)
    return OrjsonResponse(_with_urls(view, request.url.path.rsplit("/", 1)[0]))


@router.post("/{dispute_id}/review", summary="Take a dispute up for review (administrators)")
def review(request: Request, dispute_id: RowId, body: Move) -> dict[str, Any]:
    """open -> under_review."""
    svc = services(request)
    with svc.session() as session:
        actor = require_actor(request, session, Action.REVIEW_DISPUTE)
        view = dispute_service.start_review(
            session, actor, dispute_id, version=body.version, note=body.note, settings=svc.settings
        )
    return _with_urls(view, f"{request.url.path.rsplit('/', 1)[0]}")


@router.post("/{dispute_id}/decision", summary="Uphold (correcting the registry) or reject (administrators)")
def decision(request: Request, dispute_id: RowId, body: DecisionIn) -> dict[str, Any]:
    """under_review -> upheld / rejected; upheld hands the roles over, or closes or replaces the rule."""
    svc = services(request)
    ruling = dispute_service.Decision(
        outcome=body.outcome, reason=body.reason, new_unit_id=body.new_unit_id, effective_at=body.effective_at
    )
    with svc.session() as session:
        actor = require_actor(request, session, Action.REVIEW_DISPUTE)
        view = dispute_service.decide(
            session, actor, dispute_id, ruling, version=body.version, settings=svc.settings
        )
    return _with_urls(view, f"{request.url.path.rsplit('/', 1)[0]}")


@router.post("/{dispute_id}/withdraw", summary="Withdraw a dispute before its decision (the objecting unit)")
def withdraw(request: Request, dispute_id: RowId, body: Move) -> dict[str, Any]:
    """open / under_review -> withdrawn."""
    svc = services(request)
    with svc.session() as session:
        actor = require_actor(request, session, Action.WITHDRAW_DISPUTE)
        view = dispute_service.withdraw(
            session, actor, dispute_id, version=body.version, reason=body.note, settings=svc.settings
        )
    return _with_urls(view, f"{request.url.path.rsplit('/', 1)[0]}")
