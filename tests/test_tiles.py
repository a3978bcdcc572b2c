"""Vector tiles: every asset accounted for at every zoom, ETags that change exactly where an edit is."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from common.settings import Settings, TileSettings
from registry.db import Actor
from tests.conftest import ADMIN_TOKEN
from tests.helpers import PINGSHAN, make_asset, make_unit, point
from tests.mvt import decode

# A crowded corner (more assets than the test's budget even in a tile of zoom 18) and a quiet one
# about 6 km away.
CROWD = PINGSHAN
QUIET = (114.40, 22.72)
BUDGET = 5


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    """The tile of zoom ``z`` holding a WGS84 point."""
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return z, x, y


@pytest.fixture
def tiles_client(db: Engine, settings: Settings, migrated_url: str) -> Iterator[TestClient]:
    """The app with a feature budget of 5, so that a handful of assets is a crowd."""
    from api.app import create_app

    small = settings.model_copy(update={"tiles": TileSettings(feature_budget=BUDGET)})
    with TestClient(create_app(small, url=migrated_url)) as test_client:
        yield test_client


@pytest.fixture
def owners(db: Engine, admin: Actor) -> dict[str, int]:
    """30 assets within 25 m of CROWD (two owners, a third without), 3 at QUIET; the owners' unit ids."""
    rng = random.Random(14)
    power = make_unit(db, "坪山供电局", admin).id
    water = make_unit(db, "坪山水务所", admin).id
    for i in range(30):
        lon = CROWD[0] + rng.uniform(-0.0002, 0.0002)
        lat = CROWD[1] + rng.uniform(-0.0002, 0.0002)
        owner = (power, water, None)[i % 3]
        make_asset(db, admin, ("0118", "0114")[i % 2], geometry=point(lon, lat), owner_id=owner)
    for i in range(3):
        make_asset(db, admin, "0118", geometry=point(QUIET[0] + i * 0.0001, QUIET[1]), owner_id=power)
    return {"power": power, "water": water}


def anchored_in(db: Engine, z: int, x: int, y: int) -> int:
    """Assets in use whose point lies in the tile (half-open, as the tiles count them)."""
    with db.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM assets a, ST_TileEnvelope(:z, :x, :y) e, "
                    "LATERAL ST_Transform(a.geom, 3857) p WHERE a.in_use "
                    "AND ST_X(p) >= ST_XMin(e) AND ST_X(p) < ST_XMax(e) "
                    "AND ST_Y(p) > ST_YMin(e) AND ST_Y(p) <= ST_YMax(e)"
                ),
                {"z": z, "x": x, "y": y},
            ).scalar_one()
        )


