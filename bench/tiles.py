# ruff: noqa: E501  (SQL and table rows read better unwrapped)
"""Vector tile benchmark: our /tiles against tipg's tiles of the same z/x/y, same database, same run.

The registry is the resolve benchmark's (``bench/resolve/generate.py``: 1,000,000 points of 20 classes
and 200,000 cables over 坪山, 10,000 zones), built with its builders into ``--dir`` and reused on the
next run. The generator bypasses triggers, so the tile counts are rebuilt once after it
(``smartcode_tile_counts_rebuild()``, migration 0014).

Tiles: at each zoom of ``--zooms``, the tile over the densest zoom-16 cell of the densest zoom-14 tile.
Each is fetched ``--samples`` times from each server, in turns (ours, tipg assets, tipg zones), over
keep-alive HTTP on localhost, one request at a time; p50 / p95 of the response time. Ours is also
timed in-process (the SQL of ``registry/tiles.py`` alone) and for a revalidation (If-None-Match: 304).

tipg runs from its own venv (``--tipg-venv``; ``python -m venv /tmp/tiles-tipg-venv &&
/tmp/tiles-tipg-venv/bin/pip install tipg uvicorn``) with its defaults (10,000 features a tile at most:
``TIPG_MAX_FEATURES_PER_TILE``), the properties our tile carries (owner as an id: tipg does not join),
and ``geom`` as the geometry column, which gets a GiST index for it (bench only: the registry indexes
geom_m). Without tipg the comparison is against a plain ``ST_AsMVT`` query of
every asset in the tile (the baseline a hand-written tile server starts from).

Run it only when no test suite runs: ``flock /tmp/smartcode-pytest.lock python bench/tiles.py``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.resolve import generate  # noqa: E402
from bench.resolve.run import OUT, TOKEN, Server, load, say  # noqa: E402
from common.settings import ApiSettings, DatabaseSettings, EmbeddedSettings, Settings, TileSettings  # noqa: E402
from registry import tiles  # noqa: E402
from registry.db import make_engine, migrate, transaction  # noqa: E402
from registry.embedded import EmbeddedCluster  # noqa: E402
from registry.resolution import conninfo_from_url  # noqa: E402
from tests.mvt import decode  # noqa: E402

# A plain tile of every asset in it: no budget, no aggregation, no owner names (the baseline without tipg).
PLAIN_SQL = """
WITH e AS (SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS e3857)
SELECT ST_AsMVT(t, 'assets', 4096, 'geom') FROM (
  SELECT ST_AsMVTGeom(ST_Transform(a.geom, 3857), e.e3857, 4096, 64, true) AS geom, a.code, a.class_code, a.state
  FROM assets a, e WHERE a.geom_m && smartcode_metric_envelope(ST_Transform(e.e3857, 4326)) AND a.in_use
) t WHERE t.geom IS NOT NULL
"""


def prepare(
    cluster: EmbeddedCluster, points: int, cables: int, settings: Settings, *, tipg_index: bool
) -> str:
    """The benchmark registry at head, generated (or reused) with the resolve benchmark's builders."""
    url = cluster.start()
    migrate(url, settings=settings)
    with psycopg.connect(conninfo_from_url(url), autocommit=True) as conn:
        generate.reference_data(conn, say)
        generate.add_assets(conn, points, cables, say)
        generate.cluster(conn, say)
        # tipg filters on the geometry column it serves, ``geom`` (WGS84), which the registry does not index
        # (its spatial indexes are on geom_m, migration 0005): without this bench-only index every tipg
        # tile is a scan of the table (1.1-1.6 s at zoom 16). Our tiles never use it (their candidates
        # come from geom_m).
        if tipg_index:
            conn.execute("CREATE INDEX IF NOT EXISTS bench_tipg_assets_geom_gist ON assets USING gist (geom)")
        else:
            conn.execute("DROP INDEX IF EXISTS bench_tipg_assets_geom_gist")
        counted = generate.meta(conn, "tile_counts")
        wanted = f"{points}/{cables}"
        if counted != wanted:
            started = time.perf_counter()
            conn.execute("SELECT smartcode_tile_counts_rebuild()")
            conn.execute("VACUUM ANALYZE asset_tile_counts, tile_changes")
            generate.set_meta(conn, "tile_counts", wanted)
            say(f"  tile counts rebuilt: {time.perf_counter() - started:.1f} s")
    return url


