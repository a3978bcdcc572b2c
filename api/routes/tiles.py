"""``/tiles``: vector tiles of assets and zones for the map, and their TileJSON (docs/tiles.md).

Served beside ``/api/v1`` rather than under it: map clients address tiles by a URL template, and the
TileJSON hands them the template. Tiles need a token (infrastructure positions are not public); the
TileJSON describes layers only and is public.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from api.deps import require_actor, services
from api.replicas import PrimaryNeeded, on_replica
from registry import tiles

router = APIRouter(prefix="/tiles", tags=["tiles"])

MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"


@router.get("/tiles.json", summary="TileJSON 3.0.0 of the vector tiles")
def tilejson(request: Request) -> dict[str, Any]:
    """Layers, fields, zooms and the URL template of the tiles."""
    svc = services(request)
    url = f"{str(request.base_url).rstrip('/')}/tiles/{{z}}/{{x}}/{{y}}.mvt"
    return tiles.tilejson(url, svc.settings.tiles, svc.area.bounds, svc.area.centroid)


@router.get(
    "/{z}/{x}/{y}.mvt",
    summary="A vector tile (Web Mercator): assets or aggregate cells, and zones",
    response_class=Response,
    responses={200: {"content": {MVT_MEDIA_TYPE: {}}}, 304: {"description": "Not modified (ETag)"}},
)
def tile(request: Request, z: int, x: int, y: int) -> Response:
    """The tile, or 304 when the client's ETag is still the tile's."""
    svc = services(request)
    settings = svc.settings.tiles

    def read(session: Session) -> Response:
        require_actor(request, session)
        tiles.check_tile(z, x, y, settings)
        if on_replica():
            # Stale counts are recounted, which a replica cannot do: the primary draws this tile.
            if tiles.counts_stale(session):
                raise PrimaryNeeded
        else:
            tiles.refresh_counts(session)
        state = tiles.tile_state(session, z, x, y, settings)
        headers = {
            "ETag": state.etag,
            # private: the tile needs a token; after max-age the client revalidates (a 304 is cheap).
            "Cache-Control": f"private, max-age={settings.max_age_s}",
            "Vary": "Authorization",
        }
        known = _etags(request.headers.get("if-none-match"))
        if state.etag in known or "*" in known:
            return Response(status_code=304, headers=headers)
        body = tiles.render_tile(session, z, x, y, state, settings)
        return Response(content=body, media_type=MVT_MEDIA_TYPE, headers=headers)

    # Tiles read on the replica while it is fit (api/replicas.py).
    return svc.read(read)


def _etags(header: str | None) -> set[str]:
    """The entity tags of an If-None-Match header (weak ones compare equal, as RFC 9110 says for it)."""
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}
