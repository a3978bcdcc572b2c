"""The dispatcher's map in a real headless browser (Debian chromium, software WebGL, Playwright).

uvicorn serves the app on 127.0.0.1 against the test database with a lamp, two manhole covers, a
street zone with its office and a category rule. The test logs in, sees the map drawn, clicks the lamp
and sees its owner, clicks the street away from every asset and sees the 属地兜底 fallback, finds a
cover by its scanned label URL, resolves typed GCJ-02 coordinates, checks the JavaScript port of the
GCJ-02 formula against gis/crs.py, and that no request left 127.0.0.1. Set
``SMARTCODE_MAP_SCREENSHOTS=docs/img`` to refresh the screenshots in docs/map.md.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import Engine

from common.settings import MapSettings, Settings
from gis.crs import wgs84_to_gcj02
from registry.db import Actor
from tests.browser import RequestLog, chromium, serve
from tests.conftest import ADMIN_TOKEN
from tests.helpers import make_asset, make_unit
from tests.test_resolve import add_rule, add_zone, at_m, box, pt

pytestmark = pytest.mark.slow

SCREENSHOTS = os.environ.get("SMARTCODE_MAP_SCREENSHOTS")
VIEWPORT = {"width": 1200, "height": 800}


@pytest.fixture
def dataset(db: Engine, admin: Actor) -> dict[str, Any]:
    """A lamp and two covers around PINGSHAN in the street 坪山街道, whose office is the fallback."""
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    water = make_unit(db, "深圳市坪山区水务局", admin, kind="government", phone="0755-84620000")
    crew = make_unit(db, "坪山区照明设施养护中心", admin, kind="contractor", phone="0755-84630000")
    office = make_unit(db, "坪山街道办事处", admin, kind="street_office", phone="0755-28000000")
    make_unit(db, "坪山区城市管理和综合执法局", admin, kind="government", phone="12345")
    add_zone(db, admin, "street", "坪山街道", box(-1000, -1000, 1000, 1000), unit="坪山街道办事处")
    add_rule(
        db, admin, zone="坪山街道", level="street", category="占道经营", unit="坪山区城市管理和综合执法局"
    )
    lamp = make_asset(db, admin, "0118", owner_id=power.id, maintainer_id=crew.id, geometry=pt(0))
    cover = make_asset(db, admin, "0103", owner_id=water.id, geometry=pt(60, 20))
    other = make_asset(db, admin, "0105", owner_id=power.id, geometry=pt(-40, 35))
    return {"lamp": lamp, "cover": cover, "other": other, "office": office}


@pytest.fixture
def page(db: Engine, settings: Settings, migrated_url: str) -> Iterator[tuple[Any, str, RequestLog]]:
    """A logged-out browser page, the server's base URL and the page's request log."""
    from api.app import create_app

    with serve(create_app(settings, url=migrated_url)) as base, chromium() as browser:
        context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
        tab = context.new_page()
        log = RequestLog(tab)
        yield tab, base, log
        context.close()


def result_shows(page: Any, text: str) -> None:
    """Wait until the side panel's result holds ``text``."""
    page.wait_for_function(
        "(text) => document.querySelector('#result').innerText.includes(text)", arg=text, timeout=10_000
    )


def shot(page: Any, name: str) -> Image.Image:
    """A screenshot of the page (saved under SMARTCODE_MAP_SCREENSHOTS when set)."""
    png = page.screenshot()
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOTS) / name).write_bytes(png)
    return Image.open(io.BytesIO(png)).convert("RGB")


def click_at(page: Any, lon: float, lat: float) -> None:
    """Click the map at a WGS84 position."""
    x, y = page.evaluate(
        "([lon, lat]) => { const p = window.smartcodeMap.project([lon, lat]); return [p.x, p.y]; }",
        [lon, lat],
    )
    bbox = page.locator("#map").bounding_box()
    page.mouse.click(bbox["x"] + x, bbox["y"] + y)


def jump(page: Any, lon: float, lat: float, zoom: float) -> None:
    """Move the map and wait until every tile is drawn."""
    page.evaluate(
        """([lon, lat, zoom]) => new Promise((done) => {
            const map = window.smartcodeMap;
            map.jumpTo({center: [lon, lat], zoom});
            map.once("idle", () => done(true));
        })""",
        [lon, lat, zoom],
    )


