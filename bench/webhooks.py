"""Benchmark: commit-to-receipt latency of signed webhooks, against a bare LISTEN/NOTIFY round trip.

Starts a throwaway embedded PostgreSQL cluster under /tmp, migrates it, subscribes a live local
receiver (an HTTP/1.1 server thread in this process) to every event, and runs ``smartcode worker`` as
a child process with the default settings. Then:

* ``webhooks``: N events (default 2,000), each committed in its own transaction through
  ``registry.events.emit`` at ``--rate`` events per second (0: as fast as one connection commits);
  latency = the receiver's clock at the request minus the clock just after ``commit()`` returned.
* ``notify``: the same number of bare ``NOTIFY`` commits at the same rate, heard by a ``LISTEN``
  connection in this process: the floor any outbox-driven delivery stands on;
* ``notify + POST``: the same, the listener POSTing each notification's payload to the receiver at
  once (one keep-alive connection): the least a delivery costs, nothing read, signed or recorded.

Prints p50 / p95 / p99 / max of each, the ratios to ``notify + POST``, throughput and duplicates (requests per
``webhook-id`` beyond one). The goal of issue 15: p99 under 1 s.

    .venv/bin/python bench/webhooks.py                    # 2,000 events at 200/s
    .venv/bin/python bench/webhooks.py --rate 0 -n 2000   # a burst
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max of ``values`` in milliseconds."""
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1] * 1000}