def densest_point(url: str) -> tuple[float, float]:
    """The centre of the densest zoom-16 cell inside the densest zoom-14 tile (lon, lat)."""
    with psycopg.connect(conninfo_from_url(url)) as conn:
        row = conn.execute(
            """
            WITH z14 AS (SELECT cx, cy FROM asset_tile_counts WHERE z = 14
                         GROUP BY 1, 2 ORDER BY sum(n) DESC LIMIT 1)
            SELECT c.cx, c.cy FROM asset_tile_counts c, z14
            WHERE c.z = 16 AND c.cx >> 2 = z14.cx AND c.cy >> 2 = z14.cy
            GROUP BY 1, 2 ORDER BY sum(n) DESC LIMIT 1
            """
        ).fetchone()
    assert row is not None, "no assets"
    n = 1 << tiles.COUNT_ZOOM
    lon = (row[0] + 0.5) / n * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (row[1] + 0.5) / n))))
    return lon, lat


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    """The tile of zoom ``z`` holding a WGS84 point."""
    n = 1 << z
    return (
        z,
        int((lon + 180.0) / 360.0 * n),
        int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n),
    )


class Client:
    """One keep-alive HTTP connection; ``get`` returns (ms, status, body, headers)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[float, int, bytes, dict[str, str]]:
        """Time one request, body read included."""
        started = time.perf_counter()
        self.conn.request("GET", path, headers=headers or {})
        response = self.conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        return elapsed, response.status, body, {k.lower(): v for k, v in response.getheaders()}


def summary(times: list[float]) -> dict[str, float]:
    """p50 / p95 / max in ms."""
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"p50": round(statistics.median(ordered), 1), "p95": round(p95, 1), "max": round(ordered[-1], 1)}


def counts(body: bytes) -> dict[str, Any]:
    """Features per layer, and the assets a tile accounts for (features + cell counts)."""
    layers = decode(body)
    out: dict[str, Any] = {name: len(layer.features) for name, layer in layers.items()}
    cells = layers.get("asset_cells")
    if cells:
        out["assets_in_cells"] = sum(int(f.properties["count"]) for f in cells.features)
    return out


def in_process(
    url: str, tile: tuple[int, int, int], samples: int, settings: TileSettings
) -> dict[str, float]:
    """Our tile's SQL alone (state + render, one transaction each), as the route runs it."""
    engine = make_engine(url, pool_size=1)
    times = []
    try:
        for i in range(samples + 3):
            started = time.perf_counter()
            with transaction(engine) as session:
                tiles.refresh_counts(session)
                state = tiles.tile_state(session, *tile, settings)
                tiles.render_tile(session, *tile, state, settings)
            if i >= 3:
                times.append((time.perf_counter() - started) * 1000)
    finally:
        engine.dispose()
    return summary(times)


def plain(url: str, tile: tuple[int, int, int], samples: int) -> dict[str, Any]:
    """The plain ST_AsMVT query of every asset in the tile (baseline when tipg is missing)."""
    times = []
    with psycopg.connect(conninfo_from_url(url)) as conn:
        z, x, y = tile
        body = b""
        for i in range(samples + 3):
            started = time.perf_counter()
            body = conn.execute(PLAIN_SQL, {"z": z, "x": x, "y": y}).fetchone()[0]  # type: ignore[index]
            if i >= 3:
                times.append((time.perf_counter() - started) * 1000)
    return {**summary(times), "features": counts(bytes(body or b"")).get("assets", 0)}


def start_ours(url: str, port: int) -> Server:
    """Our app under uvicorn, one process."""
    env = {**os.environ, "SMARTCODE_DATABASE_URL": url, "SMARTCODE_API_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    cmd = [uvicorn, "--factory", "api.app:create_app", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--no-access-log", "--log-level", "warning"]
    return Server(cmd, env, f"http://127.0.0.1:{port}/tiles/tiles.json", OUT / "server-tiles.log")


