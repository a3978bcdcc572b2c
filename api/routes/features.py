"""``/ogc``: OGC API - Features (Part 1 core + GeoJSON + OpenAPI 3.0, Part 2 CRS) over assets and zones.

The landing page, conformance and the API definition are public; collections and items need a bearer
token (infrastructure positions are not public). Query parameters are read here, so a bad value is a
400 in the project's error envelope rather than FastAPI's 422; the SQL lives in ``registry.features``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from api.deps import require_actor, services
from common.errors import InvalidInput
from registry import features
from registry import zones as zone_service

PREFIX = "/ogc"
router = APIRouter(prefix=PREFIX, tags=["ogc-features"])

GEOJSON = "application/geo+json"
JSON = "application/json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
]
_TITLES = {
    "assets": (
        "部件 Assets",
        "城市部件：智慧码、类别、状态、权属单位、养护单位、监管单位 (one feature per asset)",
    ),
    "zones": (
        "区域 Zones",
        "街道、社区、单元网格、养护合同片区、试点区域 (one feature per boundary version)",
    ),
}
# Parameters each collection's items understand; anything else is refused (OGC Part 1 asks for a 400).
_COMMON_PARAMS = {"limit", "offset", "bbox", "bbox-crs", "crs", "datetime", "f"}
_PARAMS = {"assets": _COMMON_PARAMS | {"class", "unit"}, "zones": _COMMON_PARAMS | {"unit", "level"}}


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _json(content: Any, media_type: str = JSON, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), media_type=media_type, headers=headers)


def _check_format(request: Request) -> None:
    fmt = request.query_params.get("f")
    if fmt is not None and fmt.lower() not in ("json", "geojson", "application/json", GEOJSON):
        raise InvalidInput(f"f: only JSON is served (f=json), not {fmt!r}", field="f")


@router.get("", include_in_schema=False)
@router.get("/", summary="OGC API - Features landing page")
def landing(request: Request) -> Response:
    """Links to the API definition, the conformance declaration and the collections."""
    _check_format(request)
    base = _base(request)
    return _json(
        {
            "title": "smartcode 智慧码 OGC API - Features",
            "description": "城市部件与区域 (assets and zones); collections and items need a bearer token",
            "links": [
                {"href": f"{base}/", "rel": "self", "type": JSON, "title": "this document"},
                {"href": f"{base}/api", "rel": "service-desc", "type": OPENAPI, "title": "API definition"},
                {"href": f"{base}/conformance", "rel": "conformance", "type": JSON, "title": "conformance"},
                {"href": f"{base}/collections", "rel": "data", "type": JSON, "title": "collections"},
            ],
        }
    )


@router.get("/conformance", summary="Conformance classes implemented")
def conformance(request: Request) -> Response:
    """The conformance classes: Part 1 core, GeoJSON, OpenAPI 3.0; Part 2 CRS."""
    _check_format(request)
    return _json({"conformsTo": CONFORMANCE})


@router.get("/api", summary="OpenAPI 3.0 definition of the OGC API")
def api_definition(request: Request) -> Response:
    """The OpenAPI 3.0 document describing ``/ogc``."""
    _check_format(request)
    return _json(openapi(_base(request)), media_type=OPENAPI)


def _collection(base: str, collection: str, extent: features.Extent) -> dict[str, Any]:
    title, description = _TITLES[collection]
    bbox = list(extent.bbox) if extent.bbox else [-180.0, -90.0, 180.0, 90.0]
    return {
        "id": collection,
        "title": title,
        "description": description,
        "itemType": "feature",
        "crs": [crs.uri for crs in features.CRS_LIST],
        "storageCrs": features.STORAGE_CRS.uri,
        "extent": {
            "spatial": {"bbox": [bbox], "crs": features.CRS84},
            "temporal": {
                "interval": [[None, None]],
                "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian",
            },
        },
        "links": [
            {"href": f"{base}/collections/{collection}", "rel": "self", "type": JSON, "title": title},
            {
                "href": f"{base}/collections/{collection}/items",
                "rel": "items",
                "type": GEOJSON,
                "title": title,
            },
        ],
    }


@router.get("/collections", summary="The collections: assets and zones")
def collections(request: Request) -> Response:
    """Every collection with its extent and CRS list (needs a token)."""
    _check_format(request)
    base = _base(request)

    def read(session: Session) -> list[dict[str, Any]]:
        require_actor(request, session)
        return [_collection(base, c, features.extent(session, c)) for c in features.COLLECTIONS]

    # Reads go to the replica while it is fit (api/replicas.py).
    described = services(request).read(read)
    return _json(
        {
            "links": [{"href": f"{base}/collections", "rel": "self", "type": JSON, "title": "collections"}],
            "collections": described,
        }
    )


@router.get("/collections/{collection_id}", summary="One collection")
def collection(request: Request, collection_id: str) -> Response:
    """One collection's description (needs a token)."""
    _check_format(request)
    features.check_collection(collection_id)

    def read(session: Session) -> features.Extent:
        require_actor(request, session)
        return features.extent(session, collection_id)

    return _json(_collection(_base(request), collection_id, services(request).read(read)))


