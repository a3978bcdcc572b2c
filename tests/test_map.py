"""The web map's login session: the token is checked once, the browser keeps only a signed cookie,
and that cookie reads (GET/HEAD on the map's endpoints) but never writes. Also the landing page and
the vendored MapLibre files."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.deps import SESSION_COOKIE, cookie_allowed, issue_session, session_ref
from common.settings import MapSettings, Settings
from registry import tokens
from registry.db import Actor, transaction
from tests.conftest import ADMIN_TOKEN
from tests.helpers import make_asset, make_unit
from tests.test_resolve import add_zone, box

STATIC = Path(__file__).resolve().parent.parent / "api" / "static"


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    """The Web Mercator tile holding a point."""
    n = 2**z
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return z, int((lon + 180) / 360 * n), int(y)


def login(client: TestClient, token: str) -> str:
    """Log in through the form; the session cookie's value."""
    response = client.post("/map/login", data={"token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/map"
    return response.cookies[SESSION_COOKIE]


def test_without_a_session_the_map_sends_to_the_login_form(client: TestClient) -> None:
    response = client.get("/map", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/map/login"
    form = client.get("/map/login")
    assert form.status_code == 200
    assert 'method="post" action="/map/login"' in form.text
    assert "访问令牌" in form.text


def test_a_bad_token_gets_an_error_page_and_no_cookie(client: TestClient) -> None:
    response = client.post("/map/login", data={"token": "not-a-token"}, follow_redirects=False)
    assert response.status_code == 401
    assert "令牌无效或已被吊销" in response.text
    assert "set-cookie" not in response.headers
    assert client.get("/map", follow_redirects=False).status_code == 303


def test_the_cookie_is_httponly_strict_and_not_the_token(client: TestClient) -> None:
    response = client.post("/map/login", data={"token": ADMIN_TOKEN}, follow_redirects=False)
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header
    assert "SameSite=strict" in header or "SameSite=Strict" in header
    assert "Secure" not in header  # plain http on 127.0.0.1
    value = response.cookies[SESSION_COOKIE]
    assert ADMIN_TOKEN not in value
    assert value.startswith("admin.")  # a reference to the token, an expiry, a nonce and a signature
    page = client.get("/map")
    assert page.status_code == 200
    assert "分拨地图" in page.text
    assert ADMIN_TOKEN not in page.text
    assert "/static/maplibre-gl/maplibre-gl.mjs" in client.get("/static/map/map.js").text


def test_the_cookie_is_secure_over_https(db: Engine, settings: Settings, migrated_url: str) -> None:
    from api.app import create_app

    with TestClient(create_app(settings, url=migrated_url), base_url="https://testserver") as client:
        response = client.post("/map/login", data={"token": ADMIN_TOKEN}, follow_redirects=False)
    assert "Secure" in response.headers["set-cookie"]


def test_the_cookie_reads_the_map_endpoints_and_never_writes(
    client: TestClient, db: Engine, admin: Actor
) -> None:
    office = make_unit(db, "坪山街道办事处", admin, kind="street_office", phone="0755-28000000")
    add_zone(db, admin, "street", "坪山街道", box(-1000, -1000, 1000, 1000), unit="坪山街道办事处")
    asset = make_asset(db, admin, owner_id=office.id)
    # Before logging in: the positions are not public.
    assert client.get("/api/v1/zones").status_code == 401
    assert client.get("/api/v1/resolve", params={"lon": 114.3466, "lat": 22.6953}).status_code == 401
    login(client, ADMIN_TOKEN)

    assert client.get("/api/v1/zones").status_code == 200
    answer = client.get("/api/v1/resolve", params={"lon": 114.3466, "lat": 22.6953})
    assert answer.status_code == 200, answer.text
    assert answer.json()["owner"]["name"] == "坪山街道办事处"
    full = client.get(f"/api/v1/assets/{asset.code}").json()
    assert "geometry" in full  # the staff view, not the passer-by view
    assert client.get("/tiles/{}/{}/{}.mvt".format(*tile_of(114.3466, 22.6953, 16))).status_code == 200
    assert client.head("/api/v1/classes").status_code in (200, 405)

    # Writes and reads elsewhere ignore it: a forged cross-site form gets nothing done.
    created = client.post("/api/v1/units", json={"name": "某单位"})
    assert created.status_code == 401
    assert client.delete("/api/v1/categories/占道经营").status_code == 401
    assert client.get("/api/v1/tokens").status_code == 401
    assert client.get("/api/v1/resolutions").status_code == 401


def test_cookie_paths_are_the_safe_reads_of_the_map() -> None:
    assert cookie_allowed("GET", "/api/v1/resolve")
    assert cookie_allowed("HEAD", "/tiles/3/1/2.mvt")
    assert cookie_allowed("GET", "/ogc/collections/assets/items")
    assert not cookie_allowed("POST", "/api/v1/resolve")
    assert not cookie_allowed("PUT", "/api/v1/categories/x")
    assert not cookie_allowed("GET", "/api/v1/tokens")
    assert not cookie_allowed("GET", "/api/v1/assetsx")  # a prefix only counts up to a path segment


def test_a_tampered_or_expired_cookie_is_no_session(settings: Settings) -> None:
    value = issue_session(settings, "7", now=1_000_000.0)
    assert session_ref(settings, value, now=1_000_001.0) == "7"
    _ref, expires, nonce, mac = value.split(".")
    assert session_ref(settings, f"admin.{expires}.{nonce}.{mac}", now=1_000_001.0) is None
    assert session_ref(settings, value, now=int(expires) + 1) is None
    other = settings.model_copy(update={"map": MapSettings(session_hours=1)})
    assert session_ref(other, value, now=1_000_001.0) == "7"  # same key: the admin token's


def test_revoking_the_token_ends_its_sessions(client: TestClient, db: Engine, admin: Actor) -> None:
    with transaction(db) as session:
        secret = tokens.create_token(session, "dispatcher", "reader", admin)
    value = login(client, secret)
    assert secret not in value
    assert client.get("/api/v1/zones").status_code == 200
    assert client.get("/map", follow_redirects=False).status_code == 200
    with transaction(db) as session:
        tokens.revoke_token(session, "dispatcher", admin)
    assert client.get("/api/v1/zones").status_code == 401
    assert client.get("/map", follow_redirects=False).headers["location"] == "/map/login"


def test_logout_drops_the_cookie(client: TestClient) -> None:
    login(client, ADMIN_TOKEN)
    response = client.post("/map/logout", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/map/login"
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/map", follow_redirects=False).status_code == 303


def test_the_landing_page_links_the_map_and_the_docs(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert 'href="/map"' in response.text and 'href="/docs"' in response.text
    assert "分拨地图" in response.text


@pytest.mark.parametrize(
    "name", ["maplibre-gl.mjs", "maplibre-gl-worker.mjs", "maplibre-gl.css", "LICENSE.txt"]
)
def test_maplibre_is_vendored_with_its_licence_and_version(client: TestClient, name: str) -> None:
    readme = (STATIC / "maplibre-gl" / "README.md").read_text()
    version = re.search(r"version \*\*([0-9.]+)\*\*", readme)
    assert version is not None
    assert client.get(f"/static/maplibre-gl/{name}").status_code == 200
    if name == "maplibre-gl.mjs":
        assert f"v{version.group(1)}/LICENSE.txt" in (STATIC / "maplibre-gl" / name).read_text()[:400]