def start_tipg(cluster: EmbeddedCluster, venv: Path, port: int) -> Server | None:
    """tipg from its venv on the same database, or None when it is not installed."""
    uvicorn = venv / "bin" / "uvicorn"
    if not uvicorn.exists():
        say(f"  tipg not found in {venv}: the baseline is a plain ST_AsMVT query")
        return None
    socket_host = quote(str(cluster.socket_dir), safe="")
    env = {
        **os.environ,
        # tipg validates the URL and needs a host: the socket directory percent-encoded (asyncpg decodes it).
        "DATABASE_URL": f"postgresql://{cluster.server_user}@{socket_host}:5432/{cluster.db_name}",
        "TIPG_DB_SCHEMAS": '["public"]',
        "TIPG_DB_TABLES": '["public.assets", "public.zones"]',
        "TIPG_DB_SPATIAL_EXTENT": "false",
        "TIPG_DB_DATETIME_EXTENT": "false",
    }
    cmd = [str(uvicorn), "tipg.main:app", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--no-access-log", "--log-level", "warning"]
    return Server(cmd, env, f"http://127.0.0.1:{port}/collections", OUT / "server-tipg-tiles.log")


def tipg_paths(tile: tuple[int, int, int]) -> dict[str, str]:
    """tipg's tiles of the same z/x/y: assets (our tile's properties) and zones."""
    z, x, y = tile
    base = "/collections/public.{}/tiles/WebMercatorQuad/{}/{}/{}?geom-column=geom&properties={}"
    return {
        "tipg_assets": base.format("assets", z, x, y, "code,class_code,state,owner_id"),
        "tipg_zones": base.format("zones", z, x, y, "id,level,name,code,unit_id"),
    }


def measure(args: argparse.Namespace, cluster: EmbeddedCluster, url: str) -> dict[str, Any]:
    """Every zoom: ours over HTTP and in-process, tipg (or the plain query), 304s; alternating."""
    lon, lat = densest_point(url)
    say(f"  densest point {lon:.5f}, {lat:.5f}; {load()}")
    settings = TileSettings()
    ours = start_ours(url, args.port)
    tipg = start_tipg(cluster, Path(args.tipg_venv), args.port + 1)
    results: dict[str, Any] = {"point": [lon, lat], "tipg": tipg is not None, "tiles": {}}
    try:
        our_client = Client(args.port)
        tipg_client = Client(args.port + 1) if tipg else None
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for z in args.zooms:
            tile = tile_of(lon, lat, z)
            path = "/tiles/{}/{}/{}.mvt".format(*tile)
            times: dict[str, list[float]] = {"ours": [], "ours_304": []}
            bodies: dict[str, bytes] = {}
            etag = ""
            for i in range(args.samples + 3):
                ms, status, body, headers = our_client.get(path, auth)
                assert status == 200, (status, body[:200])
                etag, bodies["ours"] = headers["etag"], body
                ms304, status, _, _ = our_client.get(path, {**auth, "If-None-Match": etag})
                assert status == 304, status
                if i >= 3:
                    times["ours"].append(ms)
                    times["ours_304"].append(ms304)
                if tipg_client:
                    for name, tipg_path in tipg_paths(tile).items():
                        ms, status, body, _ = tipg_client.get(tipg_path)
                        assert status == 200, (name, status, body[:300])
                        bodies[name] = body
                        if i >= 3:
                            times.setdefault(name, []).append(ms)
            entry: dict[str, Any] = {"tile": "{}/{}/{}".format(*tile)}
            entry |= {name: summary(values) for name, values in times.items()}
            entry["ours_sql"] = in_process(url, tile, args.samples, settings)
            entry["ours_content"] = counts(bodies["ours"])
            entry["ours_bytes"] = len(bodies["ours"])
            if tipg_client:
                entry["tipg_content"] = {
                    "assets": counts(bodies["tipg_assets"]).get("default", 0),
                    "zones": counts(bodies["tipg_zones"]).get("default", 0),
                }
                both = [a + b for a, b in zip(times["tipg_assets"], times["tipg_zones"], strict=True)]
                entry["tipg_both"] = summary(both)
                entry["ratio_p95"] = round(entry["tipg_both"]["p95"] / entry["ours"]["p95"], 2)
            else:
                entry["plain"] = plain(url, tile, args.samples)
                entry["ratio_p95"] = round(entry["plain"]["p95"] / entry["ours"]["p95"], 2)
            with psycopg.connect(conninfo_from_url(url)) as conn:
                entry["assets_anchored"] = conn.execute(
                    "SELECT coalesce(sum(n), 0) FROM asset_tile_counts WHERE z = 16 AND cx >> %(s)s = %(x)s AND cy >> %(s)s = %(y)s",
                    {"s": max(0, tiles.COUNT_ZOOM - z), "x": tile[1], "y": tile[2]},
                ).fetchone()[0]  # type: ignore[index]
            results["tiles"][str(z)] = entry
            say(f"  z{z} {json.dumps(entry, ensure_ascii=False)}")
    finally:
        ours.stop()
        if tipg:
            tipg.stop()
    return results


def report(results: dict[str, Any]) -> str:
    """The markdown table for docs/tiles.md."""
    base = "tipg assets + zones" if results["tipg"] else "plain ST_AsMVT"
    lines = [
        f"| zoom | tile | assets in tile | our tile | ours p50 / p95 (HTTP) | SQL p95 | 304 p95 | {base} p95 | ratio | tipg's tile |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for z, e in results["tiles"].items():
        content = e["ours_content"]
        if "asset_cells" in content:
            ours = f"{content['asset_cells']} cells ({content['assets_in_cells']:,} assets), {content.get('zones', 0)} zones"
        else:
            ours = f"{content.get('assets', 0):,} assets, {content.get('zones', 0)} zones"
        if results["tipg"]:
            other, theirs = (
                e["tipg_both"]["p95"],
                f"{e['tipg_content']['assets']:,} assets, {e['tipg_content']['zones']} zones",
            )
        else:
            other, theirs = e["plain"]["p95"], f"{e['plain']['features']:,} assets"
        lines.append(
            f"| {z} | {e['tile']} | {int(e['assets_anchored']):,} | {ours} | {e['ours']['p50']} / {e['ours']['p95']} ms "
            f"| {e['ours_sql']['p95']} ms | {e['ours_304']['p95']} ms | {other} ms | {e['ratio_p95']}x | {theirs} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Build or reuse the registry, measure, write bench/out/tiles.json and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--cables", type=int, default=200_000)
    parser.add_argument(
        "--dir", default="/tmp/smartcode-bench-tiles", help="where the cluster lives (reused)"
    )
    parser.add_argument(
        "--zooms", type=lambda s: [int(z) for z in s.split(",")], default=[16, 15, 14, 13, 12, 11, 10, 8, 6]
    )
    parser.add_argument("--samples", type=int, default=40, help="requests per tile and server")
    parser.add_argument("--port", type=int, default=8781, help="ours; tipg on the next port")
    parser.add_argument("--tipg-venv", default="/tmp/tiles-tipg-venv")
    parser.add_argument("--no-tipg-index", action="store_true", help="no GiST on assets.geom for tipg")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    cluster = EmbeddedCluster(base / "pgdata", db_name="smartcode_bench")
    url = cluster.start()
    settings = Settings(
        database=DatabaseSettings(url=url),
        api=ApiSettings(api_token=TOKEN),
        embedded=EmbeddedSettings(data_dir=base / "pgdata"),
    )
    started = time.perf_counter()
    url = prepare(cluster, args.points, args.cables, settings, tipg_index=not args.no_tipg_index)
    say(f"registry ready in {time.perf_counter() - started:.1f} s; {load()}")
    results = measure(args, cluster, url)
    results |= {"args": vars(args), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load": load()}
    (OUT / "tiles.json").write_text(json.dumps(results, ensure_ascii=False, indent=1))
    print(report(results))


if __name__ == "__main__":
    main()