_BIGINT_MAX = 2**63 - 1


def _integer(request: Request, name: str, default: int, minimum: int, *, clamp: bool = False) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {raw!r} is not a whole number", field=name) from exc
    if value < minimum:
        raise InvalidInput(f"{name}: must be at least {minimum}, got {value}", field=name)
    if value > _BIGINT_MAX and not clamp:
        raise InvalidInput(f"{name}: {raw} is too large", field=name)
    return value


def _item_query(request: Request, collection: str) -> features.ItemQuery:
    params = request.query_params
    unknown = sorted(set(params.keys()) - _PARAMS[collection])
    if unknown:
        allowed = ", ".join(sorted(_PARAMS[collection]))
        raise InvalidInput(
            f"unknown query parameter {unknown[0]!r} for {collection}; accepted: {allowed}", field=unknown[0]
        )
    _check_format(request)
    # Above the maximum the maximum applies: OGC Part 1 says a large limit is not an error.
    limit = min(_integer(request, "limit", features.DEFAULT_LIMIT, 1, clamp=True), features.MAX_LIMIT)
    bbox_crs = features.parse_crs(params.get("bbox-crs"), "bbox-crs")
    if "bbox-crs" in params and "bbox" not in params:
        raise InvalidInput("bbox-crs is given without a bbox", field="bbox-crs")
    classes = tuple(
        code.strip() for value in params.getlist("class") for code in value.split(",") if code.strip()
    )
    for code in classes:
        if len(code) != 4 or not code.isdigit():
            raise InvalidInput(f"class: {code!r} is not a 4-digit class code such as 0118", field="class")
    unit = _integer(request, "unit", 0, 1) if "unit" in params else None
    level = params.get("level")
    return features.ItemQuery(
        limit=limit,
        offset=_integer(request, "offset", 0, 0),
        bbox=features.parse_bbox(params.get("bbox"), bbox_crs),
        bbox_crs=bbox_crs,
        crs=features.parse_crs(params.get("crs"), "crs"),
        window=features.parse_datetime(params.get("datetime"), services(request).settings.area.timezone),
        class_codes=classes,
        unit_id=unit,
        level=zone_service.check_level(level) if level is not None else None,
    )


def _geojson(body: bytes, crs: features.Crs) -> Response:
    return Response(body, media_type=GEOJSON, headers={"Content-Crs": f"<{crs.uri}>"})


@router.get("/collections/{collection_id}/items", summary="Features of a collection (GeoJSON, paged)")
def items(request: Request, collection_id: str) -> Response:
    """A page of features with ``numberMatched``, ``numberReturned`` and next/prev links (needs a token)."""
    features.check_collection(collection_id)
    query = _item_query(request, collection_id)

    def read(session: Session) -> features.Page:
        require_actor(request, session)
        return features.items(session, collection_id, query)

    page = services(request).read(read)
    url = request.url
    links = [
        {"href": str(url), "rel": "self", "type": GEOJSON, "title": "this page"},
        {"href": f"{_base(request)}/collections/{collection_id}", "rel": "collection", "type": JSON},
    ]
    if query.offset + len(page.features) < page.number_matched:
        next_url = url.include_query_params(offset=query.offset + len(page.features), limit=query.limit)
        links.append({"href": str(next_url), "rel": "next", "type": GEOJSON, "title": "next page"})
    if query.offset > 0:
        prev_url = url.include_query_params(offset=max(query.offset - query.limit, 0), limit=query.limit)
        links.append({"href": str(prev_url), "rel": "prev", "type": GEOJSON, "title": "previous page"})
    tail = orjson.dumps(
        {
            "numberMatched": page.number_matched,
            "numberReturned": len(page.features),
            "timeStamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "links": links,
        }
    )
    # The features arrive as GeoJSON text from PostGIS; only the envelope is built here.
    body = b'{"type":"FeatureCollection","features":[' + ",".join(page.features).encode() + b"]," + tail[1:]
    return _geojson(body, query.crs)


