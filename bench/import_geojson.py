"""Benchmark: import N GeoJSON points into the registry, against ogr2ogr loading the same file.

Generates a 数字城管-style FeatureCollection of N points in Pingshan (OBJCODE empty, so every
feature gets a code allocated; class by OBJNAME; owner/maintainer/supervisor by name), starts a
throwaway embedded PostgreSQL cluster under /tmp, migrates it, and for each N:

* runs ``ogr2ogr`` (PG_USE_COPY=YES) loading the same file into a plain PostGIS table, then
  ``smartcode``'s importer (full validation, unit matching, code allocation, history) into the
  emptied registry, in a fresh child process so that its peak RSS is that run's own;
* repeats that ``--rounds`` times (default 3) and prints each round's times, the importer's
  phases and peak RSS, and the median of the rounds' ratios;
* then re-imports the same file (all unchanged) and imports N/10 new features into the registry
  that now holds N (index maintenance on a loaded table).

    .venv/bin/python bench/import_geojson.py                       # N = 100k and 1M
    .venv/bin/python bench/import_geojson.py --sizes 20000 --keep  # small run, keep the cluster
    .venv/bin/python bench/import_geojson.py --explain             # EXPLAIN ANALYZE of the merge

Never run as a test: it takes minutes and a few GB of disk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["路灯", "上水井盖", "污水井盖", "雨水井盖", "电力井盖", "通讯井盖"]
OWNERS = [
    "深圳供电局有限公司",
    "深圳市水务集团有限公司",
    "中国电信股份有限公司深圳分公司",
    "坪山区路灯管理所",
]
SUPERVISOR = "深圳市坪山区城市管理和综合执法局"


def generate(path: Path, n: int, seed: int = 1) -> None:
    """Write ``n`` point features with 数字城管 attributes, one per line, as GDAL exports them."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write('{"type":"FeatureCollection","name":"bench","features":[\n')
        for i in range(n):
            props = {
                "OBJCODE": "",
                "OBJNAME": CLASSES[i % len(CLASSES)],
                "DEPTNAME1": SUPERVISOR,
                "DEPTNAME2": OWNERS[i % len(OWNERS)],
                "DEPTNAME3": OWNERS[(i + 1) % len(OWNERS)],
                "BGID": f"44031000{1 + i % 99:02d}{i % 10000:04d}",
                "OBJSTATE": "完好" if i % 10 else "破损",
                "OBJUPTODAT": "在用",
                "ORDATE": f"2019-{1 + i % 12:02d}-{1 + i % 28:02d}",
                "DATASOURCE": "实测",
            }
            geometry = {
                "type": "Point",
                "coordinates": [
                    round(114.29 + rng.random() * 0.14, 7),
                    round(22.64 + rng.random() * 0.12, 7),
                ],
            }
            feature = {"type": "Feature", "properties": props, "geometry": geometry}
            out.write(json.dumps(feature, ensure_ascii=False, separators=(",", ":")))
            out.write(",\n" if i < n - 1 else "\n")
        out.write("]}\n")


def child(url: str, path: str) -> None:
    """Runs in the child process: one import, one JSON line of measurements on stdout."""
    sys.path.insert(0, str(ROOT))
    from common.settings import DatabaseSettings, Settings
    from importers.pipeline import ImportOptions, run_import
    from registry.db import Actor, make_engine

    settings = Settings(database=DatabaseSettings(url=url))
    engine = make_engine(url, pool_size=2)
    phases: dict[str, float] = {}
    last = [time.perf_counter(), "reading"]

    def progress(phase: str, _done: int, _total: int | None) -> None:
        now = time.perf_counter()
        if phase != last[1]:
            phases[str(last[1])] = phases.get(str(last[1]), 0.0) + now - float(last[0])
            last[0], last[1] = now, phase

    start = time.perf_counter()
    report = run_import(
        engine, path, Actor("bench", admin=True), settings, ImportOptions(), progress=progress
    )
    seconds = time.perf_counter() - start
    phases[str(last[1])] = phases.get(str(last[1]), 0.0) + time.perf_counter() - float(last[0])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"seconds": seconds, "peak_rss_mb": peak_mb, "counts": report.counts(), "phases": phases},
            ensure_ascii=False,
        )
    )


