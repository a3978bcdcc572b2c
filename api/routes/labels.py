"""``/api/v1/labels``: print QR labels for a token, revoke one, read an asset's label history."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import require_actor, services
from common.errors import InvalidInput
from qr.sheets import Layout, page_documents, write_pdf
from qr.signing import keys_from_settings
from registry.labels import (
    LabelSelection,
    issue_labels,
    label_contents,
    label_history,
    revoke_label,
    select_assets,
)

router = APIRouter(prefix="/labels", tags=["labels"])

_MEDIA = {"pdf": "application/pdf", "svg": "image/svg+xml", "png": "image/png"}
_MAX_CODES = 20_000


class LabelPrint(BaseModel):
    """Which assets to label and how to lay the labels out."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    zone: str | None = Field(default=None, max_length=200, description="zone name (current boundary)")
    zone_level: str | None = Field(default=None, max_length=16)
    classes: list[Annotated[str, Field(max_length=4)]] = Field(default_factory=list, max_length=200)
    unit: int | None = Field(default=None, description="unit id as owner, maintainer or supervisor")
    batch: int | None = Field(default=None, description="import batch id")
    codes: list[Annotated[str, Field(max_length=80)]] = Field(default_factory=list, max_length=_MAX_CODES)
    format: Literal["pdf", "svg", "png"] = "pdf"
    single: bool = Field(default=False, description="one label a page (label printer) instead of A4 sheets")
    columns: int = Field(default=3, ge=1, le=20)
    rows: int = Field(default=8, ge=1, le=40)
    label_width_mm: float | None = Field(default=None, gt=0, le=297)
    label_height_mm: float | None = Field(default=None, gt=0, le=297)
    dpi: int = Field(default=300, ge=72, le=1200)


class LabelRevoke(BaseModel):
    """Why a label is withdrawn."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: Literal["replaced", "stolen", "counterfeit", "damaged", "other"]
    reason: str = Field(min_length=2, max_length=2000)
    edition: int | None = Field(default=None, ge=1)


def _layout(body: LabelPrint) -> Layout:
    given = (body.label_width_mm, body.label_height_mm)
    if (given[0] is None) != (given[1] is None):
        raise InvalidInput("give both label_width_mm and label_height_mm, or neither", field="label_width_mm")
    size = (given[0], given[1]) if given[0] is not None and given[1] is not None else None
    if body.single:
        return Layout.single(*(size or (50.0, 30.0)))
    return Layout.sheet(body.columns, body.rows, size)


@router.post(
    "",
    summary="Print the labels of selected assets as PDF, SVG or PNG (a unit's token: its own assets)",
    response_class=Response,
    responses={200: {"content": {media: {} for media in _MEDIA.values()}}},
)
def print_labels(request: Request, body: LabelPrint) -> Response:
    """The labels as a file; reprinting gives the same URLs; decommissioned assets are refused."""
    svc = services(request)
    layout = _layout(body)
    selection = LabelSelection(
        zone=body.zone,
        zone_level=body.zone_level,
        class_codes=tuple(body.classes),
        unit_id=body.unit,
        batch_id=body.batch,
        codes=tuple(body.codes),
    )
    keys = keys_from_settings(svc.settings.labels)
    with svc.session() as session:
        actor = require_actor(request, session)
        assets = select_assets(session, selection, actor)
        if body.format != "pdf" and len(assets) > layout.per_page:
            raise InvalidInput(
                f"{len(assets)} labels take more than one page: ask for PDF, or at most "
                f"{layout.per_page} labels as {body.format.upper()}",
                field="format",
            )
        issued = issue_labels(session, assets, actor, keys=keys, base_url=svc.settings.labels.public_base_url)
    contents = label_contents(issued)
    if body.format == "pdf":
        out = io.BytesIO()
        write_pdf(contents, layout, out)
        data = out.getvalue()
    else:
        data = next(page_documents(contents, layout, body.format, dpi=body.dpi))
    headers = {
        "Content-Disposition": f'attachment; filename="labels.{body.format}"',
        "X-Labels": str(len(issued)),
        "X-Labels-New": str(sum(1 for label in issued if label.new)),
    }
    return Response(content=data, media_type=_MEDIA[body.format], headers=headers)


@router.get("/{code}", summary="Every edition of an asset's label (issued, printed, revoked)")
def history(request: Request, code: str) -> dict[str, Any]:
    """The asset's labels, oldest first; needs a token."""
    with services(request).session() as session:
        require_actor(request, session)
        return {"code": code, "editions": label_history(session, code)}


@router.post("/{code}/revoke", summary="Revoke an asset's label (replaced, stolen, counterfeit, damaged)")
def revoke(request: Request, code: str, body: LabelRevoke) -> dict[str, Any]:
    """Withdraw the live label (or a given edition); the owner or maintainer unit, or an administrator."""
    with services(request).session() as session:
        actor = require_actor(request, session)
        return revoke_label(session, code, actor, kind=body.kind, reason=body.reason, edition=body.edition)