def test_dispatcher_logs_in_clicks_assets_and_places_and_nothing_leaves_the_server(
    page: tuple[Any, str, RequestLog], dataset: dict[str, Any]
) -> None:
    tab, base, log = page
    tab.goto(f"{base}/map")
    assert tab.url == f"{base}/map/login"
    shot(tab, "map-login.png")
    tab.fill("#token", ADMIN_TOKEN)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{base}/map")
    tab.wait_for_selector("body[data-map-ready]", state="attached", timeout=30_000)
    # The token is nowhere the page's scripts can read it.
    assert ADMIN_TOKEN not in tab.evaluate("document.cookie + JSON.stringify(localStorage) + location.href")

    # The map is drawn: the street zone's outline and the assets, not one flat colour.
    jump(tab, *at_m(0, 0), 14.6)
    canvas = shot(tab, "map-overview.png").crop((0, 0, VIEWPORT["width"] - 360, VIEWPORT["height"]))
    colours = canvas.getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 20, "the map canvas is blank"
    assert tab.locator("#legend li").count() >= 6  # class groups, zones, aggregates

    # A click on the lamp: its owner and maintainer, from the asset record.
    jump(tab, *at_m(0, 0), 18)
    click_at(tab, *at_m(0, 0))
    popup = tab.locator(".maplibregl-popup-content")
    popup.wait_for(timeout=10_000)
    assert "深圳供电局有限公司" in popup.inner_text()
    assert "坪山区照明设施养护中心" in popup.inner_text()
    assert "路灯" in popup.inner_text()
    shot(tab, "map-asset.png")

    # A click in the street far from every asset: the street office, as the fallback.
    jump(tab, *at_m(-600, -600), 17)
    click_at(tab, *at_m(-600, -600))
    tab.wait_for_selector("#result .resolution", timeout=10_000)
    result = tab.locator("#result").inner_text()
    assert "属地兜底" in result
    assert "坪山街道办事处" in result
    assert "坪山街道" in result
    shot(tab, "map-fallback.png")

    # A category chosen: its rule in the zone decides, and the chain says so.
    tab.select_option("#pick", "category:占道经营")
    click_at(tab, *at_m(-600, -600))
    tab.wait_for_function(
        "document.querySelector('#result').innerText.includes('综合执法局')", timeout=10_000
    )
    assert "责任规则" in tab.locator("#result").inner_text()
    tab.select_option("#pick", "")

    # A scanned label URL finds the cover and flies there.
    cover = dataset["cover"]
    tab.fill("#search", f"{base}/c/{cover.code}?s=AbCdEf")
    tab.click("#search-go")
    tab.wait_for_function(
        "document.querySelector('#result').innerText.includes('深圳市坪山区水务局')", timeout=10_000
    )
    tab.wait_for_function("!window.smartcodeMap.isMoving()", timeout=10_000)
    center = tab.evaluate("window.smartcodeMap.getCenter().toArray()")
    assert math.dist(center, at_m(60, 20)) < 1e-3

    # Coordinates copied from AMap (GCJ-02) resolve to the lamp there.
    glon, glat = (float(v[0]) for v in wgs84_to_gcj02([at_m(0, 0)[0]], [at_m(0, 0)[1]]))
    tab.fill("#coords", f"{glon:.7f}, {glat:.7f}")
    tab.select_option("#coords-crs", "gcj02")
    tab.click("#coords-go")
    tab.wait_for_function(
        "document.querySelector('#result .rule')?.innerText.includes('最近部件')", timeout=10_000
    )
    assert "深圳供电局有限公司" in tab.locator("#result").inner_text()

    assert log.foreign() == [], f"requests left the server: {log.foreign()}"
    assert not log.errors, (log.errors, log.failed)


