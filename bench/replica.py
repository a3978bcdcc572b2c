"""Replica benchmark: resolve by code and by location through the streaming standby beside the primary.

    python bench/replica.py --points 100000 --cables 20000 --seconds 10

In one run on one machine (both servers share its cores and disk):

1. a throwaway embedded cluster under ``--dir`` (reused by later runs) gets a generated registry
   (``bench/resolve/generate.py``), then a standby made by ``smartcode db replica create``'s code
   (``registry/replica.py``), waited for until it has replayed everything;
2. SQL alone: the resolver's statements (``bench/resolve/run.py``'s suite: planning + execution and
   the client round trip), in ``--rounds`` rounds alternating between the primary and the standby;
3. HTTP with ``wrk`` (one server process, ``--connections``): resolve by code (anonymous) and by
   location with a class, once with lookups on the primary (no read URL) and once with
   ``SMARTCODE_DATABASE_READ_URL`` naming the standby, alternating; ``X-Served-By`` is checked first.

Figures go to ``bench/out/replica-<timestamp>.json``. Never run from the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.resolve import generate  # noqa: E402
from bench.resolve.run import (  # noqa: E402
    OUT,
    TOKEN,
    Server,
    load,
    merge_rounds,
    prepare_database,
    sample_codes,
    sample_points,
    say,
    sql_suite,
    wrk,
)
from common.settings import ApiSettings, DatabaseSettings, EmbeddedSettings, Settings  # noqa: E402
from registry import resolution  # noqa: E402
from registry.embedded import EmbeddedCluster  # noqa: E402
from registry.replica import StandbyCluster  # noqa: E402


def wait_caught_up(standby: StandbyCluster, timeout: float = 600.0) -> float:
    """Seconds until the standby has replayed all the primary wrote."""
    started = time.monotonic()
    while True:
        st = standby.replica_status()
        if st.state == "streaming" and st.lag_bytes == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            sys.exit(f"the standby did not catch up within {timeout:.0f} s: {st}")
        time.sleep(0.5)


def served_by(base: str, code: str) -> str:
    """Which server answered a lookup (the X-Served-By header; 'primary' without a replica)."""
    with urllib.request.urlopen(f"{base}/api/v1/resolve?code={code}", timeout=10) as response:
        return response.headers.get("x-served-by") or "primary"


def http_suite(primary_url: str, replica_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """wrk by code and by location, lookups on the primary and on the standby, alternating."""
    rng = random.Random(args.seed + 1)
    with psycopg.connect(resolution.conninfo_from_url(primary_url), autocommit=True) as conn:
        codes = sample_codes(conn, 5000, rng)
    classes = list(generate.POINT_CLASSES)
    location_paths = [
        f"/api/v1/resolve?lon={lon:.6f}&lat={lat:.6f}&class={rng.choice(classes)}"
        for lon, lat in sample_points(5000, rng)
    ]
    code_paths = [f"/api/v1/resolve?code={c}" for c in codes]
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SMARTCODE_")},
        "SMARTCODE_DATABASE_URL": primary_url,
        "SMARTCODE_API_TOKEN": TOKEN,
        "SMARTCODE_ANONYMOUS_RATE_PER_MINUTE": "0",  # wrk asks from one address (see bench/resolve/run.py)
        "PYTHONPATH": str(ROOT),
    }
    cmd = [uvicorn, "--factory", "api.app:create_app", "--host", "127.0.0.1", "--port", str(args.port)]
    cmd += ["--no-access-log", "--log-level", "warning"]
    base = f"http://127.0.0.1:{args.port}"
    common = dict(seconds=args.seconds, connections=args.connections)
    auth = [f"Authorization: Bearer {TOKEN}"]
    results: dict[str, list[dict[str, Any]]] = {}
    for number in range(1, args.http_rounds + 1):
        for target in ("primary", "replica"):
            env = dict(base_env)
            if target == "replica":
                env["SMARTCODE_DATABASE_READ_URL"] = replica_url
            say(f"HTTP, lookups on the {target}, round {number} ({load()})")
            server = Server(cmd, env, f"{base}/api/v1/health", OUT / f"server-replica-{target}.log")
            try:
                answered_by = served_by(base, codes[0])
                if answered_by != target:
                    sys.exit(f"lookups were to read on the {target} but {answered_by} answered")
                by_code = wrk(base, code_paths, f"by code, {target}", headers=[], **common)
                by_place = wrk(base, location_paths, f"by location, {target}", headers=auth, **common)
            finally:
                server.stop()
            results.setdefault(f"code_{target}", []).append(by_code)
            results.setdefault(f"location_{target}", []).append(by_place)
    return results


def main() -> None:
    """Build or reuse the registry and its standby, measure both, report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--cables", type=int, default=20_000)
    parser.add_argument("--dir", default="/tmp/smartcode-bench-replica")
    parser.add_argument("--samples", type=int, default=1000, help="random inputs per SQL statement and round")
    parser.add_argument("--rounds", type=int, default=3, help="SQL rounds, alternating primary and standby")
    parser.add_argument("--http-rounds", type=int, default=2, help="HTTP rounds, alternating")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each HTTP measurement")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--destroy", action="store_true", help="delete the clusters afterwards")
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.skip_http:
        sys.exit("wrk is needed for the HTTP part: apt-get install wrk (or pass --skip-http)")
    OUT.mkdir(parents=True, exist_ok=True)
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    cluster = EmbeddedCluster(base / "pgdata", db_name="smartcode_bench_replica")
    standby = StandbyCluster(cluster)
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": vars(args)}
    try:
        url = cluster.start()
        settings = Settings(
            database=DatabaseSettings(url=url),
            api=ApiSettings(api_token=TOKEN),
            embedded=EmbeddedSettings(data_dir=base / "pgdata"),
        )
        prepared = prepare_database(cluster, args.points, args.cables, settings, spatial_order=True)
        report["sizes"] = prepared["sizes"]
        started = time.monotonic()
        replica_url = standby.create()
        report["replica_create_s"] = round(time.monotonic() - started, 1)
        report["replica_catch_up_s"] = round(wait_caught_up(standby), 1)
        say(f"standby ready: created in {report['replica_create_s']} s")
        targets = {"primary": url, "replica": replica_url}
        rounds: dict[str, list[dict[str, Any]]] = {key: [] for key in targets}
        for number in range(1, args.rounds + 1):
            for key, db_url in targets.items():
                say(f"SQL alone, {key}, round {number} ({load()})")
                conninfo = resolution.conninfo_from_url(db_url)
                with psycopg.connect(conninfo, **resolution.resolution_connection_kwargs()) as conn:
                    rounds[key].append(sql_suite(conn, settings, args.samples, args.seed + number))
        for key, results in rounds.items():
            report[f"sql_{key}"] = merge_rounds(results)
        if not args.skip_http:
            report["http_load_before"] = load()
            report["http"] = http_suite(url, replica_url, args)
            report["http_load_after"] = load()
    finally:
        if args.destroy:
            standby.destroy()
            cluster.destroy()
    summary(report)
    path = OUT / f"replica-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    say(f"written {path}")


