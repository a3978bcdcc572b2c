"""Benchmark: stream a large GeoJSON of points through the importer's reading layer.

Generates N point features (数字城管 attributes, Pingshan coordinates) into a GeoJSON file, then
reads it in a fresh child process per size so each peak RSS is that run's own, and prints time,
throughput and peak RSS. Peak memory should stay flat as N grows: the file is streamed in chunks.

    .venv/bin/python bench/read_geojson.py                     # N = 100k and 1M, read only
    .venv/bin/python bench/read_geojson.py --map               # also map every chunk (szcg profile)
    .venv/bin/python bench/read_geojson.py --sizes 2000000 --gdal   # GDAL's reader, for comparison
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["上水井盖", "污水井盖", "雨水井盖", "电力井盖", "立杆", "路灯"]
OWNERS = ["深圳市水务集团有限公司", "深圳供电局有限公司", "中国电信股份有限公司深圳分公司"]


def generate(path: Path, n: int, seed: int = 1) -> None:
    """Write ``n`` point features, one per line, the way GDAL and QGIS export them."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write('{"type":"FeatureCollection","name":"bench","features":[\n')
        for i in range(n):
            props = {
                "OBJCODE": f"4403100101{i % 1_000_000:06d}",
                "OBJNAME": CLASSES[i % len(CLASSES)],
                "DEPTNAME2": OWNERS[i % len(OWNERS)],
                "OBJSTATE": "完好" if i % 10 else "破损",
                "OBJUPTODAT": "在用",
                "ORDATE": f"2019-{1 + i % 12:02d}-{1 + i % 28:02d}",
                "BGID": f"44031000{1 + i % 99:02d}{i % 10000:04d}",
            }
            geometry = {
                "type": "Point",
                "coordinates": [
                    round(114.28 + rng.random() * 0.17, 7),
                    round(22.63 + rng.random() * 0.15, 7),
                ],
            }
            feature = {"type": "Feature", "properties": props, "geometry": geometry}
            out.write(json.dumps(feature, ensure_ascii=False, separators=(",", ":")))
            out.write(",\n" if i < n - 1 else "\n")
        out.write("]}\n")


def child(path: str, do_map: bool, gdal: bool, chunk_size: int) -> None:
    """Runs in the child process: read (and map) the file, print one JSON line of measurements."""
    sys.path.insert(0, str(ROOT))
    from importers.formats import open_source
    from importers.mapping import map_chunk
    from importers.profiles import default_profile

    profile = default_profile()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    baseline_kb, cpu_start = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    rows = problems = 0
    if gdal:
        import shapely
        from pyogrio.raw import open_arrow

        with open_arrow(path, batch_size=chunk_size, use_pyarrow=True) as (meta, reader):
            name = meta.get("geometry_name") or "wkb_geometry"
            for batch in reader:
                shapely.from_wkb(batch.column(name).to_numpy(zero_copy_only=False))
                rows += batch.num_rows
    else:
        _info, chunks = open_source(path, chunk_size=chunk_size)
        for chunk in chunks:
            rows += len(chunk)
            problems += len(chunk.problems)
            if do_map:
                draft = map_chunk(chunk, profile)
                problems += len(draft.problems) - len(chunk.problems)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_start
    peak_kb = usage.ru_maxrss
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "cpu": cpu,
                "peak_mb": peak_kb / 1024,
                "baseline_mb": baseline_kb / 1024,
                "problems": problems,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--map", action="store_true", help="also map each chunk with the szcg profile")
    parser.add_argument("--gdal", action="store_true", help="read with GDAL's GeoJSON driver instead")
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write the files (default: a temp dir)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.map, args.gdal, args.chunk_size)
        return
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="smartcode-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    mode = "gdal" if args.gdal else ("read+map" if args.map else "read")
    header = ("N", "mode", "MB file", "seconds", "CPU s", "rows/s", "peak RSS MB", "after import MB")
    print("{:>10} {:>9} {:>8} {:>8} {:>8} {:>10} {:>12} {:>16}".format(*header))
    for n in args.sizes:
        path = workdir / f"points-{n}.geojson"
        if not path.exists():
            generate(path, n)
        command = [sys.executable, __file__, "--child", str(path), "--chunk-size", str(args.chunk_size)]
        command += ["--map"] if args.map else []
        command += ["--gdal"] if args.gdal else []
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        assert result["rows"] == n, result
        size_mb = path.stat().st_size / 2**20
        print(
            f"{n:>10} {mode:>9} {size_mb:>8.0f} {result['seconds']:>8.2f} {result['cpu']:>8.2f} "
            f"{n / result['seconds']:>10.0f} "
            f"{result['peak_mb']:>12.0f} {result['baseline_mb']:>16.0f}"
        )


if __name__ == "__main__":
    main()