def _post_complaint(base: str, lon: float, lat: float, category: str) -> str:
    """A located complaint filed through Open311 on the running server; its reference."""
    response = httpx.post(
        f"{base}/open311/v2/requests.json",
        data={"api_key": ADMIN_TOKEN, "service_code": category, "lat": f"{lat:.7f}", "long": f"{lon:.7f}"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()[0]["service_request_id"])


def rendered(page: Any, layer: str, prop: str) -> list[Any]:
    """A property of the features the map draws in ``layer`` (none while the layer is hidden)."""
    return list(
        page.evaluate(
            "([layer, prop]) => window.smartcodeMap.queryRenderedFeatures({layers: [layer]})"
            ".map((f) => f.properties[prop])",
            [layer, prop],
        )
    )


def hidden(page: Any, layer: str) -> None:
    """Wait until the map draws nothing of ``layer`` (after its toggle is cleared)."""
    page.wait_for_function(
        "(layer) => window.smartcodeMap.queryRenderedFeatures({layers: [layer]}).length === 0",
        arg=layer,
        timeout=10_000,
    )


def test_posted_complaints_and_their_hot_spot_show_on_the_map(
    page: tuple[Any, str, RequestLog], dataset: dict[str, Any]
) -> None:
    tab, base, log = page
    lone = _post_complaint(base, *at_m(-300, -250), "占道经营")
    for dx in (0, 10, 20):  # three of one category within 50 m: a 热点
        _post_complaint(base, *at_m(300 + dx, -250), "井盖破损")
    tab.goto(f"{base}/map/login")
    tab.fill("#token", ADMIN_TOKEN)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{base}/map")
    tab.wait_for_selector("body[data-map-ready]", state="attached", timeout=30_000)
    assert "诉求" in tab.locator("#legend").inner_text() and "热点" in tab.locator("#legend").inner_text()

    # The complaint is drawn, and a click shows its summary and then whom it was routed to.
    jump(tab, *at_m(-300, -250), 18)
    assert lone in rendered(tab, "complaints-point", "reference")
    click_at(tab, *at_m(-300, -250))
    popup = tab.locator(".maplibregl-popup-content")
    popup.wait_for(timeout=10_000)
    assert lone in popup.inner_text() and "占道经营" in popup.inner_text() and "已受理" in popup.inner_text()
    result_shows(tab, "责任单位")

    # Hidden with its toggle, shown again.
    tab.uncheck("#show-complaints")
    hidden(tab, "complaints-point")
    tab.check("#show-complaints")
    tab.wait_for_function(
        "(ref) => window.smartcodeMap.queryRenderedFeatures({layers: ['complaints-point']})"
        ".some((f) => f.properties.reference === ref)",
        arg=lone,
        timeout=10_000,
    )

    # The hot spot the three raised, centred on the third: a click shows the warning.
    jump(tab, *at_m(320, -250), 17)
    assert rendered(tab, "hotspots-halo", "kind") == ["place"]
    click_at(tab, *at_m(320, -250))
    result_shows(tab, "热点预警")
    assert (
        "井盖破损" in tab.locator("#result").inner_text()
        and "诉求数：3" in tab.locator("#result").inner_text()
    )
    shot(tab, "map-hotspot.png")
    tab.uncheck("#show-hotspots")
    hidden(tab, "hotspots-halo")

    assert log.foreign() == [], f"requests left the server: {log.foreign()}"
    assert not log.errors, (log.errors, log.failed)


def test_the_javascript_gcj02_port_matches_gis_crs_and_shifts_the_basemap_by_the_offset(
    page: tuple[Any, str, RequestLog],
) -> None:
    tab, base, _ = page
    tab.goto(f"{base}/map/login")
    points = [(114.3466, 22.6953), (114.05, 22.54), (116.39, 39.91), (87.6, 43.8), (2.35, 48.85)]
    got = tab.evaluate(
        """async (points) => {
            const crs = await import("/static/map/crs.js");
            return points.map(([lon, lat]) => ({
                gcj: crs.wgs84ToGcj02(lon, lat),
                back: crs.gcj02ToWgs84(...crs.wgs84ToGcj02(lon, lat)),
                bd: crs.toWgs84(...crs.gcj02ToBd09(...crs.wgs84ToGcj02(lon, lat)), "bd09"),
                shift: crs.gcjShiftPixels(16, 53584, 28523),
            }));
        }""",
        points,
    )
    for (lon, lat), answer in zip(points, got, strict=True):
        want = wgs84_to_gcj02([lon], [lat])
        assert answer["gcj"] == pytest.approx([float(want[0][0]), float(want[1][0])], abs=1e-11)
        assert answer["back"] == pytest.approx([lon, lat], abs=1e-8)
        assert answer["bd"] == pytest.approx([lon, lat], abs=1e-8)
    # In Pingshan a place's GCJ-02 coordinates lie about 580 m east-south-east of its WGS84 ones
    # (faces.md: 500-600 m): at zoom 16 (2.2 m per pixel at 22.7 N) the GCJ-02 server draws it that many
    # pixels right and down of its WGS84 pixel, and the shifted basemap takes its picture from there.
    dx, dy = got[0]["shift"]
    metres_per_px = 2 * math.pi * 6378137 * math.cos(math.radians(22.7)) / (256 * 2**16)
    assert 450 < math.hypot(dx, dy) * metres_per_px < 650
    assert dx > 0 and dy > 0


@contextmanager
def gcj02_tile_server(mark_lon: float, mark_lat: float) -> Iterator[str]:
    """A raster tile server in GCJ-02, like AMap's: plain tiles with a red dot at the GCJ-02 position
    of (mark_lon, mark_lat) WGS84; yields its XYZ template."""
    glon, glat = (float(v[0]) for v in wgs84_to_gcj02([mark_lon], [mark_lat]))

    class Tiles(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            z, x, y = (int(part) for part in self.path.strip("/").removesuffix(".png").split("/"))
            size = 256 * 2**z
            s = math.sin(math.radians(glat))
            px = (glon + 180) / 360 * size - x * 256
            py = (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * size - y * 256
            image = Image.new("RGB", (256, 256), (230, 230, 230))
            ImageDraw.Draw(image).ellipse((px - 6, py - 6, px + 6, py + 6), fill=(255, 0, 0))
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(buffer.getvalue())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def red_centre(image: Image.Image) -> tuple[float, float]:
    """The centre of the pure red pixels of a screenshot."""
    pixels = image.load()
    assert pixels is not None
    points = [
        (x, y)
        for y in range(image.height)
        for x in range(image.width)
        if pixels[x, y][0] > 200 > pixels[x, y][1] + pixels[x, y][2]
    ]
    assert points, "no red dot drawn: the basemap did not load"
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)


@pytest.mark.parametrize("crs", ["gcj02", "wgs84"])
def test_a_gcj02_basemap_is_shifted_under_the_wgs84_overlays(
    db: Engine, settings: Settings, migrated_url: str, dataset: dict[str, Any], crs: str
) -> None:
    from api.app import create_app

    lamp = at_m(0, 0)
    with gcj02_tile_server(*lamp) as template:
        configured = settings.model_copy(update={"map": MapSettings(basemap_url=template, basemap_crs=crs)})
        with serve(create_app(configured, url=migrated_url)) as base, chromium() as browser:
            tab = browser.new_context(viewport=VIEWPORT, locale="zh-CN").new_page()
            log = RequestLog(tab)
            tab.goto(f"{base}/map/login")
            tab.fill("#token", ADMIN_TOKEN)
            tab.click("button[type=submit]")
            tab.wait_for_selector("body[data-map-ready]", state="attached", timeout=30_000)
            for layer in ("assets-point", "mark"):
                tab.evaluate("(id) => window.smartcodeMap.setLayoutProperty(id, 'visibility', 'none')", layer)
            jump(tab, *lamp, 15)
            x, y = tab.evaluate(
                "(ll) => { const p = window.smartcodeMap.project(ll); return [p.x, p.y]; }", list(lamp)
            )
            if crs == "gcj02":
                image = shot(tab, "map-basemap-gcj02.png")
            else:
                image = Image.open(io.BytesIO(tab.screenshot())).convert("RGB")
            assert not log.errors, (log.errors, log.failed)
            dot = red_centre(image.crop((0, 0, VIEWPORT["width"] - 360, VIEWPORT["height"])))
            assert log.foreign() == []
    off = math.dist(dot, (x, y))
    if crs == "gcj02":
        # The dot AMap draws at the lamp's GCJ-02 position appears under the lamp's WGS84 position.
        assert off < 2, f"the shifted basemap is {off:.1f} px (2.2 m each) off"
    else:
        # Declared wgs84, the same tiles sit ~580 m (about 260 px at zoom 15 here) off: the shift matters.
        assert off > 200
