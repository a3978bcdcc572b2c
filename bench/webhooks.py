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

With ``--idle``, instead: what the worker costs the process it runs in when nobody (or nobody
interested) is subscribed, as inside ``smartcode serve``: a child process commits ``-n`` transactions
of two events each (as an Open311 POST does) through ``emit`` on its main thread, with the worker's
thread in the same process off, on (this checkout) and on (``--compare``'s checkout): commits per
second and the process's CPU per commit, ratios against the worker off.

Prints p50 / p95 / p99 / max of each, the ratios to ``notify + POST``, throughput and duplicates (requests per
``webhook-id`` beyond one). The goal of issue 15: p99 under 1 s.

    .venv/bin/python bench/webhooks.py                    # 2,000 events at 200/s
    .venv/bin/python bench/webhooks.py --rate 0 -n 2000   # a burst
    git worktree add --detach /tmp/main-worker main     # then, against main's worker, same run:
    .venv/bin/python bench/webhooks.py --rate 0 --compare /tmp/main-worker
    .venv/bin/python bench/webhooks.py --idle -n 3000 --compare /tmp/main-worker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
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

        # A listen backlog of 5 (the class's default) drops the SYNs of a client opening its 8
        # connections at once, which then wait 1 s to retry: a receiver's artefact, not the sender's.
        ThreadingHTTPServer.request_queue_size = 128
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


def run_webhooks(
    app_url: str,
    owner_url: str,
    n: int,
    rate: float,
    *,
    code_root: Path = ROOT,
    profile: Path | None = None,
) -> dict[str, object]:
    """Commit ``n`` events with a worker (its code from ``code_root``) and a receiver; latencies in seconds.

    The subscription is deleted afterwards, so that a second run in the same cluster starts clean.
    """
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
    env = {**os.environ, "PYTHONPATH": str(code_root), "SMARTCODE_DATABASE_URL": owner_url}
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
        spy = None
        if profile is not None:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(worker.pid),
                    "-r",
                    "200",
                    "-f",
                    "raw",
                    "-o",
                    str(profile),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        committed: dict[str, float] = {}
        cpu0 = worker_cpu_s(worker.pid)
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
        cpu_s = worker_cpu_s(worker.pid) - cpu0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
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
        owner = make_engine(owner_url, pool_size=1)
        with transaction(owner) as session:  # the next run in this cluster starts without them
            session.execute(text("UPDATE webhook_subscriptions SET enabled = false, deleted_at = now()"))
            session.execute(text("TRUNCATE webhook_attempts, webhook_deliveries"))
        owner.dispose()
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
        "worker_cpu_s": cpu_s,
    }


