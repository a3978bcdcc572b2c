"""The scan page in a real headless browser: Debian's chromium driven by Playwright.

The app runs under uvicorn on 127.0.0.1 (a secure context for the Geolocation API) against the test
database. The URL comes from a label printed through the API (PNG), decoded with zxing-cpp. Set
``SMARTCODE_SCAN_SCREENSHOT=docs/img/scan-page.png`` to refresh the screenshot in the docs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from PIL import Image
from sqlalchemy import Engine, text

from common.settings import LabelSettings, Settings
from registry.db import Actor
from tests.conftest import ADMIN_TOKEN
from tests.helpers import PINGSHAN, make_asset, make_unit
from tests.test_resolve import at_m, pt
from tests.test_scan import print_label

pytestmark = pytest.mark.slow

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(db: Engine, settings: Settings, migrated_url: str) -> Iterator[str]:
    """The real app served by uvicorn in a thread; yields its base URL."""
    from api.app import create_app

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    # Labels printed by this server point at it, so the URL a phone decodes opens this server.
    labels = LabelSettings(key_file=settings.labels.key_file, public_base_url=base)
    app = create_app(settings.model_copy(update={"labels": labels}), url=migrated_url)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield base
    finally:
        srv.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless chromium from the system (``playwright install`` cannot download here)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run scripts/setup.sh (it installs chromium and fonts-noto-cjk)")
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--lang=zh-CN"], headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _print_and_decode(server: str, code: str) -> str:
    """Print the asset's label as a PNG through the API; its QR read with a real decoder, as a phone would."""
    import zxingcpp

    request = urllib.request.Request(
        f"{server}/api/v1/labels",
        data=json.dumps({"codes": [code], "format": "png", "single": True}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        image = Image.open(io.BytesIO(response.read()))
    (result,) = zxingcpp.read_barcodes(image)
    return str(result.text)


def _png(path: Path) -> Path:
    Image.new("RGB", (64, 48), (200, 60, 40)).save(path, "PNG")
    return path


@pytest.fixture
def lamp(db: Engine, admin: Actor) -> Any:
    """A street lamp 3 m east of PINGSHAN with owner, maintainer and supervisor."""
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    crew = make_unit(db, "坪山区照明设施养护中心", admin, kind="contractor", phone="0755-84630000")
    bureau = make_unit(db, "坪山区城市管理和综合执法局", admin, kind="government", phone="12345")
    return make_asset(
        db, admin, owner_id=power.id, maintainer_id=crew.id, supervisor_id=bureau.id, geometry=pt(3)
    )


def test_scan_a_label_see_the_verdict_and_report_with_a_photo(
    server: str,
    browser: Any,
    db: Engine,
    settings: Settings,
    admin: Actor,
    lamp: Any,
    tmp_path: Path,
) -> None:
    url = _print_and_decode(server, lamp.code)
    assert url.startswith(f"{server}/c/{lamp.code}?s=")

    context = browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        locale="zh-CN",
        geolocation={"latitude": PINGSHAN[1], "longitude": PINGSHAN[0], "accuracy": 8},
    )
    context.grant_permissions(["geolocation"], origin=server)
    page = context.new_page()
    page.goto(url)
    main = page.locator("main")
    assert main.get_attribute("data-label-status") == "valid"
    assert page.locator("#verdict").inner_text() == "标签有效"
    assert page.locator(".unit-owner").inner_text() == "深圳供电局有限公司"
    assert page.locator("a.tel").first.get_attribute("href") == "tel:95598"
    # The script fills the position and shows the distance to the registered one (about 3 m).
    page.wait_for_function("document.getElementById('where').dataset.distance !== undefined")
    assert int(page.locator("#where").get_attribute("data-distance") or "-1") <= 5
    assert page.locator("#far").is_hidden()
    shot = os.environ.get("SMARTCODE_SCAN_SCREENSHOT")
    page.screenshot(path=shot or str(tmp_path / "scan-page.png"), full_page=True)

    page.select_option("#category", "路灯不亮")
    page.fill("#description", "整晚不亮，已经三天")
    page.set_input_files("#photo", str(_png(tmp_path / "lamp.png")))
    page.click("#submit")
    page.wait_for_selector("#reference")
    reference = page.locator("#reference").inner_text()
    assert reference.startswith("SC-")
    assert "深圳供电局有限公司" in page.locator("main").inner_text()
    context.close()

    with db.connect() as conn:
        row = conn.execute(
            text(
                "SELECT c.asset_code, c.category, c.description, c.label_status, c.accuracy_m, c.distance_m, "
                "c.owner_id, c.status, (SELECT count(*) FROM complaint_photos p WHERE p.complaint_id = c.id) "
                "FROM complaints c WHERE c.reference = :r"
            ),
            {"r": reference},
        ).one()
    assert row[:4] == (lamp.code, "路灯不亮", "整晚不亮，已经三天", "valid")
    assert row[4] == 8 and row[5] == pytest.approx(3, abs=1) and row[6] == lamp.owner_id
    assert row[7] == "received" and row[8] == 1


def test_far_from_the_registered_position_warns(
    server: str, browser: Any, db: Engine, settings: Settings, admin: Actor, lamp: Any
) -> None:
    label = print_label(db, settings, admin, lamp.code, base_url=server)
    lon, lat = at_m(200, 0)
    context = browser.new_context(
        viewport=PHONE, locale="zh-CN", geolocation={"latitude": lat, "longitude": lon}
    )
    context.grant_permissions(["geolocation"], origin=server)
    page = context.new_page()
    page.goto(label.url)
    page.wait_for_function("document.getElementById('where').dataset.distance !== undefined")
    assert page.locator("#far").is_visible()
    # The warning is itself worth reporting: the category is chosen for the person.
    assert page.locator("#category").input_value() == "位置与登记不符"
    context.close()


def test_without_javascript_the_form_still_posts(server: str, browser: Any, db: Engine, lamp: Any) -> None:
    context = browser.new_context(viewport=PHONE, locale="zh-CN", java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{server}/c/{lamp.code}")  # a typed code: no signature
    assert page.locator("main").get_attribute("data-label-status") == "unsigned"
    assert page.locator("#locate").is_hidden()
    page.select_option("#category", "路灯不亮")
    page.fill("#description", "灯罩脱落")
    page.click("#submit")
    page.wait_for_selector("#reference")
    reference = page.locator("#reference").inner_text()
    context.close()
    with db.connect() as conn:
        row = conn.execute(
            text("SELECT geom IS NULL, label_status, description FROM complaints WHERE reference = :r"),
            {"r": reference},
        ).one()
    assert tuple(row) == (True, "unsigned", "灯罩脱落")


def test_demo_walkthrough_print_scan_report_find(
    server: str, browser: Any, db: Engine, settings: Settings, tmp_path: Path
) -> None:
    # The "done when": print a sheet for a zone of the demo, decode a label, open it in the
    # browser, see the owner and the verdict, report a problem, and find the complaint.
    import pypdfium2
    import zxingcpp

    from importers.demo.load import load_demo

    load_demo(db, settings, folder=tmp_path / "demo")
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    request = urllib.request.Request(
        f"{server}/api/v1/labels",
        data=json.dumps({"zone": "坪山中心区", "classes": ["0118"], "format": "pdf"}).encode(),
        headers=auth,
    )
    with urllib.request.urlopen(request) as response:
        sheet = pypdfium2.PdfDocument(response.read())
    image = sheet[0].render(scale=200 / 72, grayscale=True).to_pil()
    urls = [found.text for found in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]
    assert len(urls) >= 3 and all(u.startswith(f"{server}/c/") for u in urls)
    url = urls[0]
    code = url.split("/c/")[1].split("?")[0]
    with db.connect() as conn:
        owner, lon, lat = conn.execute(
            text(
                "SELECT u.name, ST_X(ST_PointOnSurface(a.geom)), ST_Y(ST_PointOnSurface(a.geom)) "
                "FROM assets a JOIN units u ON u.id = a.owner_id WHERE a.code = :c"
            ),
            {"c": code},
        ).one()

    context = browser.new_context(
        viewport=PHONE, locale="zh-CN", geolocation={"latitude": lat, "longitude": lon, "accuracy": 10}
    )
    context.grant_permissions(["geolocation"], origin=server)
    page = context.new_page()
    page.goto(url)
    assert page.locator("main").get_attribute("data-label-status") == "valid"
    assert page.locator(".unit-owner").inner_text() == owner
    page.wait_for_function("document.getElementById('where').dataset.distance !== undefined")
    page.select_option("#category", "路灯不亮")
    page.fill("#description", "路灯白天亮着")
    page.click("#submit")
    page.wait_for_selector("#reference")
    reference = page.locator("#reference").inner_text()
    context.close()

    listing = urllib.request.Request(f"{server}/api/v1/assets/{code}/complaints", headers=auth)
    with urllib.request.urlopen(listing) as response:
        items = json.loads(response.read())["items"]
    assert [i["reference"] for i in items] == [reference]
    assert items[0]["resolution"]["owner"]["name"] == owner and items[0]["label_status"] == "valid"
    assert items[0]["distance_m"] is not None and items[0]["distance_m"] < 1