def summary(report: dict[str, Any]) -> None:
    """Primary and standby side by side, with the standby's ratio."""
    print("\n== Replica benchmark ==")
    print(f"data: {report.get('sizes')}; standby made in {report.get('replica_create_s')} s")
    primary, replica = report.get("sql_primary", {}), report.get("sql_replica", {})
    print("SQL alone, server median ms (primary / standby):")
    for key, entry in primary.items():
        other = replica.get(key)
        if other is None:
            continue
        a, b = entry["server_median_ms"], other["server_median_ms"]
        print(f"  {entry['label']}: {a} / {b}  (standby {b / a:.2f}x)")
    for kind in ("code", "location"):
        runs = report.get("http", {})
        p, r = runs.get(f"{kind}_primary"), runs.get(f"{kind}_replica")
        if not p or not r:
            continue
        p_rps = statistics.median(x["requests_per_s"] for x in p)
        r_rps = statistics.median(x["requests_per_s"] for x in r)
        print(
            f"HTTP by {kind}, median of rounds: primary {p_rps:.0f} req/s, standby {r_rps:.0f} req/s "
            f"(standby {r_rps / p_rps:.2f}x; rounds: {[x['requests_per_s'] for x in p]} / "
            f"{[x['requests_per_s'] for x in r]})"
        )


if __name__ == "__main__":
    main()