def get_tile(client: TestClient, auth: dict[str, str], tile: tuple[int, int, int]) -> bytes:
    """The tile's bytes (asserting a 200)."""
    z, x, y = tile
    response = client.get(f"/tiles/{z}/{x}/{y}.mvt", headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    return response.content


@pytest.mark.parametrize(
    ("where", "z", "mode"),
    [
        (CROWD, 6, "cells"),  # the whole county in one cell, from the counts kept at zoom 12
        (CROWD, 10, "cells"),  # cells from the counts kept at zoom 14
        (CROWD, 12, "cells"),  # cells from the count table
        (CROWD, 16, "cells"),  # the deepest zoom the count table answers
        (CROWD, 18, "cells"),  # deeper: counted live
        (QUIET, 16, "features"),
        (QUIET, 12, "cells"),
    ],
)
def test_every_asset_in_a_tile_is_a_feature_or_counted_in_a_cell(
    tiles_client: TestClient,
    auth: dict[str, str],
    db: Engine,
    admin: Actor,
    owners: dict[str, int],
    where: tuple[float, float],
    z: int,
    mode: str,
) -> None:
    """Points + cell counts = the assets in use in the tile's bounds, at low and high zoom."""
    gone = make_asset(db, admin, "0118", geometry=point(*where))
    tiles_client.post(
        f"/api/v1/assets/{gone.code}/decommission", json={"version": 1, "reason": "拆除测试"}, headers=auth
    ).raise_for_status()
    tile = tile_of(*where, z)
    layers = decode(get_tile(tiles_client, auth, tile))
    expected = anchored_in(db, *tile)
    assert expected > BUDGET if mode == "cells" else 3 <= expected <= BUDGET
    features = layers["assets"].features if "assets" in layers else []
    inside = [f for f in features if 0 <= f.first[0] < 4096 and 0 <= f.first[1] < 4096]
    cells = layers["asset_cells"].features if "asset_cells" in layers else []
    assert len(inside) + sum(c.properties["count"] for c in cells) == expected
    if mode == "features":
        assert not cells and len(inside) == expected
        first = inside[0].properties
        assert first["class"] == "0118" and first["state"] == "完好" and first["owner"] == "坪山供电局"
        assert len(first["code"]) == 17
    else:
        assert cells and not features
        for cell in cells:
            classes = json.loads(cell.properties["classes"])
            assert sum(classes.values()) == cell.properties["count"]
            top = json.loads(cell.properties["top_owners"])
            assert {name for name, _ in top} <= {"坪山供电局", "坪山水务所", "无主"}
            assert len(top) == min(3, cell.properties["owners"])


def test_tiles_need_a_token_and_name_real_tiles(tiles_client: TestClient, auth: dict[str, str]) -> None:
    """Positions are not public; a tile outside the zoom's grid is a 404."""
    assert tiles_client.get("/tiles/12/3349/1782.mvt").status_code == 401
    assert tiles_client.get("/tiles/3/8/0.mvt", headers=auth).status_code == 404
    assert tiles_client.get("/tiles/30/0/0.mvt", headers=auth).status_code == 404


def test_tilejson_describes_the_layers(tiles_client: TestClient) -> None:
    """TileJSON 3.0.0: the URL template, zooms, layers and their fields, the service area."""
    response = tiles_client.get("/tiles/tiles.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"] == ["http://testserver/tiles/{z}/{x}/{y}.mvt"]
    layers = {layer["id"]: layer for layer in doc["vector_layers"]}
    assert set(layers) == {"assets", "asset_cells", "zones", "complaints", "complaint_cells", "hotspots"}
    assert set(layers["complaints"]["fields"]) >= {"reference", "category", "status", "received_at"}
    assert set(layers["hotspots"]["fields"]) >= {"kind", "count", "state"}
    assert set(layers["assets"]["fields"]) == {"code", "class", "state", "owner"}
    assert set(layers["asset_cells"]["fields"]) >= {"count", "classes", "top_owners"}
    west, south, east, north = doc["bounds"]
    assert west < CROWD[0] < east and south < CROWD[1] < north


def test_an_edit_changes_the_etag_of_its_tiles_only(
    tiles_client: TestClient, auth: dict[str, str], db: Engine, owners: dict[str, int]
) -> None:
    """304 while nothing changed; a move, a hand-over, a zone change tile A's ETag, never far tile B's."""
    a, b = tile_of(*QUIET, 16), tile_of(*CROWD, 16)

    def etag(tile: tuple[int, int, int]) -> str:
        z, x, y = tile
        response = tiles_client.get(f"/tiles/{z}/{x}/{y}.mvt", headers=auth)
        assert response.status_code == 200 and response.headers["cache-control"].startswith(
            "private, max-age="
        )
        return response.headers["etag"]

    def revalidate(tile: tuple[int, int, int], tag: str) -> int:
        z, x, y = tile
        return tiles_client.get(f"/tiles/{z}/{x}/{y}.mvt", headers={**auth, "If-None-Match": tag}).status_code

    a0, b0 = etag(a), etag(b)
    assert revalidate(a, a0) == 304 and revalidate(b, b0) == 304
    assert revalidate(a, '"other", W/' + a0) == 304 and revalidate(a, "*") == 304

    with db.connect() as conn:
        code = conn.execute(
            text("SELECT code FROM assets WHERE ST_X(geom) >= :lon ORDER BY code LIMIT 1"), {"lon": QUIET[0]}
        ).scalar_one()
    # Moved by 20 m within tile A.
    moved = tiles_client.patch(
        f"/api/v1/assets/{code}",
        json={"version": 1, "geometry": point(QUIET[0] + 0.0002, QUIET[1]), "reason": "复测"},
        headers=auth,
    )
    assert moved.status_code == 200, moved.text
    a1 = etag(a)
    assert a1 != a0 and revalidate(a, a0) == 200
    assert etag(b) == b0 and revalidate(b, b0) == 304
    # A description that the tile does not show changes nothing.
    noted = tiles_client.patch(
        f"/api/v1/assets/{code}", json={"version": 2, "note": "灯杆编号模糊"}, headers=auth
    )
    assert noted.status_code == 200, noted.text
    assert etag(a) == a1
    # A hand-over changes the owner shown.
    handed = tiles_client.post(
        f"/api/v1/assets/{code}/units",
        json={"version": 3, "owner_id": owners["water"], "reason": "移交水务所"},
        headers=auth,
    )
    assert handed.status_code == 200, handed.text
    a2 = etag(a)
    assert a2 != a1 and etag(b) == b0
    feature = next(
        f for f in decode(get_tile(tiles_client, auth, a))["assets"].features if f.properties["code"] == code
    )
    assert feature.properties["owner"] == "坪山水务所"
    # A new zone over tile A only.
    lon, lat = QUIET
    square = [[lon - 0.001, lat - 0.001], [lon + 0.001, lat - 0.001], [lon + 0.001, lat + 0.001],
              [lon - 0.001, lat + 0.001], [lon - 0.001, lat - 0.001]]  # fmt: skip
    zone = tiles_client.post(
        "/api/v1/zones",
        json={"level": "grid", "name": "测试网格", "geometry": {"type": "Polygon", "coordinates": [square]}},
        headers=auth,
    )
    assert zone.status_code == 201, zone.text
    assert etag(a) != a2 and etag(b) == b0
    zones = decode(get_tile(tiles_client, auth, a))["zones"].features
    assert [f.properties["name"] for f in zones] == ["测试网格"]


def test_counts_follow_every_write(
    tiles_client: TestClient, auth: dict[str, str], db: Engine, owners: dict[str, int]
) -> None:
    """The count table equals a recount after moves, hand-overs and decommissioning."""
    with db.connect() as conn:
        codes = (
            conn.execute(
                text("SELECT code FROM assets WHERE owner_id = :power ORDER BY code LIMIT 4"),
                {"power": owners["power"]},
            )
            .scalars()
            .all()
        )
    far = point(QUIET[0] + 0.01, QUIET[1] + 0.01)
    steps = [
        ("patch", codes[0], {"version": 1, "geometry": far}),
        ("units", codes[1], {"version": 1, "owner_id": owners["water"], "reason": "移交"}),
        ("units", codes[2], {"version": 1, "owner_id": None, "reason": "权属待查"}),
        ("decommission", codes[3], {"version": 1, "reason": "拆除"}),
    ]
    for kind, code, body in steps:
        if kind == "patch":
            response = tiles_client.patch(f"/api/v1/assets/{code}", json=body, headers=auth)
        else:
            response = tiles_client.post(f"/api/v1/assets/{code}/{kind}", json=body, headers=auth)
        assert response.status_code == 200, response.text
    query = (
        "SELECT z, cx, cy, class_code, owner_id, n FROM asset_tile_counts WHERE n <> 0 ORDER BY 1, 2, 3, 4, 5"
    )
    with db.begin() as conn:
        kept = conn.execute(text(query)).all()
        conn.execute(text("SELECT smartcode_tile_counts_rebuild()"))
        recounted = conn.execute(text(query)).all()
    assert kept == recounted
    assert {row.z for row in kept} == {12, 14, 16}
    assert all(sum(row.n for row in kept if row.z == z) == 33 - 1 for z in (12, 14, 16))


def test_a_bulk_write_is_recounted_by_the_next_tile(
    tiles_client: TestClient, auth: dict[str, str], db: Engine, owners: dict[str, int]
) -> None:
    """A statement over the bulk threshold marks the counts stale; the next tile recounts, nothing is lost."""
    crowd = tile_of(*CROWD, 12)
    before = tiles_client.get("/tiles/{}/{}/{}.mvt".format(*crowd), headers=auth).headers["etag"]
    with db.begin() as conn:
        conn.execute(text("SET LOCAL smartcode.tile_bulk_rows = '2'"))
        conn.execute(
            text("UPDATE assets SET owner_id = :water WHERE owner_id = :power"),
            {"water": owners["water"], "power": owners["power"]},
        )
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM asset_tile_counts_stale")).scalar_one() == 1
    layers = decode(get_tile(tiles_client, auth, crowd))
    cells = layers["asset_cells"].features
    assert sum(c.properties["count"] for c in cells) == anchored_in(db, *crowd)
    owners = {name for c in cells for name, _ in json.loads(c.properties["top_owners"])}
    assert "坪山供电局" not in owners and "坪山水务所" in owners
    assert tiles_client.get("/tiles/{}/{}/{}.mvt".format(*crowd), headers=auth).headers["etag"] != before
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM asset_tile_counts_stale")).scalar_one() == 0


def test_an_import_shows_in_its_tiles_only(
    tiles_client: TestClient,
    auth: dict[str, str],
    db: Engine,
    settings: Settings,
    owners: dict[str, int],
    tmp_path: Path,
) -> None:
    """Two lamps imported at QUIET: its tile's ETag changes and it shows them; CROWD's tile does not."""
    from importers.pipeline import ImportOptions, run_import

    quiet, crowd = tile_of(*QUIET, 16), tile_of(*CROWD, 16)

    def etag(tile: tuple[int, int, int]) -> str:
        return str(tiles_client.get("/tiles/{}/{}/{}.mvt".format(*tile), headers=auth).headers["etag"])

    before_quiet, before_crowd = etag(quiet), etag(crowd)
    lamps = [
        {
            "type": "Feature",
            "properties": {"OBJCODE": "", "OBJNAME": "路灯", "DEPTNAME2": "坪山供电局", "OBJSTATE": "完好"},
            "geometry": {"type": "Point", "coordinates": [QUIET[0] + 0.0003 + i * 0.0001, QUIET[1] + 0.0002]},
        }
        for i in range(2)
    ]
    path = tmp_path / "lamps.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": lamps}, ensure_ascii=False), "utf-8")
    report = run_import(db, path, Actor(name="test-admin", admin=True), settings, ImportOptions())
    assert report.created == 2, report.problems
    assert etag(quiet) != before_quiet and etag(crowd) == before_crowd
    features = decode(get_tile(tiles_client, auth, quiet))["assets"].features
    inside = [f for f in features if 0 <= f.first[0] < 4096 and 0 <= f.first[1] < 4096]
    assert len(inside) == anchored_in(db, *quiet) == BUDGET


