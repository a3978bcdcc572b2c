"""``/api/v1/complaints/{reference}`` and ``/api/v1/assets/{code}/complaints``: complaints for staff (token).

The reporter's contact is shown to administrators and to the units responsible for the asset
(owner, maintainer, supervisor); other token holders see the complaint without it.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import require_actor, services
from api.routes.scan import scan_runtime
from common.errors import NotFound
from registry import complaints
from registry.db import Actor

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
    return Response(orjson.dumps(view), media_type="application/json")