def worker_cpu_s(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def notify_paced(conninfo: str, channel: str, n: int, rate: float) -> dict[str, float]:
    """Commit ``n`` NOTIFYs on ``channel`` at ``rate`` per second, payloads 0..n-1; when each was sent."""
    import psycopg

    sent: dict[str, float] = {}
    with psycopg.connect(conninfo) as conn:
        start = time.perf_counter()
        for i in range(n):
            pace(i, start, rate)
            conn.execute("SELECT pg_notify(%s, %s)", (channel, str(i)))
            conn.commit()
            sent[str(i)] = time.time()
    return sent


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
    sent = notify_paced(conninfo, "bench_baseline", n, rate)
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
    sent = notify_paced(conninfo, "bench_post", n, rate)
    thread.join(60)
    receiver.server.shutdown()
    return [receiver.arrivals[k][0] - t for k, t in sent.items() if k in receiver.arrivals]


def report(name: str, hooks: dict[str, object], n: int) -> dict[str, float]:
    """Print one worker's summary line; its percentiles."""
    lat = hooks["latencies"]
    assert isinstance(lat, list)
    w = percentiles(lat)
    cpu = float(hooks["worker_cpu_s"])  # type: ignore[arg-type]
    print(
        f"{name}: received {hooks['received']:,} of {n:,} (duplicates {hooks['duplicates']}); "
        f"emitted in {float(hooks['emit_s']):.1f} s, all received after "  # type: ignore[arg-type]
        f"{float(hooks['all_received_s']):.1f} s; mean {statistics.fmean(lat) * 1000:.1f} ms; "  # type: ignore[arg-type]
        f"request p50 {float(hooks['request_p50_ms']):.1f} ms (its own clock); "  # type: ignore[arg-type]
        f"worker CPU {cpu:.2f} s ({cpu / n * 1000:.2f} ms/event); "
        f"p99 under 1 s: {'yes' if w['p99'] < 1000 else 'NO'}"
    )
    return w


_IDLE_CHILD = r"""
import json, resource, sys, time
from sqlalchemy import text
from sqlalchemy.orm import Session
from common.settings import WebhookSettings
from registry.db import make_engine
from registry.events import emit
from registry.resolution import conninfo_from_url

mode, app_url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
worker = None
if mode != "off":
    from registry.webhook_worker import WebhookWorker

    worker = WebhookWorker(conninfo_from_url(app_url), WebhookSettings())
    worker.start()
    time.sleep(1.5)
engine = make_engine(app_url, pool_size=1)


def commits(count, offset):
    with Session(engine) as session:
        for i in range(offset, offset + count):
            with session.begin():
                emit(session, "complaint.created", {"n": i}, subject=f"C{i}")
                emit(session, "complaint.resolved", {"n": i}, subject=f"C{i}")


commits(300, 0)  # warm-up
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
commits(n, 300)
t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
if worker is not None:
    worker.stop()
print(json.dumps({"per_s": n / (t1 - t0), "cpu_ms": cpu / n * 1000}))
"""


def run_idle(app_url: str, owner_url: str, n: int, compare: Path | None) -> None:
    """The worker's in-process cost per commit with no subscription, then with one to other events."""
    from sqlalchemy import text

    from common.settings import WebhookSettings
    from registry.db import Actor, make_engine, transaction
    from registry.webhooks import create_subscription

    roots = [("worker off", ROOT), ("worker on", ROOT)]
    if compare is not None:
        roots.append(("compared on", compare.resolve()))
    owner = make_engine(owner_url, pool_size=1)
    for case in ("no subscription", "a subscription to other events"):
        if case != "no subscription":
            with transaction(make_engine(app_url, pool_size=1)) as session:
                create_subscription(
                    session,
                    Actor("bench", admin=True),
                    WebhookSettings(),
                    url="http://127.0.0.1:9/never",
                    events=["dispute.upheld"],
                )
        figures: dict[str, list[dict[str, float]]] = {name: [] for name, _ in roots}
        for _ in range(2):  # alternated twice: the machine is shared
            for name, root in roots:
                env = {**os.environ, "PYTHONPATH": str(root)}
                out = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        _IDLE_CHILD,
                        "off" if name == "worker off" else "on",
                        app_url,
                        str(n),
                    ],
                    env=env,
                    cwd=tempfile.gettempdir(),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                figures[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        with transaction(owner) as session:
            pending = session.execute(
                text("SELECT count(*) FROM event_outbox WHERE fanned_out_at IS NULL")
            ).scalar()
        print(f"{case}: {n:,} commits of 2 events each, best of 2 runs (unmarked events left: {pending})")
        off = max(f["per_s"] for f in figures["worker off"])
        off_cpu = min(f["cpu_ms"] for f in figures["worker off"])
        for name, runs in figures.items():
            per_s = max(f["per_s"] for f in runs)
            cpu = min(f["cpu_ms"] for f in runs)
            print(
                f"  {name:12} {per_s:7.0f} commits/s ({per_s / off:4.2f}x off), "
                f"process CPU {cpu:5.2f} ms/commit ({cpu / off_cpu:4.2f}x off)"
            )
    owner.dispose()


def main() -> None:
    """Parse arguments, run the baselines and the worker(s), print the comparison."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2000, help="events (default 2,000)")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second; 0: a burst")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="DIR",
        help="also run the worker of another checkout (e.g. a `git worktree` of main) in the same cluster, "
        "first, and print this checkout's figures against it",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="PREFIX", help="py-spy (raw) of each worker to PREFIX-<name>.txt"
    )
    parser.add_argument(
        "--idle", action="store_true", help="measure the worker's in-process cost without subscribers instead"
    )
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
        if args.idle:
            run_idle(app_url, owner_url, args.n, args.compare)
            return
        base_lat = run_baseline(conninfo_from_url(app_url), args.n, args.rate)
        post_lat = run_baseline_post(conninfo_from_url(app_url), args.n, args.rate)
        workers: list[tuple[str, Path]] = []
        if args.compare is not None:
            workers.append(("compared", args.compare.resolve()))
        workers.append(("webhooks", ROOT))
        runs = {}
        for name, root in workers:
            profile = Path(f"{args.profile}-{name}.txt") if args.profile else None
            runs[name] = run_webhooks(app_url, owner_url, args.n, args.rate, code_root=root, profile=profile)
        b, bp = percentiles(base_lat), percentiles(post_lat)
        keys = ("p50", "p95", "p99", "max")
        figures = {name: report(name, hooks, args.n) for name, hooks in runs.items()}
        print(f"{'':16} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'max ms':>9}")
        print(f"{'notify':16} " + " ".join(f"{b[k]:9.2f}" for k in keys))
        print(f"{'notify + POST':16} " + " ".join(f"{bp[k]:9.2f}" for k in keys))
        for name, w in figures.items():
            print(f"{name:16} " + " ".join(f"{w[k]:9.2f}" for k in keys))
        w = figures["webhooks"]
        print(f"{'/ notify + POST':16} " + " ".join(f"{w[k] / bp[k]:9.1f}" for k in keys))
        if "compared" in figures:
            c = figures["compared"]
            print(f"{'/ compared':16} " + " ".join(f"{w[k] / c[k]:9.2f}" for k in keys))
            cpu = float(runs["webhooks"]["worker_cpu_s"]) / float(runs["compared"]["worker_cpu_s"])  # type: ignore[arg-type]
            print(f"worker CPU / compared: {cpu:.2f}")
        if args.json:
            print(json.dumps({"notify": b, "notify_post": bp, **figures, "n": args.n}))
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