@pytest.fixture
def bulk_rows(owner_engine: Engine) -> Iterator[int]:
    """A bulk-write threshold of 5 rows for new connections (the app's), so a dozen lamps is a big import."""
    with owner_engine.connect() as conn:
        name = conn.execute(text("SELECT current_database()")).scalar_one()
    with owner_engine.begin() as conn:
        conn.execute(text(f"ALTER DATABASE \"{name}\" SET smartcode.tile_bulk_rows = '5'"))
    try:
        yield 5
    finally:
        with owner_engine.begin() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" RESET smartcode.tile_bulk_rows'))


def test_an_import_job_recounts_the_aggregates_before_any_tile_asks(
    bulk_rows: int,
    tiles_client: TestClient,
    auth: dict[str, str],
    db: Engine,
    owners: dict[str, int],
    tmp_path: Path,
) -> None:
    """A bulk import through the API's job leaves fresh counts: a low-zoom tile counts the new lamps."""
    from tests.test_import_api import upload, wait
    from tests.test_import_pipeline import lamp, write_geojson

    low = tile_of(*QUIET, 10)
    cells = decode(get_tile(tiles_client, auth, low))["asset_cells"].features
    before = sum(c.properties["count"] for c in cells)
    assert before == anchored_in(db, *low) == 33
    lamps = [lamp(QUIET[0] + 0.0005 + i * 0.0001, QUIET[1] - 0.0004) for i in range(12)]
    queued = upload(tiles_client, auth, write_geojson(tmp_path / "lamps.geojson", lamps))
    assert queued.status_code == 202, queued.text
    job = wait(tiles_client, auth, queued.json()["id"])
    assert job["status"] == "committed" and job["report"]["counts"]["created"] == 12, job

    # The import's one statement of 12 rows was a bulk write, and the job recounted after it: no tile
    # has been asked since, yet the stored counts of every kept zoom hold the new lamps.
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM asset_tile_counts_stale")).scalar_one() == 0
        kept = conn.execute(text("SELECT z, sum(n) FROM asset_tile_counts GROUP BY z")).all()
    assert {z: n for z, n in kept} == {12: 45, 14: 45, 16: 45}
    assert any("map tile counts recounted after the bulk import" in n for n in job["report"]["notes"])

    cells = decode(get_tile(tiles_client, auth, low))["asset_cells"].features
    assert sum(c.properties["count"] for c in cells) == anchored_in(db, *low) == 45