class Receiver:
    """Records the arrival time of every webhook-id it is sent (answers 200, keeps the connection)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                now = time.time()
                self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.arrivals.setdefault(self.headers["webhook-id"], []).append(now)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """Where the subscription points."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def pace(i: int, start: float, rate: float) -> None:
    """Sleep until event ``i`` is due at ``rate`` per second (no sleep at rate 0)."""
    if rate > 0:
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def run_webhooks(app_url: str, owner_url: str, n: int, rate: float) -> dict[str, object]:
    """Commit ``n`` events with a worker and a receiver running; latencies in seconds."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from common.settings import WebhookSettings
    from registry.db import Actor, make_engine, transaction
    from registry.events import emit
    from registry.webhooks import create_subscription

    receiver = Receiver()
    engine = make_engine(app_url, pool_size=2)
    with transaction(engine) as session:
        create_subscription(
            session, Actor("bench", admin=True), WebhookSettings(), url=receiver.url, events=["*"]
        )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SMARTCODE_DATABASE_URL": owner_url}
    log_path = Path(tempfile.gettempdir()) / f"smartcode-webhook-bench-worker-{os.getpid()}.log"
    log_file = log_path.open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
        env=env,
        cwd=tempfile.gettempdir(),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(3.0)  # the worker's start-up (imports, migration check) is not what is measured
        committed: dict[str, float] = {}
        start = time.perf_counter()
        with Session(engine) as session:
            for i in range(n):
                pace(i, start, rate)
                with session.begin():
                    event_id = emit(session, "asset.created", {"n": i}, subject=f"S{i % 50}")
                committed[f"evt_{event_id}"] = time.time()
        emitted = time.perf_counter() - start
        deadline = time.monotonic() + 120
        while len(receiver.arrivals) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        finished = time.perf_counter() - start
        with engine.connect() as conn:
            request_ms = conn.execute(
                text("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FROM webhook_attempts")
            ).scalar()
    finally:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
        receiver.server.shutdown()
        engine.dispose()
        log_file.close()
    if len(receiver.arrivals) < n:
        print(f"worker log ({log_path}):\n" + "\n".join(log_path.read_text().splitlines()[-30:]))
    latencies = [receiver.arrivals[k][0] - t for k, t in committed.items() if k in receiver.arrivals]
    duplicates = sum(len(v) - 1 for v in receiver.arrivals.values())
    return {
        "latencies": latencies,
        "received": len(latencies),
        "duplicates": duplicates,
        "emit_s": emitted,
        "all_received_s": finished,
        "request_p50_ms": request_ms,
    }


def run_baseline(conninfo: str, n: int, rate: float) -> list[float]:
    """Bare NOTIFY commits heard by a LISTEN connection: latencies in seconds."""
    import psycopg

    heard: dict[str, float] = {}
    ready = threading.Event()

    def listen() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("LISTEN bench_baseline")
            ready.set()
            for note in conn.notifies(timeout=60, stop_after=n):
                heard[note.payload] = time.time()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(10)
    sent: dict[str, float] = {}
    with psycopg.connect(conninfo) as conn:
        start = time.perf_counter()
        for i in range(n):
            pace(i, start, rate)
            conn.execute("SELECT pg_notify('bench_baseline', %s)", (str(i),))
            conn.commit()
            sent[str(i)] = time.time()
    thread.join(60)
    return [heard[k] - t for k, t in sent.items() if k in heard]


def run_baseline_post(conninfo: str, n: int, rate: float) -> list[float]:
    """NOTIFY commits whose listener POSTs each payload to a receiver at once: latencies in seconds.

    The least any delivery costs: hearing the commit and one HTTP request, nothing read or recorded.
    """
    import httpx
    import psycopg

    receiver = Receiver()
    ready = threading.Event()

    def listen() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn, httpx.Client() as http:
            conn.execute("LISTEN bench_post")
            ready.set()
            for note in conn.notifies(timeout=60, stop_after=n):
                http.post(receiver.url, content=b"{}", headers={"webhook-id": note.payload})

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(10)
    sent: dict[str, float] = {}
    with psycopg.connect(conninfo) as conn:
        start = time.perf_counter()
        for i in range(n):
            pace(i, start, rate)
            conn.execute("SELECT pg_notify('bench_post', %s)", (str(i),))
            conn.commit()
            sent[str(i)] = time.time()
    thread.join(60)
    receiver.server.shutdown()
    return [receiver.arrivals[k][0] - t for k, t in sent.items() if k in receiver.arrivals]


def main() -> None:
    """Parse arguments, run both, print the comparison."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2000, help="events (default 2,000)")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second; 0: a burst")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from common.settings import DatabaseSettings, Settings
    from registry.db import migrate
    from registry.embedded import EmbeddedCluster
    from registry.resolution import conninfo_from_url

    base = Path(tempfile.mkdtemp(prefix="smartcode-webhook-bench-"))
    base.chmod(0o755)
    cluster = EmbeddedCluster(base / "pgdata", db_name="bench")
    try:
        owner_url = cluster.start()
        migrate(owner_url, settings=Settings(database=DatabaseSettings(url=owner_url)))
        app_url = cluster.app_url()
        print(
            f"N = {args.n:,} events at {'a burst' if args.rate <= 0 else f'{args.rate:g}/s'}; "
            f"load average {os.getloadavg()[0]:.2f} (2 cores, shared)"
        )
        base_lat = run_baseline(conninfo_from_url(app_url), args.n, args.rate)
        post_lat = run_baseline_post(conninfo_from_url(app_url), args.n, args.rate)
        hooks = run_webhooks(app_url, owner_url, args.n, args.rate)
        lat = hooks["latencies"]
        assert isinstance(lat, list)
        b, bp, w = percentiles(base_lat), percentiles(post_lat), percentiles(lat)
        keys = ("p50", "p95", "p99", "max")
        print(f"{'':16} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'max ms':>9}")
        print(f"{'notify':16} " + " ".join(f"{b[k]:9.2f}" for k in keys))
        print(f"{'notify + POST':16} " + " ".join(f"{bp[k]:9.2f}" for k in keys))
        print(f"{'webhooks':16} " + " ".join(f"{w[k]:9.2f}" for k in keys))
        print(f"{'/ notify + POST':16} " + " ".join(f"{w[k] / bp[k]:9.1f}" for k in keys))
        print(
            f"received {hooks['received']:,} of {args.n:,} (duplicates {hooks['duplicates']}); "
            f"emitted in {float(hooks['emit_s']):.1f} s, all received after "
            f"{float(hooks['all_received_s']):.1f} s; mean {statistics.fmean(lat) * 1000:.1f} ms, "
            f"the worker's request p50 {float(hooks['request_p50_ms']):.1f} ms (its own clock); "
            f"p99 under 1 s: {'yes' if w['p99'] < 1000 else 'NO'}"
        )
        if args.json:
            print(json.dumps({"notify": b, "notify_post": bp, "webhooks": w, "n": args.n}))
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
