"""OGC API - Features over HTTP: every endpoint, paging, CRS, the history behind ``datetime``, bad input."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer
from sqlalchemy import Engine, text

from gis.area import ServiceArea
from registry import assets, zones
from registry.codes import SmartCode
from registry.db import Actor, transaction
from registry.features import CRS84
from registry.schemas import AssetUpdate, Decommission, UnitsChange
from tests.conftest import ADMIN_TOKEN
from tests.helpers import COUNTY, PINGSHAN, make_asset, make_unit, point

EPSG4490 = "http://www.opengis.net/def/crs/EPSG/0/4490"
EPSG4547 = "http://www.opengis.net/def/crs/EPSG/0/4547"
ITEMS = "/ogc/collections/assets/items"


def _get(client: TestClient, url: str, **params: Any) -> Any:
    # An empty params mapping would replace the query a next link carries.
    response = client.get(url, params=params or None, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.text
    return response


def _owners(client: TestClient, **params: Any) -> dict[str, str | None]:
    body = _get(client, ITEMS, **params).json()
    return {f["id"]: f["properties"]["owner"] for f in body["features"]}


def _db_now(db: Engine) -> dt.datetime:
    with db.connect() as conn:
        value = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    assert isinstance(value, dt.datetime)
    return value


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def test_landing_conformance_and_api_definition_are_public(client: TestClient) -> None:
    landing = client.get("/ogc/")
    assert landing.status_code == 200
    links = {link["rel"]: link["href"] for link in landing.json()["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= set(links)
    assert links["service-desc"].endswith("/ogc/api") and links["data"].endswith("/ogc/collections")
    assert client.get("/ogc").status_code == 200

    conforms = client.get("/ogc/conformance").json()["conformsTo"]
    for cls in (
        "ogcapi-features-1/1.0/conf/core",
        "conf/geojson",
        "conf/oas30",
        "ogcapi-features-2/1.0/conf/crs",
    ):
        assert any(c.endswith(cls) for c in conforms), cls

    api = client.get(links["service-desc"].replace("http://testserver", ""))
    assert api.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    document = api.json()
    assert document["openapi"].startswith("3.0")
    limit = next(
        p for p in document["paths"]["/collections/assets/items"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert limit["schema"]["maximum"] == 10_000 and limit["schema"]["default"] == 10


def test_collections_and_items_need_a_token(client: TestClient, db: Engine, admin: Actor) -> None:
    code = make_asset(db, admin).code
    for url in (
        "/ogc/collections",
        "/ogc/collections/assets",
        ITEMS,
        f"{ITEMS}/{code}",
        "/ogc/collections/zones/items",
    ):
        response = client.get(url)
        assert response.status_code == 401, url
        assert response.json()["error"]["type"] == "Unauthorized"
        assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_collections_describe_extent_and_crs(client: TestClient, db: Engine, admin: Actor) -> None:
    make_asset(db, admin, geometry=point(114.30, 22.68))
    make_asset(db, admin, geometry=point(114.36, 22.71))
    body = _get(client, "/ogc/collections").json()
    described = {c["id"]: c for c in body["collections"]}
    assert set(described) == {"assets", "zones"}
    assets_collection = described["assets"]
    assert assets_collection["itemType"] == "feature"
    assert assets_collection["crs"] == [CRS84, EPSG4490, EPSG4547]
    assert assets_collection["storageCrs"] == CRS84
    bbox = assets_collection["extent"]["spatial"]["bbox"][0]
    assert bbox == pytest.approx([114.30, 22.68, 114.36, 22.71])
    assert any(link["rel"] == "items" for link in assets_collection["links"])
    one = _get(client, "/ogc/collections/zones").json()
    assert one["id"] == "zones" and one["crs"] == [CRS84, EPSG4490, EPSG4547]
    assert (
        client.get("/ogc/collections/pipes", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code
        == 404
    )


def test_paging_follows_next_links_in_a_stable_order(client: TestClient, db: Engine, admin: Actor) -> None:
    codes = [make_asset(db, admin, geometry=point(114.30 + i * 0.001, 22.68)).code for i in range(23)]
    first = _get(client, ITEMS)
    assert first.headers["content-type"] == "application/geo+json"
    assert first.headers["content-crs"] == f"<{CRS84}>"
    page = first.json()
    assert page["type"] == "FeatureCollection"
    assert (page["numberMatched"], page["numberReturned"]) == (23, 10)  # default limit 10
    assert not any(link["rel"] == "prev" for link in page["links"])
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        seen += [feature["id"] for feature in page["features"]]
        following = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not following:
            break
        page = _get(client, following[0].replace("http://testserver", "")).json()
        assert any(link["rel"] == "prev" for link in page["links"])
    assert pages == 3 and seen == codes  # registration order is id order
    last = _get(client, ITEMS, limit=5, offset=20).json()
    assert last["numberReturned"] == 3
    prev = next(link["href"] for link in last["links"] if link["rel"] == "prev")
    assert "offset=15" in prev and "limit=5" in prev


def test_a_limit_above_the_maximum_is_the_maximum(client: TestClient, db: Engine, admin: Actor) -> None:
    make_asset(db, admin)
    body = _get(client, ITEMS, limit=1_000_000).json()
    assert body["numberReturned"] == 1


def test_feature_properties_name_the_units(client: TestClient, db: Engine, admin: Actor) -> None:
    owner = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    asset = make_asset(db, admin, owner_id=owner.id, maintainer_id=owner.id, address="坪山大道 1 号")
    feature = _get(client, ITEMS).json()["features"][0]
    assert feature["id"] == asset.code
    assert feature["geometry"] == {"type": "Point", "coordinates": list(PINGSHAN)}
    props = feature["properties"]
    assert props["owner"] == "深圳供电局有限公司" and props["owner_phone"] == "95598"
    assert props["class_code"] == "0118" and props["class_name"] and props["in_use"] is True
    assert props["address"] == "坪山大道 1 号" and props["version"] == 1


def test_bbox_class_and_unit_filters(client: TestClient, db: Engine, admin: Actor) -> None:
    power = make_unit(db, "供电局", admin)
    water = make_unit(db, "水务集团", admin)
    west = make_asset(db, admin, geometry=point(114.30, 22.68), owner_id=power.id).code
    east = make_asset(db, admin, geometry=point(114.36, 22.71), maintainer_id=water.id).code
    cover = make_asset(db, admin, "0101", geometry=point(114.361, 22.711), owner_id=water.id).code
    assert set(_owners(client, bbox="114.35,22.70,114.37,22.72")) == {east, cover}
    assert set(_owners(client, bbox="114.29,22.67,114.31,22.69")) == {west}
    assert set(_owners(client, **{"class": "0101"})) == {cover}
    assert set(_owners(client, **{"class": "0118,0101"})) == {west, east, cover}
    assert set(_owners(client, unit=water.id)) == {east, cover}  # maintainer or owner
    body = _get(client, ITEMS, unit=water.id, bbox="114.35,22.70,114.37,22.72", **{"class": "0118"}).json()
    assert [f["id"] for f in body["features"]] == [east] and body["numberMatched"] == 1


def test_output_crs_and_bbox_crs_in_the_authority_axis_order(
    client: TestClient, db: Engine, admin: Actor
) -> None:
    code = make_asset(db, admin).code
    lon, lat = PINGSHAN
    east, north = Transformer.from_crs(4326, 4547, always_xy=True).transform(lon, lat)

    projected = _get(client, ITEMS, crs=EPSG4547)
    assert projected.headers["content-crs"] == f"<{EPSG4547}>"
    x, y = projected.json()["features"][0]["geometry"]["coordinates"]
    assert (x, y) == pytest.approx((north, east), abs=0.01)  # EPSG:4547 is northing first
    assert "crs" not in projected.json()["features"][0]["geometry"]  # the CRS is in Content-Crs
    geographic = _get(client, ITEMS, crs="EPSG:4490").json()["features"][0]["geometry"]["coordinates"]
    assert geographic == pytest.approx([lat, lon], abs=1e-6)  # EPSG:4490 is latitude first
    single = _get(client, f"{ITEMS}/{code}", crs=EPSG4547)
    assert single.headers["content-crs"] == f"<{EPSG4547}>"
    assert single.json()["geometry"]["coordinates"] == pytest.approx([north, east], abs=0.01)

    around = f"{north - 50},{east - 50},{north + 50},{east + 50}"
    assert set(_owners(client, bbox=around, **{"bbox-crs": EPSG4547})) == {code}
    beside = f"{north - 50},{east + 100},{north + 50},{east + 200}"
    assert _owners(client, bbox=beside, **{"bbox-crs": EPSG4547}) == {}
    lat_first = f"{lat - 0.001},{lon - 0.001},{lat + 0.001},{lon + 0.001}"
    assert set(_owners(client, bbox=lat_first, **{"bbox-crs": EPSG4490})) == {code}


def test_single_items(client: TestClient, db: Engine, admin: Actor) -> None:
    asset = make_asset(db, admin)
    with transaction(db) as session:
        zone, _ = zones.save_zone(
            session,
            admin,
            zones.ZoneInput(
                level="street", name="坪山街道", geometry=shapely.box(114.33, 22.68, 114.36, 22.71)
            ),
            area=ServiceArea.from_settings(),
            county=COUNTY,
        )
    found = _get(client, f"{ITEMS}/{asset.code}")
    assert found.headers["content-type"] == "application/geo+json"
    body = found.json()
    assert body["type"] == "Feature" and body["id"] == asset.code
    assert {link["rel"] for link in body["links"]} == {"self", "collection"}
    formatted = SmartCode(asset.county_code, asset.class_code, asset.serial).formatted
    assert _get(client, f"{ITEMS}/{formatted}").json()["id"] == asset.code
    zone_feature = _get(client, f"/ogc/collections/zones/items/{zone['id']}").json()
    assert (
        zone_feature["properties"]["name"] == "坪山街道"
        and zone_feature["geometry"]["type"] == "MultiPolygon"
    )
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for missing in (
        f"{ITEMS}/44031001180099990",
        f"{ITEMS}/nonsense",
        "/ogc/collections/zones/items/999",
        "/ogc/collections/zones/items/99999999999999999999",
    ):
        response = client.get(missing, headers=auth)
        assert response.status_code == 404, missing
        assert response.json()["error"]["type"] == "NotFound"


def test_datetime_shows_the_owner_and_version_of_the_time(
    client: TestClient, db: Engine, admin: Actor
) -> None:
    old = make_unit(db, "原权属单位", admin)
    new = make_unit(db, "新权属单位", admin)
    lamp = make_asset(db, admin, owner_id=old.id)
    recorded_before_move = _db_now(db)
    now = _db_now(db)
    yesterday = now - dt.timedelta(days=1)
    with transaction(db) as session:
        assets.update_asset(
            session,
            lamp.code,
            AssetUpdate(version=1, geometry=point(114.35, 22.70), reason="复测坐标"),
            admin,
            ServiceArea.from_settings(),
        )
        assets.change_units(
            session,
            lamp.code,
            UnitsChange(version=2, owner_id=new.id, effective_at=yesterday, reason="资产移交"),
            admin,
        )

    # Handed over yesterday: two days ago the old owner held it, now the new one does.
    assert _owners(client, datetime=_iso(now - dt.timedelta(days=2))) == {lamp.code: "原权属单位"}
    assert _owners(client, datetime=_iso(_db_now(db))) == {lamp.code: "新权属单位"}
    assert _owners(client) == {lamp.code: "新权属单位"}
    interval = f"{_iso(now - dt.timedelta(days=5))}/{_iso(now - dt.timedelta(days=2))}"
    assert _owners(client, datetime=interval) == {lamp.code: "原权属单位"}  # shown as of the interval's end
    assert _owners(client, datetime=f"../{_iso(now - dt.timedelta(days=2))}") == {lamp.code: "原权属单位"}
    assert _owners(client, datetime=f"{_iso(now - dt.timedelta(days=2))}/..") == {lamp.code: "新权属单位"}
    # The unit filter asks about the same time.
    assert set(_owners(client, unit=old.id, datetime=_iso(now - dt.timedelta(days=2)))) == {lamp.code}
    assert _owners(client, unit=old.id) == {}

    # The geometry and version are those the registry held at the time.
    then = _get(client, ITEMS, datetime=_iso(recorded_before_move)).json()["features"][0]
    assert then["geometry"]["coordinates"] == list(PINGSHAN) and then["properties"]["version"] == 1
    current = _get(client, ITEMS).json()["features"][0]
    assert current["geometry"]["coordinates"] == [114.35, 22.70] and current["properties"]["version"] == 3
    # A bbox asks about the geometry of the time too.
    around_old = f"{PINGSHAN[0] - 0.001},{PINGSHAN[1] - 0.001},{PINGSHAN[0] + 0.001},{PINGSHAN[1] + 0.001}"
    assert set(_owners(client, bbox=around_old, datetime=_iso(recorded_before_move))) == {lamp.code}
    assert _owners(client, bbox=around_old) == {}
    assert _owners(client, bbox="114.349,22.699,114.351,22.701", datetime=_iso(recorded_before_move)) == {}

    # The same answer as the service behind `show --at`.
    for at in (now - dt.timedelta(days=2), recorded_before_move, _db_now(db)):
        with transaction(db) as session:
            expected = assets.as_of(session, lamp.code, at)
        feature = _get(client, ITEMS, datetime=_iso(at)).json()["features"][0]["properties"]
        assert feature["owner_id"] == expected["responsibility"]["owner"]["id"]
        assert feature["version"] == (expected["recorded_version"] or 1)


def test_datetime_selects_assets_in_service_then(client: TestClient, db: Engine, admin: Actor) -> None:
    now = _db_now(db)
    installed = make_asset(db, admin, installed_on=(now - dt.timedelta(days=10)).date()).code
    retired = make_asset(db, admin).code
    with transaction(db) as session:
        assets.decommission_asset(
            session, retired, Decommission(version=1, at=now - dt.timedelta(days=3), reason="拆除"), admin
        )
    assert set(_owners(client)) == {installed, retired}  # the registry now: decommissioned ones too
    assert set(_owners(client, datetime=_iso(now - dt.timedelta(days=20)))) == {retired}
    assert set(_owners(client, datetime=_iso(now - dt.timedelta(days=5)))) == {installed, retired}
    assert set(_owners(client, datetime=_iso(now - dt.timedelta(days=1)))) == {installed}
    window = f"{_iso(now - dt.timedelta(days=4))}/{_iso(now - dt.timedelta(days=2))}"
    assert set(_owners(client, datetime=window)) == {installed, retired}
    body = _get(client, ITEMS, datetime=(now - dt.timedelta(days=20)).date().isoformat()).json()
    assert body["numberMatched"] == 1


def test_zones_by_generation(client: TestClient, db: Engine, admin: Actor) -> None:
    area = ServiceArea.from_settings()
    with transaction(db) as session:
        first, _ = zones.save_zone(
            session,
            admin,
            zones.ZoneInput(
                level="street", name="坪山街道", geometry=shapely.box(114.33, 22.68, 114.36, 22.71)
            ),
            area=area,
            county=COUNTY,
        )
    between = _db_now(db)
    with transaction(db) as session:
        second, outcome = zones.save_zone(
            session,
            admin,
            zones.ZoneInput(
                level="street", name="坪山街道", geometry=shapely.box(114.33, 22.68, 114.37, 22.72)
            ),
            area=area,
            county=COUNTY,
        )
    assert outcome == "replaced"
    url = "/ogc/collections/zones/items"
    assert [f["id"] for f in _get(client, url).json()["features"]] == [second["id"]]
    assert [f["id"] for f in _get(client, url, datetime=_iso(between)).json()["features"]] == [first["id"]]
    assert [f["id"] for f in _get(client, url, datetime=f"{_iso(between)}/..").json()["features"]] == [
        first["id"],
        second["id"],
    ]
    assert _get(client, url, level="grid").json()["numberMatched"] == 0
    assert _get(client, url, bbox="114.365,22.715,114.369,22.719").json()["numberMatched"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bbox": "114.3,22.6,114.4"}, "bbox"),
        ({"bbox": "114.4,22.6,114.3,22.7"}, "bbox"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"bbox": "22.6,114.3,22.7,114.4", "bbox-crs": "EPSG:4490"}, None),  # valid: lat,lon order
        ({"bbox": "114.3,22.6,114.4,22.7", "bbox-crs": "EPSG:4490"}, "bbox"),  # lon,lat given: lat 114 > 90
        ({"bbox-crs": EPSG4547}, "bbox-crs"),
        ({"bbox": "114.3,22.6,114.4,22.7", "bbox-crs": "EPSG:3857"}, "bbox-crs"),
        ({"crs": "http://www.opengis.net/def/crs/EPSG/0/3857"}, "crs"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"datetime": "yesterday"}, "datetime"),
        ({"datetime": "2025-03-02T08:00:00"}, "datetime"),
        ({"datetime": "2025-03-02T00:00:00Z/2025-03-01T00:00:00Z"}, "datetime"),
        ({"datetime": "../.."}, "datetime"),
        ({"class": "lamp"}, "class"),
        ({"unit": "power"}, "unit"),
        ({"colour": "red"}, "colour"),
        ({"offset": str(2**63)}, "offset"),
        ({"unit": str(10**30)}, "unit"),
        ({"limit": str(10**30)}, None),  # the maximum applies
        ({"bbox": "-1e9,-1e9,1e9,1e9", "bbox-crs": EPSG4547}, None),  # cut to the zone, not a 500
        ({"datetime": "9999-12-31"}, None),
        ({"datetime": "2025-02-30"}, "datetime"),
        ({"f": "html"}, "f"),
    ],
)
def test_bad_parameters_are_400_in_the_error_envelope(
    client: TestClient, db: Engine, params: dict[str, str], field: str | None
) -> None:
    response = client.get(ITEMS, params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    if field is None:
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "InvalidInput" and error["details"]["field"] == field
    assert error["message"]