def _etag(
    client: TestClient, auth: dict[str, str], tile: tuple[int, int, int], tag: str | None = None
) -> Any:
    """The tile's response, revalidating ``tag`` when given."""
    headers = auth if tag is None else {**auth, "If-None-Match": tag}
    return client.get("/tiles/{}/{}/{}.mvt".format(*tile), headers=headers)


def _changes(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM tile_changes")).scalar_one())


def _age_changes(db: Engine) -> None:
    """Make every row of tile_changes two days old."""
    with db.begin() as conn:
        conn.execute(text("UPDATE tile_changes SET at = at - interval '2 days'"))


def _compact(db: Engine) -> tuple[int, int]:
    from registry.db import transaction
    from registry.tiles import compact_changes

    with transaction(db) as session:
        return compact_changes(session, 86_400)


def test_compacting_the_change_log_keeps_every_etag_honest(
    tiles_client: TestClient, auth: dict[str, str], db: Engine, admin: Actor
) -> None:
    """Old rows fold into one per region: a tile they touched never gets back an ETag it had before
    (an empty tile cached before the edits is fetched again), a tile they did not touch keeps its own."""
    far = (114.45, 22.65)
    busy, lone = tile_of(*QUIET, 16), tile_of(*far, 16)
    with db.begin() as conn:  # a fresh log, as in a new database (emptying the registry logged a change)
        conn.execute(text("DELETE FROM tile_changes"))
    empty = _etag(tiles_client, auth, busy)
    assert empty.status_code == 200 and not decode(empty.content).get("assets")
    for i in range(4):  # four statements: four rows in QUIET's region
        make_asset(db, admin, "0118", geometry=point(QUIET[0] + i * 0.0001, QUIET[1]))
    make_asset(db, admin, "0118", geometry=point(*far))  # one row in its own region
    busy_before, lone_before = _etag(tiles_client, auth, busy), _etag(tiles_client, auth, lone)
    assert _changes(db) == 5

    _age_changes(db)
    assert _compact(db) == (4, 1)
    assert _changes(db) == 2  # QUIET's folded row and the lone one

    # The busy tile: a new ETag, never one of its earlier ones. Merely deleting the old rows would give
    # it the empty tile's ETag back, and a copy cached before the edits would be declared current.
    now = _etag(tiles_client, auth, busy)
    history = {empty.headers["etag"], busy_before.headers["etag"]}
    assert now.headers["etag"] not in history
    for old in history:
        assert _etag(tiles_client, auth, busy, old).status_code == 200
    assert len(decode(now.content)["assets"].features) == anchored_in(db, *busy) == 4
    # The lone asset's tile met no folded row: its ETag stands, its cached copy is still good.
    assert _etag(tiles_client, auth, lone, lone_before.headers["etag"]).status_code == 304

    # Nothing left to fold: a second run changes nothing, not even an ETag.
    assert _compact(db) == (0, 0)
    assert _etag(tiles_client, auth, busy, now.headers["etag"]).status_code == 304
    # An edit after the fold changes its tile's ETag; its row is recent and stays as written.
    make_asset(db, admin, "0114", geometry=point(QUIET[0], QUIET[1] + 0.0001))
    assert _etag(tiles_client, auth, busy, now.headers["etag"]).status_code == 200
    assert _compact(db) == (0, 0) and _changes(db) == 3
    assert _etag(tiles_client, auth, lone, lone_before.headers["etag"]).status_code == 304


def test_the_server_worker_compacts_the_change_log_on_its_schedule(
    db: Engine, settings: Settings, migrated_url: str, admin: Actor
) -> None:
    """With SMARTCODE_TILES_COMPACT_EVERY_S set, the import worker folds old rows between jobs."""
    import time

    from api.app import create_app

    base = _changes(db)  # emptying the registry logged one change, over the whole world
    for i in range(6):
        make_asset(db, admin, "0118", geometry=point(QUIET[0] + i * 0.0001, QUIET[1]))
    _age_changes(db)
    assert _changes(db) == base + 6
    tiles_settings = TileSettings(compact_every_s=3600, compact_after_s=86_400)
    with TestClient(create_app(settings.model_copy(update={"tiles": tiles_settings}), url=migrated_url)):
        deadline = time.monotonic() + 20
        while _changes(db) != base + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert _changes(db) == base + 1

    # Switched off (0), nothing is folded.
    for i in range(3):
        make_asset(db, admin, "0118", geometry=point(QUIET[0] + i * 0.0001, QUIET[1] + 0.0002))
    _age_changes(db)
    off = TileSettings(compact_every_s=0)
    app = create_app(settings.model_copy(update={"tiles": off}), url=migrated_url)
    app.state.import_jobs.worker.on_idle()  # what the worker runs between jobs
    app.state.services.engine.dispose()
    assert _changes(db) == base + 4


def _complain(client: TestClient, lon: float, lat: float, category: str = "井盖破损") -> str:
    """A located complaint posted by Open311 with the administrator token; its reference."""
    response = client.post(
        "/open311/v2/requests.json",
        data={"api_key": ADMIN_TOKEN, "service_code": category, "lat": str(lat), "long": str(lon)},
    )
    assert response.status_code == 200, response.text
    return str(response.json()[0]["service_request_id"])


def test_a_complaint_shows_in_its_tile_and_changes_only_its_etag(
    tiles_client: TestClient, auth: dict[str, str], db: Engine, owners: dict[str, int]
) -> None:
    """The complaints layer carries a posted complaint at once; a far tile keeps its ETag (304)."""
    a, b = tile_of(*QUIET, 16), tile_of(*CROWD, 16)
    z, x, y = a
    before = tiles_client.get(f"/tiles/{z}/{x}/{y}.mvt", headers=auth).headers["etag"]
    far = tiles_client.get("/tiles/{}/{}/{}.mvt".format(*b), headers=auth).headers["etag"]
    reference = _complain(tiles_client, QUIET[0] + 0.00005, QUIET[1])
    response = tiles_client.get(f"/tiles/{z}/{x}/{y}.mvt", headers={**auth, "If-None-Match": before})
    assert response.status_code == 200 and response.headers["etag"] != before
    (feature,) = decode(response.content)["complaints"].features
    props = feature.properties
    assert props["reference"] == reference and props["category"] == "井盖破损"
    assert props["status"] == "received" and props["received_at"].endswith("Z")
    again = tiles_client.get("/tiles/{}/{}/{}.mvt".format(*b), headers={**auth, "If-None-Match": far})
    assert again.status_code == 304


def test_crowded_complaints_are_counted_in_cells_and_hot_spots_are_shown(
    tiles_client: TestClient, auth: dict[str, str], db: Engine, owners: dict[str, int]
) -> None:
    """Over the budget, every complaint of the tile is in one cell's count; the 热点 they raise is a point."""
    for i in range(BUDGET + 2):
        _complain(tiles_client, QUIET[0] + i * 0.00002, QUIET[1] + 0.00003)
    _complain(tiles_client, QUIET[0], QUIET[1] + 0.00003, category="路灯不亮")
    layers = decode(get_tile(tiles_client, auth, tile_of(*QUIET, 14)))
    assert "complaints" not in layers
    cells = layers["complaint_cells"].features
    assert sum(c.properties["count"] for c in cells) == BUDGET + 3
    per_category: dict[str, int] = {}
    for cell in cells:
        for name, n in json.loads(cell.properties["categories"]).items():
            per_category[name] = per_category.get(name, 0) + n
    assert per_category == {"井盖破损": BUDGET + 2, "路灯不亮": 1}
    (spot,) = layers["hotspots"].features
    assert spot.properties["kind"] == "place" and spot.properties["kind_label"] == "热点"
    assert spot.properties["category"] == "井盖破损" and spot.properties["count"] == BUDGET + 2
    # Acknowledged, it stays on the map; once expired, it leaves it.
    (item,) = tiles_client.get("/api/v1/hotspots", headers=auth).json()["items"]
    assert tiles_client.post(f"/api/v1/hotspots/{item['id']}/acknowledge", headers=auth).status_code == 200
    layers = decode(get_tile(tiles_client, auth, tile_of(*QUIET, 14)))
    assert [f.properties["state"] for f in layers["hotspots"].features] == ["acknowledged"]
