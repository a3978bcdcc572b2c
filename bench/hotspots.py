"""Benchmark: the hot-spot check on the complaint write path (docs/hotspots.md), on a registry of complaints.

Starts a throwaway cluster, migrates it, loads ``--complaints`` complaints (default 200,000) received over
the last 90 days across Pingshan: 20 categories, a third with a scanned code among 20,000 assets, a few
dense places. Then, for ``--samples`` new complaints (each inserted like the service does, then checked
with :func:`registry.hotspots.check_complaint`, in one transaction), prints the check's latency (p50,
p99) and the EXPLAIN (ANALYZE, BUFFERS) of both count queries for one of them.

    .venv/bin/python bench/hotspots.py                     # 200,000 complaints, 2,000 samples
    .venv/bin/python bench/hotspots.py --complaints 20000  # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from psycopg import AsyncConnection  # noqa: E402

from common.settings import DatabaseSettings, HotspotSettings, Settings  # noqa: E402
from registry import hotspots  # noqa: E402
from registry.db import migrate  # noqa: E402
from registry.embedded import EmbeddedCluster  # noqa: E402
from registry.resolution import conninfo_from_url  # noqa: E402

CATEGORIES = [f"类别{i:02d}" for i in range(20)]
# Pingshan, roughly (lon, lat).
WEST, EAST, SOUTH, NORTH = 114.28, 114.45, 22.63, 22.78

_LOAD = """
INSERT INTO complaints (reference, source, received_at, category, asset_code, geom, resolution, actor,
                        status_at, status_by)
SELECT 'B-' || g, 'api', now() - random() * interval '90 days', (%(cats)s::text[])[1 + (g %% 20)],
       CASE WHEN g %% 3 = 0 THEN '44031001180' || lpad((g %% 20000)::text, 6, '0') END,
       CASE WHEN g %% 10 = 0  -- a tenth at 50 busy places, the rest spread over the district
            THEN ST_SetSRID(ST_MakePoint(114.30 + (g %% 50) * 0.002 + random() * 0.0004,
                                         22.65 + (g %% 50) * 0.001 + random() * 0.0004), 4326)
            ELSE ST_SetSRID(ST_MakePoint(%(w)s + random() * (%(e)s - %(w)s),
                                         %(s)s + random() * (%(n)s - %(s)s)), 4326) END,
       '{}', 'bench', now(), 'bench'
FROM generate_series(%(a)s::int, %(b)s::int) g
"""

_ONE = """
INSERT INTO complaints (reference, source, category, asset_code, geom, resolution, actor, status_by)
VALUES (%(ref)s, 'api', %(cat)s, %(code)s, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), '{}', 'bench',
        'bench')
RETURNING id, received_at
"""


async def _measure(
    conn: AsyncConnection[Any], rules: HotspotSettings, samples: int, prefix: str
) -> dict[str, Any]:
    """Insert and check ``samples`` new complaints; the insert and check timings (ms) and one sample."""
    rng = random.Random(20261206)
    inserts: list[float] = []
    checks: list[float] = []
    sample: dict[str, Any] = {}
    for i in range(samples):
        busy = i % 10 == 0
        lon = 114.30 + (i % 50) * 0.002 if busy else rng.uniform(WEST, EAST)
        lat = 22.65 + (i % 50) * 0.001 if busy else rng.uniform(SOUTH, NORTH)
        code = f"44031001180{rng.randrange(20000):06d}" if i % 3 == 0 else None
        params = {"ref": f"{prefix}-{i}", "cat": rng.choice(CATEGORIES), "code": code, "lon": lon, "lat": lat}
        async with conn.transaction():
            t0 = time.perf_counter()
            cur = await conn.execute(_ONE, params)
            row = await cur.fetchone()
            assert row is not None
            inserts.append((time.perf_counter() - t0) * 1000)
            new = hotspots.NewComplaint(
                id=row[0],
                reference=params["ref"],
                received_at=row[1],
                asset_code=code,
                category=params["cat"],
                located=True,
                owner_id=None,
            )
            t0 = time.perf_counter()
            await hotspots.check_complaint(conn, new, rules)
            checks.append((time.perf_counter() - t0) * 1000)
        if busy and code is not None and not sample:
            sample = {"id": row[0], "at": row[1], "code": code, "category": params["cat"]}
    return {"insert": sorted(inserts), "check": sorted(checks), "sample": sample}


def _report(label: str, measured: dict[str, Any]) -> None:
    for key in ("insert", "check"):
        timings = measured[key]
        p99 = timings[int(len(timings) * 0.99) - 1]
        print(
            f"{label}: {key} over {len(timings):,} complaints: p50 {statistics.median(timings):.2f} ms, "
            f"p99 {p99:.2f} ms, max {timings[-1]:.2f} ms"
        )


async def run(url: str, args: argparse.Namespace) -> None:
    """Load, then measure."""
    conninfo = conninfo_from_url(url)
    rules = HotspotSettings(min_complaints=3, window_days=7, radius_m=50)
    async with await AsyncConnection.connect(conninfo, autocommit=True) as conn:
        started = time.perf_counter()
        step = 50_000
        for a in range(1, args.complaints + 1, step):
            b = min(a + step - 1, args.complaints)
            await conn.execute(
                _LOAD,
                {"cats": CATEGORIES, "a": a, "b": b, "w": WEST, "e": EAST, "s": SOUTH, "n": NORTH},
            )
        await conn.execute("VACUUM ANALYZE complaints")
        print(f"loaded {args.complaints:,} complaints in {time.perf_counter() - started:.1f} s")

        baseline = await _measure(conn, rules, args.samples, "S")
        _report("complaints_category_geom_m_gist (category, received_at, geom_m)", baseline)
        sample = baseline["sample"]
        if args.compare_index:
            # The alternative design, on the same registry: a plain GiST on the metric point, with the
            # category and the window as filters on the few complaints near the new one.
            await conn.execute("DROP INDEX complaints_category_geom_m_gist")
            await conn.execute(
                "CREATE INDEX bench_geom_m_gist ON complaints USING gist (geom_m) "
                "WHERE geom_m IS NOT NULL AND category IS NOT NULL"
            )
            other = await _measure(conn, rules, args.samples, "T")
            _report("gist (geom_m) only", other)
            for key in ("insert", "check"):
                ratio = statistics.median(baseline[key]) / statistics.median(other[key])
                print(f"  {key} p50 ratio (3-column gist / geom_m gist): {ratio:.2f}x")
        cur = await conn.execute("SELECT count(*) FROM hotspot_warnings")
        print(f"warnings raised: {(await cur.fetchone() or [0])[0]}")

        params = {"id": sample["id"], "at": sample["at"], "code": sample["code"], "days": 7, "r": 50.0}
        for name, sql in (("asset", hotspots.COUNT_ASSET_SQL), ("place", hotspots.COUNT_PLACE_SQL)):
            cur = await conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            print(f"\n-- the {name} count (complaint {sample['id']})")
            for (line,) in await cur.fetchall():
                print(line)


def main() -> None:
    """Parse options, start a throwaway cluster, run, clean up."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--complaints", type=int, default=200_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument(
        "--compare-index",
        action="store_true",
        help="then measure again with a plain GiST on geom_m instead of the three-column one",
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="smartcode-bench-hotspots-"))
    base.chmod(0o755)
    cluster = EmbeddedCluster(base / "pgdata", db_name="smartcode_hotspots", fast_unsafe=True)
    try:
        url = cluster.start()
        migrate(url, settings=Settings(database=DatabaseSettings(url=url)))
        asyncio.run(run(url, args))
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
