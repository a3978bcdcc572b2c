"""OGC API - Features read by a real client: GDAL's OAPIF driver (ogrinfo, ogr2ogr) against uvicorn."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shapely
import uvicorn
from sqlalchemy import Engine, text

from common.settings import Settings
from gis.area import ServiceArea
from registry import assets, zones
from registry.db import Actor, transaction
from registry.schemas import Decommission
from tests.conftest import ADMIN_TOKEN
from tests.helpers import COUNTY, make_asset, make_unit, point

pytestmark = pytest.mark.skipif(
    shutil.which("ogrinfo") is None, reason="GDAL's command-line tools (Debian gdal-bin) are not installed"
)
EPSG4547 = "http://www.opengis.net/def/crs/EPSG/0/4547"


class _Recorder:
    """ASGI wrapper noting each request's path and query, to see how a client pages."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests.append(scope["path"] + "?" + scope["query_string"].decode())
        await self.app(scope, receive, send)


@pytest.fixture
def server(db: Engine, settings: Settings, migrated_url: str) -> Iterator[tuple[str, _Recorder]]:
    """The app in uvicorn on 127.0.0.1 and a free port, in a thread, on the test database."""
    from api.app import create_app

    recorder = _Recorder(create_app(settings, url=migrated_url))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(recorder, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/ogc/", recorder
    finally:
        uv.should_exit = True
        thread.join(timeout=20)


def _gdal(*args: str, token: str | None = ADMIN_TOKEN, header_by: str = "env") -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GDAL_", "CPL_"))}
    command = list(args)
    if token is not None and header_by == "env":
        env["GDAL_HTTP_HEADERS"] = f"Authorization: Bearer {token}"
    elif token is not None:
        command[1:1] = ["--config", "GDAL_HTTP_HEADERS", f"Authorization: Bearer {token}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def _count(db: Engine, where: str = "true", **params: Any) -> int:
    with db.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM assets WHERE {where}"), params).scalar_one())


def _features(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["features"])


@pytest.fixture
def registry(db: Engine, admin: Actor) -> Engine:
    """23 lamps along a street west to east, two covers, and zones (one street in two generations)."""
    owner = make_unit(db, "深圳供电局有限公司", admin, phone="95598")
    for i in range(23):
        make_asset(db, admin, geometry=point(114.30 + i * 0.002, 22.68), owner_id=owner.id)
    for lon in (114.31, 114.35):
        make_asset(db, admin, "0101", geometry=point(lon, 22.681))
    # A street with two boundary generations (one in force) and a community.
    for name, box in (
        ("坪山街道", (114.29, 22.66, 114.33, 22.70)),
        ("坪山街道", (114.29, 22.66, 114.34, 22.70)),
        ("六和社区", (114.30, 22.67, 114.31, 22.68)),
    ):
        level = "street" if name.endswith("街道") else "community"
        with transaction(db) as session:
            zones.save_zone(
                session,
                admin,
                zones.ZoneInput(level=level, name=name, geometry=shapely.box(*box)),
                area=ServiceArea.from_settings(),
                county=COUNTY,
            )
    return db


def test_ogrinfo_lists_the_collections_and_counts_match(
    server: tuple[str, _Recorder], registry: Engine
) -> None:
    url, _ = server
    listing = _gdal("ogrinfo", "-ro", "-q", f"OAPIF:{url}")
    assert "assets" in listing and "zones" in listing
    summary = _gdal("ogrinfo", "-ro", "-so", f"OAPIF:{url}", "assets", header_by="config")
    assert f"Feature Count: {_count(registry)}" in summary
    assert "owner: String" in summary
    zone_summary = _gdal("ogrinfo", "-ro", "-so", f"OAPIF:{url}", "zones")
    with registry.connect() as conn:
        in_force = conn.execute(text("SELECT count(*) FROM zones WHERE valid_to IS NULL")).scalar_one()
    assert in_force == 2 and f"Feature Count: {in_force}" in zone_summary
    assert "Geometry: Multi Polygon" in zone_summary


def test_without_a_token_gdal_is_refused(server: tuple[str, _Recorder], registry: Engine) -> None:
    url, _ = server
    done = subprocess.run(
        ["ogrinfo", "-ro", "-so", f"OAPIF:{url}", "assets"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "401" in done.stderr or "bearer token" in done.stderr


def test_ogr2ogr_pulls_a_bbox_across_pages(
    server: tuple[str, _Recorder], registry: Engine, tmp_path: Path
) -> None:
    url, recorder = server
    out = tmp_path / "west.geojson"
    _gdal(
        "ogr2ogr", "-f", "GeoJSON", str(out), f"OAPIF:{url}", "assets",
        "-oo", "PAGE_SIZE=4", "-spat", "114.299", "22.67", "114.3205", "22.69",
    )  # fmt: skip
    expected = _count(registry, "ST_Intersects(geom, ST_MakeEnvelope(114.299, 22.67, 114.3205, 22.69, 4326))")
    got = _features(out)
    assert expected == 12 and len(got) == expected  # 11 lamps and one cover
    assert len({f["properties"]["code"] for f in got}) == expected
    pages = [r for r in recorder.requests if r.startswith("/ogc/collections/assets/items?") and "bbox=" in r]
    assert len(pages) >= 3  # 12 features, 4 to a page, followed by next links

    everything = tmp_path / "all.geojson"
    _gdal("ogr2ogr", "-f", "GeoJSON", str(everything), f"OAPIF:{url}", "assets", "-oo", "PAGE_SIZE=10")
    assert len(_features(everything)) == _count(registry) == 25


def test_gdal_reads_items_in_epsg_4547(
    server: tuple[str, _Recorder], registry: Engine, tmp_path: Path
) -> None:
    # GDAL 3.6's OAPIF driver predates Part 2 (its CRS open option came in 3.7), so the items URL with
    # crs= is read by GDAL's GeoJSON driver over HTTP, with the same header.
    url, _ = server
    out = tmp_path / "projected.geojson"
    items = f"{url}collections/assets/items?crs={EPSG4547}&limit=100&class=0118"
    _gdal("ogr2ogr", "-f", "GeoJSON", str(out), items)
    got = {f["properties"]["code"]: f["geometry"]["coordinates"] for f in _features(out)}
    with registry.connect() as conn:
        rows = conn.execute(
            text("SELECT code, ST_X(ST_Transform(geom, 4547)), ST_Y(ST_Transform(geom, 4547)) FROM assets")
        ).all()
    expected = {code: (x, y) for code, x, y in rows}
    assert len(got) == 23 == _count(registry, "class_code = '0118'")
    for code, (northing, easting) in got.items():  # EPSG:4547 axis order: northing, easting
        assert abs(easting - expected[code][0]) < 0.01 and abs(northing - expected[code][1]) < 0.01


def test_gdal_passes_datetime_and_class_through_the_url(
    server: tuple[str, _Recorder], registry: Engine, admin: Actor, tmp_path: Path
) -> None:
    # GDAL's OAPIF driver appends the query of the URL it was given to every request it makes.
    url, recorder = server
    with registry.connect() as conn:
        lamp, now = conn.execute(text("SELECT min(code), now() FROM assets WHERE class_code = '0118'")).one()
    with transaction(registry) as session:
        assets.decommission_asset(
            session, lamp, Decommission(version=1, at=now - dt.timedelta(days=1), reason="拆除"), admin
        )
    before = (now - dt.timedelta(days=2)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    after = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def count(query: str) -> int:
        out = tmp_path / f"pulled-{len(list(tmp_path.iterdir()))}.geojson"
        _gdal("ogr2ogr", "-f", "GeoJSON", str(out), f"OAPIF:{url}?{query}", "assets")
        return len(_features(out))

    assert count(f"datetime={before}") == 25
    assert count(f"datetime={after}") == 24  # the lamp was decommissioned yesterday
    assert count("class=0101") == _count(registry, "class_code = '0101'") == 2
    assert any("datetime=" in r for r in recorder.requests if r.startswith("/ogc/collections/assets/items"))