def run_importer(url: str, path: Path) -> dict[str, object]:
    """One import in a fresh interpreter (so ru_maxrss is this run's own)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", url, str(path)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"importer failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_ogr2ogr(conninfo: str, path: Path, table: str) -> dict[str, object]:
    """ogr2ogr into a plain PostGIS table (COPY, spatial index), timed with its peak RSS."""
    ogr = shutil.which("ogr2ogr")
    if ogr is None:
        return {"seconds": None, "note": "ogr2ogr not found: apt-get install gdal-bin"}
    cmd = [ogr, "-f", "PostgreSQL", f"PG:{conninfo}", str(path), "-nln", table, "-overwrite"]
    cmd += ["-lco", "GEOMETRY_NAME=geom", "-lco", "SPATIAL_INDEX=GIST"]
    env = dict(os.environ, PG_USE_COPY="YES")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"ogr2ogr failed: {proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": seconds, "peak_rss_mb": peak / 1024 if peak > before else None}


def reset(url: str) -> None:
    """Empty the registry (assets and everything around them) between runs."""
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import text

    from registry.db import make_engine

    engine = make_engine(url, pool_size=1)
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE assets, asset_history, asset_responsibility, import_batches, code_serials, "
                "audit_log, units RESTART IDENTITY CASCADE"
            )
        )
        conn.execute(text("CHECKPOINT"))
    engine.dispose()


def explain_merge(url: str, path: Path) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the plan and insert statements, on a rolled-back import."""
    sys.path.insert(0, str(ROOT))
    captured: list[str] = []
    from sqlalchemy import event

    from registry.db import make_engine

    engine = make_engine(url, pool_size=1)

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _explain(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        head = statement.lstrip()
        if head.startswith("CREATE TEMP TABLE import_plan"):
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            captured.append("\n".join(row[0] for row in cursor.fetchall()))
            cursor.execute("DROP TABLE import_plan")  # the statement itself runs next
        elif head.startswith(("INSERT INTO assets", "UPDATE assets a SET")):
            # EXPLAIN ANALYZE performs the write; the statement itself is then skipped.
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            captured.append("\n".join(row[0] for row in cursor.fetchall()))
            return "SELECT 1 WHERE false", {}
        return statement, parameters

    from common.settings import DatabaseSettings, Settings
    from importers.pipeline import ImportOptions, run_import
    from registry.db import Actor

    def stop(point: str) -> None:
        if point == "written":
            raise RuntimeError("explain only")

    with contextlib.suppress(RuntimeError):
        run_import(
            engine,
            path,
            Actor("bench", admin=True),
            Settings(database=DatabaseSettings(url=url)),
            ImportOptions(),
            fault=stop,
        )
    return "\n\n".join(captured)


def main() -> None:
    """Parse arguments, run the sizes, print a table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keep", action="store_true", help="keep the cluster and files in /tmp")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the merge")
    parser.add_argument("--no-ogr", action="store_true", help="skip ogr2ogr")
    parser.add_argument("--rounds", type=int, default=3, help="ogr2ogr/importer rounds per size (median)")
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    sys.path.insert(0, str(ROOT))
    from common.settings import DatabaseSettings, Settings
    from registry.db import migrate
    from registry.embedded import EmbeddedCluster

    base = Path(tempfile.mkdtemp(prefix="smartcode-import-bench-"))
    base.chmod(0o755)
    cluster = EmbeddedCluster(base / "pgdata", db_name="bench")
    try:
        url = cluster.start()
        migrate(url, settings=Settings(database=DatabaseSettings(url=url)))
        print(f"cluster: {cluster.socket_dir} (fsync and full_page_writes on, as in production)")
        for n in args.sizes:
            path = base / f"points-{n}.geojson"
            start = time.perf_counter()
            generate(path, n)
            size_mb = path.stat().st_size / 1e6
            print(f"\nN = {n:,}: generated {size_mb:,.0f} MB in {time.perf_counter() - start:.1f} s")
            print(f"  load average before: {os.getloadavg()[0]:.2f} (2 cores; other work skews timings)")
            # Rounds of ogr2ogr then the importer, each after a CHECKPOINT so neither pays for the
            # other's WAL; the machine drifts (the same run of ogr2ogr took 12.2-17.2 s over one
            # afternoon), so the median of the rounds' ratios is the figure that counts.
            ratios: list[float] = []
            runs: list[float] = []
            for round_no in range(1, args.rounds + 1):
                reset(url)
                ogr: dict[str, object] = {"seconds": None}
                if not args.no_ogr:
                    ogr = run_ogr2ogr(cluster.conninfo(), path, f"ogr_points_{n}")
                reset(url)
                ours = run_importer(url, path)
                seconds = float(ours["seconds"])  # type: ignore[arg-type]
                runs.append(seconds)
                phases = ours["phases"]
                print(
                    f"round {round_no}: importer {seconds:.1f} s ({n / seconds:,.0f} rows/s; "
                    + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())  # type: ignore[attr-defined]
                    + f"), peak RSS {float(ours['peak_rss_mb']):.0f} MB"  # type: ignore[arg-type]
                )
                if ogr.get("seconds"):
                    ogr_seconds = float(ogr["seconds"])  # type: ignore[arg-type]
                    ratios.append(seconds / ogr_seconds)
                    print(f"         ogr2ogr  {ogr_seconds:.1f} s; importer / ogr2ogr = {ratios[-1]:.2f}x")
            print(f"importer: median {statistics.median(runs):.1f} s, counts {ours['counts']}")
            if ratios:
                median = statistics.median(ratios)
                print(f"importer / ogr2ogr: median {median:.2f}x over {len(ratios)} rounds")
            reimport = run_importer(url, path)
            print(
                f"re-import of the same file: {float(reimport['seconds']):.1f} s, counts {reimport['counts']}"
            )  # type: ignore[arg-type]
            # A later, smaller import into the registry that now holds N assets: what a district
            # adding a survey to a loaded registry waits for (index maintenance, no empty table).
            more = base / f"points-{n}-more.geojson"
            generate(more, n // 10, seed=2)
            added = run_importer(url, more)
            added_seconds = float(added["seconds"])  # type: ignore[arg-type]
            print(
                f"then {n // 10:,} new features into the {n:,}: {added_seconds:.1f} s "
                f"({n // 10 / added_seconds:,.0f} rows/s), counts {added['counts']}"
            )
            more.unlink()
            if args.explain and n == args.sizes[0]:
                reset(url)
                print(explain_merge(url, path))
            print(f"  load average after: {os.getloadavg()[0]:.2f}")
            path.unlink()
    finally:
        if args.keep:
            print(f"kept: {base}")
        else:
            cluster.destroy()
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
