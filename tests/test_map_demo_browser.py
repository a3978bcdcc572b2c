"""The issue's "done when" on the pilot demo, in a real headless browser.

The demo is loaded exactly as ``smartcode demo`` (what ``make demo`` runs) loads it: ``load_demo`` writes
the pilot's files and imports them through the importers into the test database. Then a dispatcher opens
``/map``, signs in, finds a street lamp by its typed code and by its scanned label URL (the map flies
there and opens its card), clicks a manhole cover with an owner and sees that owner, and clicks an
ownerless cover (无主井盖) and sees the rule that decided who answers for it. Every wait is on the map's
own state (idle, not moving) or on the page's text, never a sleep. Set
``SMARTCODE_MAP_SCREENSHOTS=docs/img`` to refresh the screenshots of each step in docs/map.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from common.settings import Settings
from importers.demo.load import DemoReport, load_demo
from importers.demo.world import unit_name
from registry.db import Actor
from tests.browser import RequestLog, chromium, serve
from tests.conftest import ADMIN_TOKEN
from tests.test_map_browser import VIEWPORT, click_at, jump, shot
from tests.test_scan import print_label

pytestmark = pytest.mark.slow

# The map's search and its card round positions to 6 decimals (0.1 m): "there" is within 1 m.
THERE_DEG = 1e-5


@pytest.fixture
def demo(db: Engine, settings: Settings, tmp_path: Path) -> DemoReport:
    """The default pilot, loaded as the run command loads it (same function, same importers)."""
    return load_demo(db, settings, folder=tmp_path / "demo")


@pytest.fixture
def session_page(db: Engine, settings: Settings, migrated_url: str) -> Iterator[tuple[Any, str, RequestLog]]:
    """A browser page on the served app, its base URL and its request log."""
    from api.app import create_app

    with serve(create_app(settings, url=migrated_url)) as base, chromium() as browser:
        context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
        tab = context.new_page()
        yield tab, base, RequestLog(tab)
        context.close()


def example(report: DemoReport, class_code: str, pilot: str | None = None) -> dict[str, Any]:
    """The demo's example asset of a class (and pilot zone), as ``smartcode demo`` prints it."""
    return next(
        e
        for e in report.examples
        if e["class"]["code"] == class_code and (pilot is None or e["pilot"] == pilot)
    )


def settled(page: Any) -> None:
    """Wait until the map has stopped moving and drawn every tile of the view."""
    page.evaluate(
        """() => new Promise((done) => {
            const map = window.smartcodeMap;
            if (!map.isMoving() && map.loaded() && map.areTilesLoaded()) done(true);
            else map.once("idle", () => done(true));
        })"""
    )


def card(page: Any) -> str:
    """The text of the open popup (the asset's card)."""
    popup = page.locator(".maplibregl-popup-content")
    popup.wait_for(timeout=10_000)
    return str(popup.inner_text())


def search_flies_to(page: Any, query: str, asset: dict[str, Any], owner: str) -> str:
    """Search ``query``; wait for the card naming ``owner`` and for the flight to end at the asset."""
    page.evaluate("document.querySelector('#result').replaceChildren()")
    page.fill("#search", query)
    page.click("#search-go")
    page.wait_for_function(
        "(text) => document.querySelector('#result').innerText.includes(text)", arg=owner, timeout=15_000
    )
    # The flight started before the card was filled in: wait for it to land and draw.
    page.wait_for_function("!window.smartcodeMap.isMoving()", timeout=15_000)
    settled(page)
    centre = page.evaluate("window.smartcodeMap.getCenter().toArray()")
    assert math.dist(centre, (asset["lon"], asset["lat"])) < THERE_DEG, (centre, asset)
    assert page.evaluate("window.smartcodeMap.getZoom()") >= 18
    return card(page)


