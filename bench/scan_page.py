"""Scan page benchmark: ``GET /c/{code}`` beside the JSON resolve-by-code, same tool, same run.

    python bench/scan_page.py --points 100000 --cables 10000 --seconds 15 --rounds 2

Builds (or reuses) a modest registry with the resolve benchmark's generator in its own throwaway
cluster (``--dir``, default /tmp/smartcode-bench-scan), starts one uvicorn process with default
settings, and drives it with ``wrk -t1 -c10`` over random paths from 5,000 codes (the resolve
benchmark's load and tool, ``bench/resolve/run.py``) for, in each round:

1. the JSON resolve by code, ``/api/v1/resolve?code=...`` (the reference);
2. the scan page for a typed code, ``/c/{code}`` (no signature: no label check);
3. the scan page as a label opens it, ``/c/{code}?s=...`` (signature checked, revocation looked up).

Rounds alternate between the three so that drift in the machine's speed hits them alike; the median
of the rounds is reported with the ratios to the JSON resolve. Latencies are wrk's (client side, with
the queueing of 10 connections on one process): an upper bound of the server time. Written to
``bench/out/scan-page-<timestamp>.json``. Never run from the tests.
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

from bench.resolve.run import (  # noqa: E402
    OUT,
    TOKEN,
    Server,
    load,
    prepare_database,
    sample_codes,
    say,
    wrk,
)
from common.settings import ApiSettings, DatabaseSettings, EmbeddedSettings, LabelSettings, Settings  # noqa: E402
from qr.signing import load_keys, sign  # noqa: E402
from registry import resolution  # noqa: E402
from registry.embedded import EmbeddedCluster  # noqa: E402

GOAL_P99_MS = 20.0


def main() -> None:
    """Parse options, build or reuse the data, measure, report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--cables", type=int, default=10_000)
    parser.add_argument("--dir", default="/tmp/smartcode-bench-scan", help="cluster directory (reused)")
    parser.add_argument("--seconds", type=int, default=15, help="duration of each wrk measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--destroy", action="store_true", help="delete the cluster afterwards")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    OUT.mkdir(parents=True, exist_ok=True)
    base_dir = Path(args.dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    base_dir.chmod(0o755)
    key_file = base_dir / "label-keys"
    cluster = EmbeddedCluster(base_dir / "pgdata", db_name="smartcode_bench_scan")
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": vars(args)}
    try:
        url = cluster.start()
        settings = Settings(
            database=DatabaseSettings(url=url),
            api=ApiSettings(api_token=TOKEN),
            embedded=EmbeddedSettings(data_dir=base_dir / "pgdata"),
            labels=LabelSettings(key_file=key_file),
        )
        db = prepare_database(cluster, args.points, args.cables, settings, spatial_order=True)
        report["sizes"] = db["sizes"]
        report["http"] = measure(db["url"], key_file, args)
    finally:
        if args.destroy:
            cluster.destroy()
    summary(report)
    path = OUT / f"scan-page-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    say(f"written {path}")


def measure(url: str, key_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The three paths in alternating rounds on one server process; medians and ratios."""
    rng = random.Random(args.seed)
    with psycopg.connect(resolution.conninfo_from_url(url), autocommit=True) as conn:
        codes = sample_codes(conn, 5000, rng)
    keys = load_keys(key_file)
    suites = {
        "resolve_json": ("resolve by code (JSON)", [f"/api/v1/resolve?code={c}" for c in codes]),
        "page_typed": ("scan page, typed code", [f"/c/{c}" for c in codes]),
        "page_label": ("scan page, signed label", [f"/c/{c}?s={sign(c, keys)}" for c in codes]),
    }
    env = {
        **os.environ,
        "SMARTCODE_DATABASE_URL": url,
        "SMARTCODE_API_TOKEN": TOKEN,
        "SMARTCODE_LABELS_KEY_FILE": str(key_file),
        "PYTHONPATH": str(ROOT),
    }
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    base = f"http://127.0.0.1:{args.port}"
    cmd = [uvicorn, "--factory", "api.app:create_app", "--host", "127.0.0.1", "--port", str(args.port)]
    cmd += ["--no-access-log", "--log-level", "warning"]
    server = Server(cmd, env, f"{base}/api/v1/health", OUT / "server-scan-page.log")
    rounds: dict[str, list[dict[str, Any]]] = {key: [] for key in suites}
    try:
        with urllib.request.urlopen(f"{base}/c/{codes[0]}?s={sign(codes[0], keys)}") as response:
            page = response.read()
        assert b'data-label-status="valid"' in page, "the signed page did not verify: wrong key file?"
        for number in range(1, args.rounds + 1):
            for key, (label, paths) in suites.items():
                say(f"round {number}, {label} ({load()})")
                rounds[key].append(
                    wrk(
                        base,
                        paths,
                        label,
                        seconds=args.seconds,
                        connections=args.connections,
                        headers=[],
                    )
                )
    finally:
        server.stop()
    results: dict[str, Any] = {"page_bytes": len(page), "load_after": load()}
    for key, runs in rounds.items():
        results[key] = {
            "label": runs[0]["label"],
            "requests_per_s": round(statistics.median(r["requests_per_s"] for r in runs), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
            "non_2xx": sum(r["non_2xx"] for r in runs),
            "rounds": runs,
        }
    reference = results["resolve_json"]
    for key in ("page_typed", "page_label"):
        entry = results[key]
        entry["p99_ratio_to_json"] = round(entry["p99_ms"] / reference["p99_ms"], 2)
        entry["throughput_ratio_to_json"] = round(entry["requests_per_s"] / reference["requests_per_s"], 2)
        entry["meets_p99_goal"] = entry["p99_ms"] < GOAL_P99_MS
    return results


def summary(report: dict[str, Any]) -> None:
    """Print the figures as the docs table shows them."""
    http = report["http"]
    print(f"assets: {report['sizes']}; page size {http['page_bytes']} bytes; {http['load_after']}")
    print("| path | req/s | p50 ms | p99 ms | p99 / JSON | req/s / JSON |")
    print("|---|---|---|---|---|---|")
    for key in ("resolve_json", "page_typed", "page_label"):
        e = http[key]
        print(
            f"| {e['label']} | {e['requests_per_s']} | {e['p50_ms']} | {e['p99_ms']} | "
            f"{e.get('p99_ratio_to_json', 1.0)}x | {e.get('throughput_ratio_to_json', 1.0)}x |"
        )


if __name__ == "__main__":
    main()