@router.get("/collections/{collection_id}/items/{feature_id}", summary="One feature")
def item(request: Request, collection_id: str, feature_id: str) -> Response:
    """One feature: an asset by its smart code, a zone version by its id (needs a token)."""
    features.check_collection(collection_id)
    unknown = sorted(set(request.query_params.keys()) - {"crs", "f"})
    if unknown:
        raise InvalidInput(f"unknown query parameter {unknown[0]!r} for a single feature", field=unknown[0])
    _check_format(request)
    crs = features.parse_crs(request.query_params.get("crs"), "crs")

    def read(session: Session) -> str:
        require_actor(request, session)
        return features.item(session, collection_id, feature_id, crs)

    found = services(request).read(read)
    base = _base(request)
    links = orjson.dumps(
        {
            "links": [
                {"href": str(request.url), "rel": "self", "type": GEOJSON},
                {"href": f"{base}/collections/{collection_id}", "rel": "collection", "type": JSON},
            ]
        }
    )
    # Splice the links into the feature object PostGIS rendered.
    return _geojson(found.encode()[:-1] + b"," + links[1:], crs)


def openapi(base: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``/ogc`` with the server at ``base``."""

    def param(name: str, schema: dict[str, Any], description: str, where: str = "query") -> dict[str, Any]:
        return {
            "name": name,
            "in": where,
            "required": where == "path",
            "schema": schema,
            "description": description,
            "style": "form",
            "explode": False,
        }

    crs_enum = {"type": "string", "format": "uri", "enum": [c.uri for c in features.CRS_LIST]}
    common = [
        param(
            "limit",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": features.MAX_LIMIT,
                "default": features.DEFAULT_LIMIT,
            },
            "features per page; above the maximum the maximum applies",
        ),
        param(
            "offset", {"type": "integer", "minimum": 0, "default": 0}, "features to skip (stable order by id)"
        ),
        param(
            "bbox",
            {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
            "lower and upper corner in bbox-crs's axis order (CRS84: lon,lat)",
        ),
        param("bbox-crs", crs_enum, "CRS of bbox (default CRS84)"),
        param("crs", crs_enum, "CRS of the returned geometries (default CRS84)"),
        param(
            "datetime",
            {"type": "string"},
            "instant or interval (RFC 3339, '..' for an open end): the registry as of then",
        ),
    ]
    feature_collection = {
        GEOJSON: {"schema": {"type": "object", "required": ["type", "features"]}},
    }
    error = {"description": "error envelope {error: {type, message, details}}"}
    paths: dict[str, Any] = {
        "/": {
            "get": {
                "operationId": "landing",
                "summary": "landing page",
                "responses": {"200": {"description": "links"}},
            }
        },
        "/conformance": {
            "get": {
                "operationId": "conformance",
                "summary": "conformance",
                "responses": {"200": {"description": "conformsTo"}},
            }
        },
        "/api": {
            "get": {
                "operationId": "api",
                "summary": "this document",
                "responses": {"200": {"description": "OpenAPI"}},
            }
        },
        "/collections": {
            "get": {
                "operationId": "collections",
                "summary": "collections",
                "security": [{"bearer": []}],
                "responses": {"200": {"description": "collections"}, "401": error},
            }
        },
    }
    for collection in features.COLLECTIONS:
        extra = (
            [
                param(
                    "class", {"type": "array", "items": {"type": "string"}}, "class codes (comma-separated)"
                ),
                param(
                    "unit",
                    {"type": "integer"},
                    "unit id as owner, maintainer or supervisor at the time asked",
                ),
            ]
            if collection == "assets"
            else [
                param("unit", {"type": "integer"}, "the zone's unit id"),
                param("level", {"type": "string", "enum": list(zone_service.ZONE_LEVELS)}, "zone level"),
            ]
        )
        secured: dict[str, Any] = {"security": [{"bearer": []}]}
        paths[f"/collections/{collection}"] = {
            "get": {
                "operationId": f"describe_{collection}",
                "summary": f"the {collection} collection",
                **secured,
                "responses": {"200": {"description": "collection"}, "401": error},
            }
        }
        paths[f"/collections/{collection}/items"] = {
            "get": {
                "operationId": f"get_{collection}",
                "summary": f"{collection} features",
                **secured,
                "parameters": common + extra,
                "responses": {
                    "200": {"description": "features", "content": feature_collection},
                    "400": error,
                    "401": error,
                },
            }
        }
        paths[f"/collections/{collection}/items/{{featureId}}"] = {
            "get": {
                "operationId": f"get_{collection}_feature",
                "summary": f"one {collection} feature",
                **secured,
                "parameters": [
                    param("featureId", {"type": "string"}, "smart code or zone version id", "path"),
                    param("crs", crs_enum, "CRS of the returned geometry"),
                ],
                "responses": {"200": {"description": "feature", "content": feature_collection}, "404": error},
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "smartcode OGC API - Features", "version": "1.0.0"},
        "servers": [{"url": base}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