def test_a_dispatcher_walks_the_pilot_demo(
    session_page: tuple[Any, str, RequestLog], demo: DemoReport, settings: Settings, db: Engine, admin: Actor
) -> None:
    tab, base, log = session_page
    lamp = example(demo, "0118")
    cover = example(demo, "0105")
    ownerless = example(demo, "0114", "坪山中心区")
    ownerless_village = example(demo, "0114", "坪环社区")
    assert cover["owner"] == unit_name("power")
    assert ownerless["owner"] is None

    # Sign in (the token is posted once, never in a URL).
    tab.goto(f"{base}/map")
    assert tab.url == f"{base}/map/login"
    tab.fill("#token", ADMIN_TOKEN)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{base}/map")
    tab.wait_for_selector("body[data-map-ready]", state="attached", timeout=30_000)

    # The pilot at a glance: roads of assets, zones, aggregates where they are dense.
    jump(tab, (lamp["lon"] + ownerless["lon"]) / 2, (lamp["lat"] + ownerless["lat"]) / 2, 14)
    canvas = shot(tab, "map-demo-overview.png").crop((0, 0, VIEWPORT["width"] - 360, VIEWPORT["height"]))
    assert len(canvas.getcolors(maxcolors=1_000_000) or []) > 20, "the map canvas is blank"

    # 1. A lamp by its code as a dispatcher types it (with dashes): the map flies there, card open.
    text = search_flies_to(tab, lamp["code_display"], lamp, unit_name("lighting"))
    assert lamp["code_display"] in text and "路灯" in text and unit_name("lighting") in text
    shot(tab, "map-demo-lamp.png")

    # 2. The same lamp from its printed label: the whole scanned URL, signature and all.
    label = print_label(db, settings, admin, lamp["code"], base_url=base)
    assert "/c/" in label.url and "s=" in label.url
    jump(tab, ownerless["lon"], ownerless["lat"], 15)
    text = search_flies_to(tab, label.url, lamp, unit_name("lighting"))
    assert lamp["code_display"] in text
    shot(tab, "map-demo-label.png")

    # 3. A click on a power manhole cover (电力井盖): its registered owner, from the asset record.
    jump(tab, cover["lon"], cover["lat"], 20)
    click_at(tab, cover["lon"], cover["lat"])
    tab.wait_for_function(
        "(code) => document.querySelector('#result').innerText.includes(code)",
        arg=cover["code_display"],
        timeout=10_000,
    )
    text = card(tab)
    assert cover["code_display"] in text and unit_name("power") in text and "井盖" in text
    assert "按规则判定" not in text  # an owner is registered: no rule is needed
    shot(tab, "map-demo-cover.png")

    # 4. A click on an ownerless cover in 坪山中心区: no owner registered, and the rule that decided
    # (the pilot's 职责清单 rule for 无主井盖), with the resolver's steps.
    jump(tab, ownerless["lon"], ownerless["lat"], 20)
    click_at(tab, ownerless["lon"], ownerless["lat"])
    tab.wait_for_selector(".maplibregl-popup-content .resolution", timeout=10_000)
    text = card(tab)
    assert ownerless["code_display"] in text and "无主井盖" in text
    assert "权属单位：未登记" in text.replace("\n", "")
    assert "未登记权属，按规则判定" in text
    assert "依据：责任规则" in text
    assert unit_name("so_pingshan") in text and "坪山中心区" in text
    # The side panel has the rule chain step by step: no owner registered, then the pilot's rule.
    steps = tab.locator("#result .explanation").inner_text()
    assert "无主" in steps and "职责清单" in steps and "坪山中心区" in steps
    # The card is taller than half the map: pan the cover down so the whole card shows above it.
    tab.evaluate("window.smartcodeMap.panBy([0, -260], {animate: false})")
    settled(tab)
    shot(tab, "map-demo-ownerless.png")

    # ... and one in 坪环社区, where no rule claims it: the street office by jurisdiction (属地兜底).
    jump(tab, ownerless_village["lon"], ownerless_village["lat"], 20)
    click_at(tab, ownerless_village["lon"], ownerless_village["lat"])
    tab.wait_for_function(
        "(code) => document.querySelector('#result .resolution') && "
        "document.querySelector('#result').innerText.includes(code)",
        arg=ownerless_village["code_display"],
        timeout=10_000,
    )
    text = card(tab)
    assert "属地兜底" in text and unit_name("so_pingshan") in text

    assert log.foreign() == [], f"requests left the server: {log.foreign()}"
    assert not log.errors, (log.errors, log.failed)
