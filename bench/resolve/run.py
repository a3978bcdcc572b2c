"""Resolution benchmark: generate a city-scale registry, time the SQL and the HTTP endpoints, compare.

    python bench/resolve/run.py --points 1000000 --cables 200000 --growth-points 10000000 --compare-indexes

What it does, in one run on one machine:

1. starts a throwaway embedded PostgreSQL + PostGIS cluster under /tmp (``--dir``, reused by later runs),
   migrates a database and generates the data in SQL (``generate.py``), then puts the assets in spatial
   order (``CLUSTER``, as after a big import; ``--random-order`` skips it, on a fresh ``--dir``); with
   ``--growth-points`` a second database holds that many points;
2. SQL alone: planning + execution time (EXPLAIN ANALYZE of the prepared statements the API uses, generic
   plans, warm cache) over random inputs and the client round trip, in ``--rounds`` rounds alternating
   between the two databases (median of the round medians), plus EXPLAIN (ANALYZE, BUFFERS) plans;
   ``--compare-indexes`` also times step 1 under other index designs;
3. HTTP with ``wrk`` (10 connections, one server process): resolve by code (log batched, then log
   synchronous), Open311 ``POST requests.json`` (a complaint by code or lat/long: resolution, insert,
   hot-spot check, outbox rows; again with the server's webhook worker off), resolve by location with
   a class, then with GCJ-02 coordinates and a category, the bare FastAPI + psycopg baseline, and tipg's
   feature-by-id on the same table (tipg from a separate venv, ``--tipg-venv``); with ``--webhooks``
   also Open311 POST with a live subscription and a receiver, the delivery worker as a thread of the
   API process and as its child process (``SMARTCODE_WEBHOOKS_WORKER``), in the same run
   (``--webhooks-only``: only that, of the HTTP part).

Figures and ratios are printed and written to ``bench/out/resolve-<timestamp>.json``, with the machine's
load average at each phase (other work on the machine skews them). Never run from the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.resolve import generate  # noqa: E402
from common.settings import ApiSettings, DatabaseSettings, EmbeddedSettings, Settings  # noqa: E402
from gis.metric import metric_projector  # noqa: E402
from registry import resolution, resolution_sql  # noqa: E402
from registry.db import migrate  # noqa: E402
from registry.embedded import EmbeddedCluster  # noqa: E402

TOKEN = "bench-token-0123456789-abcdefghij"
OUT = ROOT / "bench" / "out"
HERE = Path(__file__).resolve().parent


def say(text: str) -> None:
    """Progress on stderr, flushed."""
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# SQL alone
# --------------------------------------------------------------------------------------------------


def to_dollar(sql: str) -> tuple[str, list[str]]:
    """psycopg placeholders (%(name)s / %s) to PREPARE's $n, with the parameter order."""
    names: list[str] = []

    def named(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    out = re.sub(r"%\((\w+)\)s", named, sql)
    count = 0

    def positional(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    out = re.sub(r"%s", positional, out)
    return out, names or [str(i) for i in range(count)]


def sample_codes(conn: psycopg.Connection, n: int, rng: random.Random) -> list[str]:
    """Codes of random existing assets."""
    top = conn.execute("SELECT max(id) FROM assets").fetchone()[0]  # type: ignore[index]
    ids = [rng.randint(1, top) for _ in range(n)]
    return [r[0] for r in conn.execute("SELECT code FROM assets WHERE id = ANY(%s)", (ids,)).fetchall()]


def sample_points(n: int, rng: random.Random) -> list[tuple[float, float]]:
    """Random WGS84 points inside the generated district."""
    return [
        (
            rng.uniform(generate.MIN_LON + 0.002, generate.MAX_LON - 0.002),
            rng.uniform(generate.MIN_LAT + 0.002, generate.MAX_LAT - 0.002),
        )
        for _ in range(n)
    ]


def measure_sql(
    conn: psycopg.Connection, label: str, sql: str, params: list[dict[str, Any]]
) -> dict[str, Any]:
    """Server time (EXPLAIN ANALYZE: planning + execution, timing off) and client round trip.

    The statement is prepared and run with its generic plan, as the API's connections do
    (``registry.resolution.resolution_connection_kwargs``); every input is run once before measuring,
    so the figures are for a warm cache, the steady state of a server with enough memory.
    """
    text, names = to_dollar(sql)
    conn.execute(f"PREPARE bench_stmt AS {text}")
    cur = psycopg.ClientCursor(conn)

    def literal_args(p: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(p[n] for n in names)

    placeholders = ", ".join(["%s"] * len(names))
    for p in params:  # warm the cache with every input
        cur.execute(f"EXECUTE bench_stmt({placeholders})", literal_args(p))
        cur.fetchall()
    server: list[float] = []
    for p in params:
        cur.execute(
            f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) EXECUTE bench_stmt({placeholders})", literal_args(p)
        )
        plan = cur.fetchone()[0][0]  # type: ignore[index]
        server.append(float(plan["Planning Time"]) + float(plan["Execution Time"]))
    # The client round trip as the API sees it: psycopg, prepared, Unix socket.
    client: list[float] = []
    for p in params:
        args = literal_args(p) if names[0].isdigit() else p
        started = time.perf_counter()
        conn.execute(sql, args, prepare=True).fetchall()
        client.append((time.perf_counter() - started) * 1000.0)
    plan_lines = [
        r[0]
        for r in cur.execute(
            f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_stmt({placeholders})",
            literal_args(params[len(params) // 2]),
        ).fetchall()
    ]
    conn.execute("DEALLOCATE bench_stmt")
    result = {
        "label": label,
        "samples": len(params),
        "server_median_ms": round(statistics.median(server), 4),
        "server_p90_ms": round(sorted(server)[int(len(server) * 0.9)], 4),
        "client_median_ms": round(statistics.median(client), 4),
        "plan": "\n".join(plan_lines),
    }
    say(
        f"  {label}: server median {result['server_median_ms']} ms, p90 {result['server_p90_ms']} ms, "
        f"round trip median {result['client_median_ms']} ms"
    )
    return result


def sql_suite(conn: psycopg.Connection, settings: Settings, samples: int, seed: int) -> dict[str, Any]:
    """The statements the resolver runs, on random codes and points."""
    rng = random.Random(seed)
    config = resolution.ResolveConfig.from_settings(settings)
    projector = metric_projector(settings.area.metric_srid)
    codes = sample_codes(conn, samples, rng)
    points = sample_points(samples, rng)
    classes = list(generate.POINT_CLASSES)
    located: list[dict[str, Any]] = []
    for lon, lat in points:
        x, y = projector.project_point(lon, lat)
        cls = rng.choice(classes)
        located.append({"x": x, "y": y, "lon": lon, "lat": lat, "cls": cls})
    k = config.candidates
    out = {}
    out["code"] = measure_sql(conn, "by code", resolution_sql.CODE_SQL_NOW, [{"0": c} for c in codes])
    out["code_at"] = measure_sql(
        conn,
        "by code, as of a time",
        resolution_sql.CODE_SQL_AT,
        [{"code": c, "at": "2024-06-01T00:00:00+08:00"} for c in codes],
    )
    by_class = [
        {
            "classes": "{" + p["cls"] + "}",
            "tolerances": "{" + str(config.point_tolerance_m) + "}",
            "x": p["x"],
            "y": p["y"],
            "k": k,
            "lon": p["lon"],
            "lat": p["lat"],
            "county": generate.COUNTY,
            "zt": "2026-01-01T00:00:00+08:00",
            "category": None,
        }
        for p in located
    ]
    srid = settings.area.metric_srid
    out["location"] = measure_sql(
        conn,
        "by location, one class (steps 1-4, one statement)",
        resolution_sql.location_sql(srid, by_class=True, at=False),
        by_class,
    )
    out["location_at"] = measure_sql(
        conn,
        "by location, one class, as of a time",
        resolution_sql.location_sql(srid, by_class=True, at=True),
        [
            {
                **p,
                "at": "2024-06-01T00:00:00+08:00",
                "zt": "2024-06-01T00:00:00+08:00",
                "tz": settings.area.timezone,
            }
            for p in by_class
        ],
    )
    out["location_cable"] = measure_sql(
        conn,
        "by location, cables (line band)",
        resolution_sql.location_sql(srid, by_class=True, at=False),
        [
            {**p, "classes": "{2105}", "tolerances": "{" + str(config.line_tolerance_m) + "}"}
            for p in by_class
        ],
    )
    out["location_any"] = measure_sql(
        conn,
        "by location, any class",
        resolution_sql.location_sql(srid, by_class=False, at=False),
        [{**p, "tol": config.point_tolerance_m, "classes": "{}"} for p in by_class],
    )
    out["nearest"] = measure_sql(
        conn,
        "step 1 alone (nearest assets of one class)",
        resolution_sql.nearest_sql(srid, by_class=True, at=False),
        by_class,
    )
    out["area"] = measure_sql(
        conn, "steps 3-4 alone (zones and rules at a point)", resolution_sql.AREA_SQL, by_class
    )
    return out


def _nearest_sql_with(srid: int, condition: str, order: str) -> str:
    """Step 1 for one class (in use) with another way of finding the candidates.

    The statement shape and columns of ``resolution_sql.nearest_sql(by_class=True, at=False)``: classes
    and tolerances unnested, one LATERAL search per class, then the three units. ``condition`` and
    ``order`` may name the query point as ``{point}``.
    """
    point = f"ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), {srid})"
    columns = (
        "a.id, a.code, a.class_code, a.state, a.in_use, a.owner_id, a.maintainer_id, a.supervisor_id, "
        f"a.responsible_since, a.installed_on, ST_Distance(a.geom_m, {point}) AS dist"
    )
    return f"""
    SELECT a.code, a.class_code, a.state, a.in_use, a.dist, {resolution_sql.unit_columns("o", "m", "s")}
    FROM unnest(%(classes)s::text[], %(tolerances)s::float8[]) AS q(cls, tol)
    CROSS JOIN LATERAL (
        SELECT {columns} FROM assets a
        WHERE {condition.format(point=point)} AND a.in_use AND ST_DWithin(a.geom_m, {point}, q.tol)
        ORDER BY {order.format(point=point)}
        LIMIT %(k)s
    ) a
    LEFT JOIN units o ON o.id = a.owner_id
    LEFT JOIN units m ON m.id = a.maintainer_id
    LEFT JOIN units s ON s.id = a.supervisor_id
    """


# The n-dimensional key tried in 0004 and rejected: the metric geometry lifted to z = class number.
_ND_KEY = "ST_Force3DZ(a.geom_m, a.class_code::float8)"


@dataclass(frozen=True)
class IndexDesign:
    """A spatial index for step 1 and the statement that uses it."""

    index: str  # the index's name
    create: str | None  # its definition; None for the index the migrations create
    sql: str


def index_designs(srid: int) -> dict[str, IndexDesign]:
    """The chosen index (migration 0005) and the alternatives, each with the statement that suits it."""
    # Before 0005: a KNN scan per class on geom_m, the class checked in the index or after it.
    knn = _nearest_sql_with(srid, "a.class_code = q.cls", "a.geom_m <-> {point}")
    knn_smallint = _nearest_sql_with(
        srid, "a.class_code::smallint = q.cls::smallint AND a.class_code = q.cls", "a.geom_m <-> {point}"
    )
    return {
        "GiST on the class planes, KNN [chosen, 0005]": IndexDesign(
            generate.CLUSTER_INDEX, None, resolution_sql.nearest_sql(srid, by_class=True, at=False)
        ),
        "GiST (class_code::smallint, geom_m), KNN [0004]": IndexDesign(
            "bench_class_no_geom_m_gist",
            "CREATE INDEX bench_class_no_geom_m_gist ON assets USING gist ((class_code::smallint), geom_m)",
            knn_smallint,
        ),
        "GiST (class_code, geom_m), text class, KNN [0002]": IndexDesign(
            "bench_class_geom_m_gist",
            "CREATE INDEX bench_class_geom_m_gist ON assets USING gist (class_code, geom_m)",
            knn,
        ),
        "GiST (geom_m), KNN, class filtered [0001]": IndexDesign(
            "bench_geom_m_gist", "CREATE INDEX bench_geom_m_gist ON assets USING gist (geom_m)", knn
        ),
        # A box at z = class around the point (the tolerance out), its few candidates sorted by distance.
        "n-d GiST (geom_m at z = class), 3-D box [tried in 0004, rejected]": IndexDesign(
            "bench_search_nd_gist",
            f"CREATE INDEX bench_search_nd_gist ON assets USING gist (({_ND_KEY.replace('a.', '')}) "
            "gist_geometry_ops_nd)",
            _nearest_sql_with(
                srid,
                f"{_ND_KEY} &&& ST_SetSRID(ST_3DMakeBox("
                "ST_MakePoint(%(x)s - q.tol, %(y)s - q.tol, q.cls::float8), "
                f"ST_MakePoint(%(x)s + q.tol, %(y)s + q.tol, q.cls::float8)), {srid}) "
                "AND a.class_code = q.cls",
                "dist",
            ),
        ),
    }


def index_comparison(conn: psycopg.Connection, settings: Settings, samples: int, seed: int) -> dict[str, Any]:
    """Step 1 (nearest lamp within 30 m) under other index designs, each in a rolled-back transaction.

    Each alternative replaces the spatial indexes of migration 0005 inside a transaction (drop them,
    create the alternative, ANALYZE, measure, roll back), so every design is timed alone on the same data.
    """
    rng = random.Random(seed + 2)
    projector = metric_projector(settings.area.metric_srid)
    config = resolution.ResolveConfig.from_settings(settings)
    params = []
    for lon, lat in sample_points(samples, rng):
        x, y = projector.project_point(lon, lat)
        params.append({"classes": "{0118}", "tolerances": "{30}", "x": x, "y": y, "k": config.candidates})
    out: dict[str, Any] = {}
    for label, design in index_designs(settings.area.metric_srid).items():
        with conn.transaction():  # psycopg.Rollback below ends it and is swallowed by the block
            build_s = None
            if design.create is not None:
                conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
                conn.execute(f"DROP INDEX {', '.join(generate.SPATIAL_INDEXES)}")
                started = time.perf_counter()
                conn.execute(design.create)
                build_s = round(time.perf_counter() - started, 1)
                conn.execute("ANALYZE assets")
            size = conn.execute("SELECT pg_relation_size(%s::regclass)", (design.index,)).fetchone()
            assert size is not None
            out[label] = {
                **measure_sql(conn, f"step 1 with {label}", design.sql, params),
                "index_mb": round(size[0] / 2**20, 1),
                "build_s": build_s,
            }
            raise psycopg.Rollback()
    conn.execute("ANALYZE assets")
    return out


# --------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------


def wait_http(url: str, timeout: float = 60.0) -> None:
    """Poll until the server answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            time.sleep(0.3)
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"server at {url} did not come up")


class Server:
    """A server process started for one measurement."""

    def __init__(self, cmd: list[str], env: dict[str, str], ready_url: str, log: Path) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_http(ready_url)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"{cmd[0]} failed to start; see {log}") from None

    def stop(self) -> None:
        """Terminate the process we started (by its pid) and wait for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000.0 if unit == "us" else value * 1000.0 if unit == "s" else value


def wrk(
    base: str,
    paths: list[str],
    label: str,
    *,
    seconds: int,
    connections: int,
    headers: list[str],
    post_to: str | None = None,
) -> dict[str, Any]:
    """Run wrk over random paths; requests/s and latency percentiles (ms).

    With ``post_to``, ``paths`` are form-encoded bodies instead, each request POSTs a random one there.
    """
    paths_file = OUT / f"paths-{re.sub(r'[^a-z0-9]+', '-', label.lower())}.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    header_args = [arg for h in headers for arg in ("-H", h)]
    script = HERE / ("bodies.lua" if post_to else "paths.lua")
    script_args = [str(paths_file), *([post_to] if post_to else [])]
    common = ["wrk", "-t1", f"-c{connections}", "--latency", "-s", str(script), *header_args]
    subprocess.run([*common, "-d3s", base, "--", *script_args], capture_output=True, check=True)  # warm-up
    done = subprocess.run(
        [*common, f"-d{seconds}s", base, "--", *script_args], capture_output=True, text=True, check=True
    )
    text = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    latency = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    result = {
        "label": label,
        "requests_per_s": round(rps, 1),
        "p50_ms": latency.get("50"),
        "p90_ms": latency.get("90"),
        "p99_ms": latency.get("99"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(0) if errors else None,
        "connections": connections,
        "seconds": seconds,
    }
    say(
        f"  {label}: {result['requests_per_s']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms"
        + (f", NON-2XX {result['non_2xx']}" if result["non_2xx"] else "")
    )
    return result


OPEN311_PATH = "/open311/v2/requests.json"


def open311_bodies(conn: psycopg.Connection, n: int, rng: random.Random) -> list[str]:
    """Form-encoded Open311 service requests: half by scanned code, half by WGS84 lat/long.

    A code's request names a category that concerns its class (else 井盖破损), as a scan would; a located
    one names a random category. Codes are drawn from the registry, so repeats are few and the hot-spot
    check mostly counts without raising a warning.
    """
    by_class: dict[str, str] = {}
    names: list[str] = []
    for name, classes in conn.execute(
        "SELECT name, class_codes FROM complaint_categories WHERE active ORDER BY name"
    ).fetchall():
        names.append(name)
        for cls in classes:
            by_class.setdefault(cls, name)
    top = conn.execute("SELECT max(id) FROM assets").fetchone()[0]  # type: ignore[index]
    rows = conn.execute(
        "SELECT code, class_code FROM assets WHERE id = ANY(%s)",
        ([rng.randint(1, top) for _ in range(n // 2)],),
    ).fetchall()
    bodies = []
    for code, cls in rows:
        fields = {
            "api_key": TOKEN,
            "service_code": by_class.get(cls, "井盖破损"),
            "attribute[asset_code]": code,
            "description": "bench",
        }
        bodies.append(urlencode(fields))
    for lon, lat in sample_points(n - len(rows), rng):
        fields = {
            "api_key": TOKEN,
            "service_code": rng.choice(names),
            "lat": f"{lat:.6f}",
            "long": f"{lon:.6f}",
            "description": "bench",
        }
        bodies.append(urlencode(fields))
    rng.shuffle(bodies)
    return bodies


# A district's complaint history before the Open311 runs: the hot-spot counts and the complaint indexes
# then work at a realistic depth, and the planner has statistics for the table (on an empty table the
# posting connections would keep plans made for no rows for the whole run).
SEED_COMPLAINTS = 50_000
_SEED = """
INSERT INTO complaints (reference, source, received_at, category, geom, resolution, actor, status_at,
                        status_by)
SELECT 'SEED-' || g, 'api', t.at, (%(cats)s::text[])[1 + (g %% cardinality(%(cats)s::text[]))],
       ST_SetSRID(ST_MakePoint(%(w)s + random() * (%(e)s - %(w)s), %(s)s + random() * (%(n)s - %(s)s)), 4326),
       '{}', 'bench', t.at, 'bench'
FROM generate_series(1, %(count)s) g, LATERAL (SELECT now() - random() * interval '90 days' AS at) t
"""


def seed_complaints(conn: psycopg.Connection) -> int:
    """Give the registry ``SEED_COMPLAINTS`` complaints over the last 90 days (once); how many exist."""
    seeded = conn.execute("SELECT count(*) FROM complaints WHERE reference LIKE 'SEED-%%'").fetchone()
    if not seeded or not seeded[0]:
        names = [r[0] for r in conn.execute("SELECT name FROM complaint_categories WHERE active").fetchall()]
        conn.execute(
            _SEED,
            {
                "cats": names,
                "count": SEED_COMPLAINTS,
                "w": generate.MIN_LON,
                "e": generate.MAX_LON,
                "s": generate.MIN_LAT,
                "n": generate.MAX_LAT,
            },
        )
    conn.execute("ANALYZE complaints")
    total = conn.execute("SELECT count(*) FROM complaints").fetchone()
    return int(total[0]) if total else 0


def _written(conninfo: str) -> dict[str, int]:
    """Rows in the tables an Open311 POST writes (complaints, their history, outbox, warnings)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return dict(
            conn.execute(
                "SELECT 'complaints', count(*) FROM complaints "
                "UNION ALL SELECT 'event_outbox', count(*) FROM event_outbox "
                "UNION ALL SELECT 'hotspot_warnings', count(*) FROM hotspot_warnings"
            ).fetchall()
        )


def _server_children(pid: int) -> list[int]:
    """The processes ``pid`` started (the API server's delivery child), from /proc (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def webhook_layouts(
    ours: Any, base: str, bodies: list[str], url: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Open311 POST with a live subscription: the delivery worker as a thread, a child, a separate process.

    Layouts: ``thread`` and ``process`` (``SMARTCODE_WEBHOOKS_WORKER``), and ``separate``: the server
    with ``off`` and a ``smartcode worker`` started by hand beside it (what the child replaces).
    A receiver in this process (an HTTP/1.1 server thread, on the same cores) is subscribed to
    ``complaint.created`` and ``complaint.resolved``: two deliveries per post. For each layout, a fresh
    subscription and server; wrk as for the other POST runs, once a first post's events have arrived;
    then every delivery made is waited for. Webhook latency: arrival at the receiver minus the event's
    ``occurred_at`` (the start of its transaction: an upper bound of commit-to-receipt). CPU: the API
    process, and the delivery process beside it. ``--webhook-rounds 2`` runs the layouts forwards then
    backwards, so that drift hits all alike.
    """
    from sqlalchemy import text

    from bench.webhooks import Receiver, percentiles, worker_cpu_s
    from common.settings import WebhookSettings
    from registry.db import Actor, make_engine, transaction
    from registry.webhooks import create_subscription

    engine = make_engine(url, pool_size=1)

    conninfo = resolution.conninfo_from_url(url)
    layouts = ["thread", "process", "separate"]
    order = layouts + layouts[::-1] if args.webhook_rounds == 2 else layouts
    out: dict[str, Any] = {layout: [] for layout in layouts}
    worker_env = {**os.environ, "SMARTCODE_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    for layout in order:
        receiver = Receiver()
        with transaction(engine) as session:
            # Events nobody marked yet (a run with the worker off before this one) would be the new
            # subscription's too, and their deliveries would be measured as late as they are old.
            session.execute(text("UPDATE event_outbox SET fanned_out_at = now() WHERE fanned_out_at IS NULL"))
            sub = create_subscription(
                session,
                Actor("bench", admin=True),
                WebhookSettings(),
                url=receiver.url,
                events=["complaint.created", "complaint.resolved"],
            )["id"]
        server = ours("batch", SMARTCODE_WEBHOOKS_WORKER="off" if layout == "separate" else layout)
        separate = None
        if layout == "separate":
            separate = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "worker"],
                env=worker_env,
                cwd=OUT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        try:
            # Measured once delivering: one post's events received (a child process takes a second or
            # so to import and connect; events of that second would otherwise wait for it).
            probe = urllib.request.Request(f"{base}{OPEN311_PATH}", data=bodies[0].encode(), method="POST")
            urllib.request.urlopen(probe, timeout=30).read()
            deadline = time.monotonic() + 60
            while not receiver.arrivals and time.monotonic() < deadline:
                time.sleep(0.02)
            children = [separate.pid] if separate else _server_children(server.proc.pid)
            cpu0 = worker_cpu_s(server.proc.pid), sum(worker_cpu_s(c) for c in children)
            run = wrk(
                base,
                bodies,
                f"Open311 POST, live subscription, worker: {layout}",
                headers=[],
                post_to=OPEN311_PATH,
                seconds=args.seconds,
                connections=args.connections,
            )
            cpu1 = worker_cpu_s(server.proc.pid), sum(worker_cpu_s(c) for c in children)
            deadline = time.monotonic() + 120
            with psycopg.connect(conninfo, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    pending = conn.execute(
                        "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FROM webhook_deliveries "
                        "WHERE subscription_id = %s",
                        (sub,),
                    ).fetchone()
                    assert pending is not None
                    if pending[0] == 0:
                        break
                    time.sleep(0.1)
                occurred = dict(
                    conn.execute(
                        "SELECT 'evt_' || e.id, extract(epoch FROM e.occurred_at) FROM webhook_deliveries d "
                        "JOIN event_outbox e ON e.id = d.event_id WHERE d.subscription_id = %s",
                        (sub,),
                    ).fetchall()
                )
                conn.execute(
                    "UPDATE webhook_subscriptions SET enabled = false, deleted_at = now() WHERE id = %s",
                    (sub,),
                )
        finally:
            server.stop()
            if separate is not None:
                separate.terminate()
                separate.wait(30)
            receiver.server.shutdown()
        with receiver.lock:
            arrivals = {k: v[0] for k, v in receiver.arrivals.items()}
        latencies = [arrivals[k] - float(t) for k, t in occurred.items() if k in arrivals]
        posts = run["requests_per_s"] * run["seconds"]
        run.update(
            layout=layout,
            delivery_children=len(children),
            deliveries_made=len(occurred),
            deliveries_received=len(latencies),
            webhook_ms={k: round(v, 1) for k, v in percentiles(latencies).items()} if latencies else None,
            api_cpu_ms_per_post=round((cpu1[0] - cpu0[0]) * 1000 / posts, 2),
            child_cpu_ms_per_post=round((cpu1[1] - cpu0[1]) * 1000 / posts, 2) if children else None,
        )
        say(
            f"    {layout}: {len(latencies)} of {len(occurred)} deliveries received, webhook "
            f"{run['webhook_ms']}, API process CPU {run['api_cpu_ms_per_post']} ms/post, "
            f"delivery process {run['child_cpu_ms_per_post']} ms/post"
        )
        out[layout].append(run)
    engine.dispose()
    return out


def http_suite(cluster: EmbeddedCluster, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Resolve by code (batched and synchronous log), Open311 POST, by location, the bare baseline, tipg."""
    rng = random.Random(args.seed + 1)
    conninfo = resolution.conninfo_from_url(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        codes = sample_codes(conn, 5000, rng)
        bodies = open311_bodies(conn, 5000, rng)
        id_rows = conn.execute(
            "SELECT id FROM assets WHERE id = ANY(%s)", ([rng.randint(1, 1_000_000) for _ in range(5000)],)
        ).fetchall()
        log_before = conn.execute("SELECT count(*) FROM resolution_log").fetchone()[0]  # type: ignore[index]
        say(f"  complaints in the registry before the Open311 runs: {seed_complaints(conn):,}")
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    base_env = {
        **os.environ,
        "SMARTCODE_DATABASE_URL": url,
        "SMARTCODE_API_TOKEN": TOKEN,
        # wrk asks by code anonymously from one address, as fast as it can: the per-client limit
        # would answer 429 to nearly all of it, so it is off here (the passer-by view is measured).
        "SMARTCODE_ANONYMOUS_RATE_PER_MINUTE": "0",
        "PYTHONPATH": str(ROOT),
    }
    port = args.port
    results: dict[str, Any] = {}
    common = dict(seconds=args.seconds, connections=args.connections)
    auth = [f"Authorization: Bearer {TOKEN}"]

    def ours(mode: str, **extra_env: str) -> Server:
        env = {**base_env, "SMARTCODE_RESOLVE_LOG_MODE": mode, **extra_env}
        cmd = [
            uvicorn,
            "--factory",
            "api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        return Server(cmd, env, f"http://127.0.0.1:{port}/api/v1/health", OUT / f"server-{mode}.log")

    base = f"http://127.0.0.1:{port}"
    if args.webhooks_only:
        results["open311_post_webhooks"] = webhook_layouts(ours, base, bodies, url, args)
        return results
    server = ours("batch")
    try:
        results["code"] = wrk(
            base,
            [f"/api/v1/resolve?code={c}" for c in codes],
            "resolve by code (log batched)",
            headers=[],
            **common,
        )
        # Open311 on the same server process, right after resolve by code (its baseline): each POST
        # authenticates the api_key, resolves, inserts the complaint, checks hot spots and writes its
        # outbox rows in one transaction.
        before = _written(conninfo)
        results["open311_post"] = wrk(
            base,
            bodies,
            "Open311 POST requests.json (code or lat/long)",
            headers=[],
            post_to=OPEN311_PATH,
            **common,
        )
        after = _written(conninfo)
        written = {k: after[k] - before[k] for k in after}
        results["open311_post"]["rows_written_with_warmup"] = written
        say(f"  written by the Open311 runs (warm-up included): {written}")
        classes = list(generate.POINT_CLASSES)
        location_paths = [
            f"/api/v1/resolve?lon={lon:.6f}&lat={lat:.6f}&class={rng.choice(classes)}"
            for lon, lat in sample_points(5000, rng)
        ]
        results["location"] = wrk(
            base, location_paths, "resolve by location, class given", headers=auth, **common
        )
        gcj_paths = []
        from gis.crs import GCJ02, from_wgs84

        for lon, lat in sample_points(2000, rng):
            gx, gy = from_wgs84(lon, lat, GCJ02)
            gcj_paths.append(
                f"/api/v1/resolve?lon={gx:.7f}&lat={gy:.7f}&crs=gcj02&category=%E4%BA%95%E7%9B%96%E7%A0%B4%E6%8D%9F"
            )
        results["location_gcj_category"] = wrk(
            base, gcj_paths, "resolve by location, gcj02 + category 井盖破损", headers=auth, **common
        )
    finally:
        server.stop()
    # The same POSTs with the server's webhook worker off (a deployment running `smartcode worker`
    # elsewhere); without a subscription the worker (a child process by default) hears no commits.
    server = ours("batch", SMARTCODE_WEBHOOKS_WORKER="off")
    try:
        results["open311_post_no_worker"] = wrk(
            base,
            bodies,
            "Open311 POST, webhook worker off",
            headers=[],
            post_to=OPEN311_PATH,
            **common,
        )
    finally:
        server.stop()
    if args.webhooks:
        results["open311_post_webhooks"] = webhook_layouts(ours, base, bodies, url, args)
    server = ours("sync")
    try:
        results["code_sync_log"] = wrk(
            base,
            [f"/api/v1/resolve?code={c}" for c in codes],
            "resolve by code (log synchronous)",
            headers=[],
            **common,
        )
    finally:
        server.stop()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        logged = conn.execute("SELECT count(*) FROM resolution_log").fetchone()[0] - log_before  # type: ignore[index]
    answered = sum(
        r["requests_per_s"] * r["seconds"] for r in results.values() if "requests_per_s" in r
    )  # approximate: wrk's count excludes the warm-up runs, which were logged too
    results["log_rows_written"] = logged
    results["answers_measured_approx"] = round(answered)
    bare_env = {**base_env, "SMARTCODE_BENCH_CONNINFO": conninfo}
    server = Server(
        [
            uvicorn,
            "bench.resolve.bare_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        bare_env,
        f"{base}/c/0",
        OUT / "server-bare.log",
    )
    try:
        results["bare"] = wrk(
            base, [f"/c/{c}" for c in codes], "bare FastAPI + psycopg lookup", headers=[], **common
        )
    finally:
        server.stop()
    tipg = Path(args.tipg_venv) / "bin" / "uvicorn"
    socket_host = quote(str(cluster.socket_dir), safe="")
    if tipg.exists():
        tipg_env = {
            **os.environ,
            # tipg validates the URL and needs a host: the socket directory percent-encoded (asyncpg
            # decodes it).
            "DATABASE_URL": f"postgresql://{cluster.server_user}@{socket_host}:5432/{cluster.db_name}",
            "TIPG_DB_SCHEMAS": '["public"]',
            "TIPG_DB_SPATIAL_EXTENT": "false",
            "TIPG_DB_DATETIME_EXTENT": "false",
        }
        server = Server(
            [
                str(tipg),
                "tipg.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            tipg_env,
            f"{base}/collections",
            OUT / "server-tipg.log",
        )
        try:
            results["tipg"] = wrk(
                base,
                [f"/collections/public.assets/items/{r[0]}" for r in id_rows],
                "tipg feature by id",
                headers=[],
                **common,
            )
        finally:
            server.stop()
    else:
        say(
            f"  tipg not found at {tipg}: python -m venv {args.tipg_venv} && "
            f"{args.tipg_venv}/bin/pip install tipg uvicorn"
        )
    return results


# --------------------------------------------------------------------------------------------------


def migrations_fingerprint() -> str:
    """A digest of the migration files: data generated under other migrations are not reused.

    Revision ids are not enough: a revision not yet released may be rewritten in place (0004 was,
    from an n-dimensional spatial index to a composite one).
    """
    digest = hashlib.sha256()
    for path in sorted((ROOT / "alembic" / "versions").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def prepare_database(
    cluster: EmbeddedCluster, points: int, cables: int, settings: Settings, *, spatial_order: bool
) -> dict[str, Any]:
    """Start/migrate one benchmark database and fill it up to ``points`` point assets.

    Data generated under other migrations are not migrated and reused: a migration of the assets table
    (0004 rewrote every row and replaced the spatial indexes) leaves it unlike a fresh bulk load.
    """
    url = cluster.start()
    conninfo = resolution.conninfo_from_url(url)
    schema = migrations_fingerprint()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        generated = generate.meta(conn, "points") is not None
        generated_under = generate.meta(conn, "schema")
    if generated and generated_under != schema:
        sys.exit(
            f"{cluster.db_name} in {cluster.data_dir} was generated under other migrations "
            f"({generated_under or 'unrecorded'}, now {schema}): rebuild it (delete that directory, "
            "or pass --dir with a fresh one)"
        )
    migrate(url, settings=settings)
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        say(f"{cluster.db_name}: " + ("reusing / extending" if generated else "generating"))
        generate.reference_data(conn, say)
        generate.set_meta(conn, "schema", schema)
        generate.add_assets(conn, points, cables, say)
        if spatial_order:
            generate.cluster(conn, say)
        sizes: dict[str, int] = dict(
            conn.execute(
                "SELECT 'assets', count(*) FROM assets UNION ALL SELECT 'zones', count(*) FROM zones "
                "UNION ALL SELECT 'rules', count(*) FROM responsibility_rules "
                "UNION ALL SELECT 'units', count(*) FROM units"
            ).fetchall()
        )
    say(f"  {cluster.db_name}: {sizes}")
    return {"url": url, "sizes": sizes, "prepare_s": round(time.perf_counter() - started, 1)}


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per statement: the median of the rounds' medians (drift and noise between rounds cancel out)."""
    merged: dict[str, Any] = {}
    for key in rounds[0]:
        entries = [r[key] for r in rounds]
        merged[key] = {
            **entries[0],
            "server_median_ms": round(statistics.median(e["server_median_ms"] for e in entries), 4),
            "server_p90_ms": round(statistics.median(e["server_p90_ms"] for e in entries), 4),
            "client_median_ms": round(statistics.median(e["client_median_ms"] for e in entries), 4),
            "rounds_server_median_ms": [e["server_median_ms"] for e in entries],
        }
    return merged


def load() -> str:
    """The machine's load averages, recorded beside each phase (other work skews the figures)."""
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    """Parse options, build or reuse the data, measure, report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--cables", type=int, default=200_000)
    parser.add_argument(
        "--growth-points",
        type=int,
        default=0,
        help="a second database with this many points, for the growth ratio",
    )
    parser.add_argument(
        "--dir", default="/tmp/smartcode-bench", help="cluster directory (reused between runs)"
    )
    parser.add_argument("--samples", type=int, default=2000, help="random inputs per SQL statement and round")
    parser.add_argument("--rounds", type=int, default=3, help="SQL rounds, alternating between the databases")
    parser.add_argument("--seconds", type=int, default=20, help="duration of each HTTP measurement")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--tipg-venv", default="/tmp/bench-venv")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--compare-indexes", action="store_true", help="also time step 1 under other indexes")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument(
        "--random-order",
        action="store_true",
        help="leave the assets in random physical order (no CLUSTER; use a fresh --dir)",
    )
    parser.add_argument(
        "--webhooks",
        action="store_true",
        help="also Open311 POST with a live subscription, the delivery worker as a thread, a child process "
        "and a separate `smartcode worker`",
    )
    parser.add_argument(
        "--webhooks-only", action="store_true", help="of the HTTP part, only the --webhooks comparison"
    )
    parser.add_argument(
        "--webhook-rounds",
        type=int,
        default=1,
        choices=(1, 2),
        help="2: the layouts forwards, then backwards",
    )
    parser.add_argument("--destroy", action="store_true", help="delete the cluster afterwards")
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.skip_http:
        sys.exit("wrk is needed for the HTTP part: apt-get install wrk (or pass --skip-http)")
    OUT.mkdir(parents=True, exist_ok=True)
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    cluster = EmbeddedCluster(base / "pgdata", db_name="smartcode_bench")
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": vars(args),
        "migrations": migrations_fingerprint(),
    }
    try:
        url = cluster.start()
        settings = Settings(
            database=DatabaseSettings(url=url),
            api=ApiSettings(api_token=TOKEN),
            embedded=EmbeddedSettings(data_dir=base / "pgdata"),
        )
        main_db = prepare_database(
            cluster, args.points, args.cables, settings, spatial_order=not args.random_order
        )
        report["sizes"] = main_db["sizes"]
        report["physical_order"] = (
            "random" if args.random_order else f"spatial (CLUSTER assets USING {generate.CLUSTER_INDEX})"
        )
        report["generate_s"] = main_db["prepare_s"]
        databases = {"sql": main_db["url"]}
        if args.growth_points:
            growth_cluster = EmbeddedCluster(base / "pgdata", db_name="smartcode_bench_growth")
            growth_db = prepare_database(
                growth_cluster, args.growth_points, args.cables, settings, spatial_order=not args.random_order
            )
            report["growth_sizes"] = growth_db["sizes"]
            report["growth_generate_s"] = growth_db["prepare_s"]
            databases["growth_sql"] = growth_db["url"]
        # SQL alone, alternating between the databases round by round, so that drift in the machine's
        # speed (other work, a noisy host) hits both sizes alike.
        rounds: dict[str, list[dict[str, Any]]] = {key: [] for key in databases}
        for number in range(1, args.rounds + 1):
            for key, db_url in databases.items():
                say(f"SQL alone, {key}, round {number} ({load()})")
                conninfo = resolution.conninfo_from_url(db_url)
                with psycopg.connect(conninfo, **resolution.resolution_connection_kwargs()) as conn:
                    rounds[key].append(sql_suite(conn, settings, args.samples, args.seed + number))
        for key, results in rounds.items():
            report[key] = merge_rounds(results)
        if args.compare_indexes:
            for key, db_url in databases.items():
                say(f"index designs for step 1, {key} ({load()})")
                with psycopg.connect(
                    # read-write: each design is built (and rolled back) on this connection
                    resolution.conninfo_from_url(db_url),
                    **resolution.resolution_connection_kwargs(read_only=False),
                ) as conn:
                    report[f"{key}_indexes"] = index_comparison(conn, settings, args.samples, args.seed)
        if not args.skip_http:
            say(f"HTTP (wrk, one server process; {load()})")
            report["http_load_before"] = load()
            report["http"] = http_suite(cluster, main_db["url"], args)
            report["http_load_after"] = load()
    finally:
        if args.destroy:
            cluster.destroy()
    summary(report)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = OUT / f"resolve-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    say(f"written {path}")


def summary(report: dict[str, Any]) -> None:
    """Print the figures against the goals, with ratios to the baselines of the same run."""
    print("\n== Resolution benchmark ==")
    print(f"data: {report.get('sizes')}")
    sql = report.get("sql", {})
    for key, goal in (("code", 0.1), ("location", 0.5)):
        if key in sql:
            value = sql[key]["server_median_ms"]
            print(
                f"SQL {sql[key]['label']}: median {value} ms (goal < {goal}) "
                f"{'OK' if value < goal else 'MISSED'}"
            )
    for key in ("code_at", "location_at", "location_cable", "location_any", "area"):
        if key in sql:
            print(f"SQL {sql[key]['label']}: median {sql[key]['server_median_ms']} ms")
    http = report.get("http", {})
    if "code" in http:
        code = http["code"]
        print(
            f"HTTP by code: {code['requests_per_s']} req/s (goal >= 1500), "
            f"p99 {code['p99_ms']} ms (goal < 10)"
        )
        for base_key in ("tipg", "bare"):
            if base_key in http:
                ratio = code["requests_per_s"] / http[base_key]["requests_per_s"]
                print(
                    f"  vs {http[base_key]['label']} ({http[base_key]['requests_per_s']} req/s): {ratio:.2f}x"
                    + (" (goal >= 3x)" if base_key == "tipg" else "")
                )
        if "code_sync_log" in http:
            sync = http["code_sync_log"]
            print(
                f"  with the log written synchronously: {sync['requests_per_s']} req/s, "
                f"p99 {sync['p99_ms']} ms"
            )
    if "open311_post" in http:
        post = http["open311_post"]
        print(
            f"HTTP Open311 POST: {post['requests_per_s']} req/s (goal >= 500), p50 {post['p50_ms']} ms, "
            f"p99 {post['p99_ms']} ms (goal < 30), non-2xx {post['non_2xx']}"
            + (f", {post['socket_errors']}" if post["socket_errors"] else "")
        )
        for base_key in ("code", "bare"):
            if base_key in http:
                ratio = post["requests_per_s"] / http[base_key]["requests_per_s"]
                other = http[base_key]
                print(f"  vs {other['label']} ({other['requests_per_s']} req/s): {ratio:.2f}x")
        print(f"  rows written (warm-up included): {post['rows_written_with_warmup']}")
        if "open311_post_no_worker" in http:
            off = http["open311_post_no_worker"]
            print(
                f"  {off['label']}: {off['requests_per_s']} req/s, p50 {off['p50_ms']} ms, "
                f"p99 {off['p99_ms']} ms, non-2xx {off['non_2xx']}"
            )
    for layout, runs in http.get("open311_post_webhooks", {}).items():
        for run in runs:
            print(
                f"HTTP Open311 POST, live subscription, worker {layout}: {run['requests_per_s']} req/s, "
                f"p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, non-2xx {run['non_2xx']}; "
                f"{run['deliveries_received']} of {run['deliveries_made']} deliveries received, "
                f"webhook ms {run['webhook_ms']}; CPU ms/post: API {run['api_cpu_ms_per_post']}, "
                f"delivery process {run['child_cpu_ms_per_post']}"
            )
    if "location" in http:
        loc = http["location"]
        print(f"HTTP by location: {loc['requests_per_s']} req/s, p99 {loc['p99_ms']} ms (goal < 15)")
    if "location_gcj_category" in http:
        loc = http["location_gcj_category"]
        print(f"HTTP by location (gcj02 + category): {loc['requests_per_s']} req/s, p99 {loc['p99_ms']} ms")
    for key in ("sql_indexes", "growth_sql_indexes"):
        for label, entry in report.get(key, {}).items():
            print(
                f"index design ({key.split('_')[0]}): {label}: step 1 median {entry['server_median_ms']} ms"
            )
    growth = report.get("growth_sql")
    if growth:
        for key in ("code", "location"):
            ratio = growth[key]["server_median_ms"] / sql[key]["server_median_ms"]
            print(
                f"growth {sql[key]['label']}: {sql[key]['server_median_ms']} -> "
                f"{growth[key]['server_median_ms']} ms "
                f"= {ratio:.2f}x (goal < 1.5x)"
            )


if __name__ == "__main__":
    main()
