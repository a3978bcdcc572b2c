"""Signed webhooks, end to end: a real receiver (an HTTP server thread), the real worker, the real database.

The receiver records every request it gets; what it answers is up to each test (200, 500, 410, a
connection refused, a request held open while the worker is killed). Deliveries are checked the way a
receiver would: the signature with the ``standardwebhooks`` library, duplicates by ``webhook-id``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from common.errors import InvalidInput, StaleVersion
from common.settings import PROJECT_ROOT, Settings, WebhookSettings
from registry import assets, tokens
from registry.db import Actor, transaction
from registry.events import emit
from registry.resolution import conninfo_from_url
from registry.schemas import Decommission, UnitsChange
from registry.webhook_worker import WebhookWorker, retry_delay
from registry.webhooks import check_url, internal_warnings, new_secret, secret_key, sign
from tests.helpers import make_asset, make_unit
from tests.test_import_pipeline import POWER, WATER, lamp, write_geojson

# Retries in milliseconds, many of them: an outage of a few seconds never exhausts them.
FAST = WebhookSettings(
    timeout_s=2.0, schedule_s=[0.05] * 4 + [0.2] * 60, jitter=0.2, lease_s=3.0, poll_s=0.5, concurrency=8
)


# --- the receiver ------------------------------------------------------------------------------------------


@dataclass
class Hit:
    """One request the receiver got, and what it answered."""

    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def id(self) -> str:
        """The ``webhook-id``."""
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON body."""
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """An HTTP server thread on a fixed port that can be taken down and brought back."""

    port: int
    answer: Callable[[dict[str, str], bytes], int] = lambda headers, body: 200
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Where to send."""
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        """Listen (again)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.answer(headers, body)
                with receiver.lock:
                    receiver.hits.append(Hit(headers, body, status, time.monotonic()))
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening: connections are refused."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def ok(self) -> list[Hit]:
        """The requests answered 2xx, in order of arrival."""
        with self.lock:
            return [h for h in self.hits if 200 <= h.status < 300]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver answering 200 to everything."""
    r = Receiver(_free_port())
    r.up()
    yield r
    r.down()


@pytest.fixture
def start_worker(migrated_url: str) -> Iterator[Callable[..., WebhookWorker]]:
    """Start delivery workers (as the service's role); all are stopped after the test."""
    started: list[WebhookWorker] = []

    def start(settings: WebhookSettings = FAST) -> WebhookWorker:
        worker = WebhookWorker(conninfo_from_url(migrated_url), settings)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _subscribe(
    db: Engine, url: str, events: list[str] | None = None, secret: str | None = None
) -> tuple[int, str]:
    from registry import webhooks

    with transaction(db) as session:
        view = webhooks.create_subscription(
            session, Actor("test", admin=True), FAST, url=url, events=events or ["*"], secret=secret
        )
    return int(view["id"]), str(view["secret"])


def _emit(db: Engine, event_type: str, subject: str, **data: Any) -> int:
    with Session(db) as session, session.begin():
        return emit(session, event_type, data, subject=subject)


def _wait(condition: Callable[[], bool], seconds: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _states(db: Engine) -> dict[int, str]:
    with db.connect() as conn:
        return dict(conn.execute(text("SELECT event_id, state FROM webhook_deliveries")).tuples().all())


# --- signing -----------------------------------------------------------------------------------------------


def test_a_delivery_is_signed_as_standard_webhooks_verifies_it(
    db: Engine, receiver: Receiver, start_worker: Callable[..., WebhookWorker]
) -> None:
    _, secret = _subscribe(db, receiver.url)
    assert secret.startswith("whsec_") and len(secret_key(secret)) >= 24
    start_worker()
    event_id = _emit(db, "asset.handed_over", "44031001180000014", code="44031001180000014", 到="供电局")
    _wait(lambda: len(receiver.ok()) == 1, what="the delivery")
    hit = receiver.ok()[0]
    payload = standardwebhooks.Webhook(secret).verify(hit.body, hit.headers)
    assert payload["type"] == "asset.handed_over"
    assert payload["data"] == {"code": "44031001180000014", "到": "供电局"}
    assert payload["timestamp"].endswith("Z")
    assert hit.id == f"evt_{event_id}" and hit.headers["content-type"] == "application/json"
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(hit.body, hit.headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(hit.body.replace(b"14", b"15"), hit.headers)


def test_the_signature_is_the_specifications_example() -> None:
    # The example of the Standard Webhooks specification (and its reference libraries' tests).
    key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")[:]  # 24 bytes
    body = b'{"test": 2432232314}'
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_secrets_and_urls_are_checked() -> None:
    with pytest.raises(InvalidInput, match="whsec_"):
        secret_key("not-a-secret")
    with pytest.raises(InvalidInput, match="24 to 64"):
        secret_key("whsec_" + "QUJD")  # 3 bytes
    with pytest.raises(InvalidInput, match="http"):
        check_url("ftp://example.cn/x", FAST)
    with pytest.raises(InvalidInput, match="user name"):
        check_url("https://u:p@example.cn/x", FAST)
    fenced = FAST.model_copy(update={"allow_hosts": ["cases.example.cn", "*.hooks.example.cn"]})
    assert check_url("https://a.hooks.example.cn/x", fenced)
    assert check_url("https://cases.example.cn/x", fenced)
    with pytest.raises(InvalidInput, match="ALLOW_HOSTS"):
        check_url("http://169.254.169.254/latest/meta-data", fenced)
    for internal in ("http://169.254.169.254/x", "http://10.0.0.5:8080/admin", "http://localhost/x"):
        assert internal_warnings(internal, FAST), internal
    assert internal_warnings("https://cases.example.cn/x", FAST) == []
    assert internal_warnings("http://10.0.0.5/x", fenced) == []  # the allow-list decides


def test_the_retry_schedule_is_a_setting_with_jitter_and_an_end() -> None:
    settings = WebhookSettings(schedule_s=[1, 10], jitter=0.5)
    assert all(0.5 <= (retry_delay(settings, 1) or 0) <= 1.5 for _ in range(100))
    assert all(5 <= (retry_delay(settings, 2) or 0) <= 15 for _ in range(100))
    assert retry_delay(settings, 3) is None
    default = WebhookSettings()
    assert 20 * 3600 < sum(default.schedule_s) < 30 * 3600  # about a day
    with pytest.raises(ValueError, match="lease_s"):
        WebhookSettings(timeout_s=30, lease_s=10)


# --- the outbox --------------------------------------------------------------------------------------------


def test_a_rolled_back_change_sends_nothing(
    db: Engine, receiver: Receiver, start_worker: Callable[..., WebhookWorker]
) -> None:
    _subscribe(db, receiver.url)
    start_worker()
    with pytest.raises(RuntimeError), Session(db) as session, session.begin():
        emit(session, "asset.decommissioned", {"code": "X"}, subject="X")
        raise RuntimeError("the change failed")
    marker = _emit(db, "asset.created", "Y", code="Y")
    _wait(lambda: len(receiver.ok()) == 1, what="the committed event")
    time.sleep(0.3)
    assert [h.id for h in receiver.hits] == [f"evt_{marker}"]


def test_receiver_down_then_failing_then_up_gets_every_event_once(
    db: Engine, start_worker: Callable[..., WebhookWorker]
) -> None:
    receiver = Receiver(_free_port())  # not listening yet: connections are refused
    _subscribe(db, receiver.url)
    start_worker()
    start_worker()  # two workers share the work and never send one delivery twice
    subjects = [f"4403100118{n:07d}" for n in range(6)]
    ids = [_emit(db, "asset.created", subjects[n % 6], n=n) for n in range(30)]
    time.sleep(1.0)
    assert receiver.hits == []
    receiver.answer = lambda headers, body: 500
    receiver.up()
    try:
        _wait(lambda: len(receiver.hits) >= 6, what="the 500s")
        time.sleep(0.5)
        receiver.answer = lambda headers, body: 200
        _wait(lambda: set(_states(db).values()) == {"delivered"} and len(_states(db)) == 30, what="all")
        ok = receiver.ok()
        assert sorted(h.id for h in ok) == sorted(f"evt_{i}" for i in ids)  # every event, each once
        for subject in subjects:  # and in order per subject
            got = [
                int(h.id.removeprefix("evt_"))
                for h in ok
                if h.payload["data"]["n"] % 6 == subjects.index(subject)
            ]
            assert got == sorted(got)
        with db.connect() as conn:
            retried = conn.execute(
                text("SELECT count(*) FROM webhook_deliveries WHERE attempts > 2")
            ).scalar()
            statuses = set(conn.execute(text("SELECT DISTINCT status_code FROM webhook_attempts")).scalars())
        # Only the first event of each subject waited through the outage; the others followed it.
        assert retried == 6 and statuses == {None, 500, 200}
    finally:
        receiver.down()


def test_deliveries_keep_the_order_of_events_per_subject(
    db: Engine, receiver: Receiver, start_worker: Callable[..., WebhookWorker]
) -> None:
    failed: list[str] = []

    def answer(headers: dict[str, str], body: bytes) -> int:
        # The first attempt of subject A's first event fails; everything else is answered at once.
        if json.loads(body)["data"]["name"] == "A1" and not failed:
            failed.append("A1")
            # ...once B1 has arrived: B1 is committed after A1, and a test thread held up for a moment
            # on a busy machine could otherwise commit it only after A1's retry let A2 go. While A1 is
            # held, only a worker that made B wait for A keeps B1 back (and then this gives up).
            deadline = time.monotonic() + 1.5  # within the worker's 2 s request timeout
            while time.monotonic() < deadline and not any(
                h.payload["data"]["name"] == "B1" for h in receiver.ok()
            ):
                time.sleep(0.01)
            return 500
        return 200

    receiver.answer = answer
    _subscribe(db, receiver.url)
    start_worker()
    for name in ("A1", "A2", "B1", "A3", "B2"):
        _emit(db, "asset.handed_over", name[0], name=name)
    _wait(lambda: len(receiver.ok()) == 5, what="five deliveries")
    names = [h.payload["data"]["name"] for h in receiver.hits]
    a_names = [n for n in names if n.startswith("A")]
    assert a_names == ["A1", "A1", "A2", "A3"]  # A2 waited for A1's retry
    assert names.index("B1") < names.index("A2")  # B did not wait for A


def test_outcomes_recorded_together_keep_each_deliverys_own_result(
    db: Engine, receiver: Receiver, start_worker: Callable[..., WebhookWorker]
) -> None:
    failed: list[int] = []
    arrived: list[int] = []
    all_in = threading.Event()

    def answer(headers: dict[str, str], body: bytes) -> int:
        n = json.loads(body)["data"]["n"]
        with receiver.lock:
            arrived.append(n)
            if len(arrived) == FAST.concurrency:
                all_in.set()
        # The first requests (as many as the worker sends at once) are answered together, so their
        # outcomes do finish while a record is being written; answered as they came, on a busy machine
        # they could each finish alone, eleven statements (9 of 11 was seen). At most 1.5 s: inside the
        # worker's 2 s request timeout.
        all_in.wait(1.5)
        # One delivery of the batch fails once; the other nine succeed.
        if n == 3 and not failed:
            failed.append(3)
            return 500
        return 200

    receiver.answer = answer
    _subscribe(db, receiver.url)
    worker = start_worker()
    with Session(db) as session, session.begin():  # one commit: claimed together, recorded in batches
        ids = [emit(session, "asset.created", {"n": n}, subject=f"S{n}") for n in range(10)]
    _wait(lambda: set(_states(db).values()) == {"delivered"} and len(_states(db)) == 10, what="all ten")
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.event_id, d.attempts, d.last_status, d.delivered_at IS NOT NULL, "
                "array_agg(a.status_code ORDER BY a.id), array_agg(a.attempt ORDER BY a.id) "
                "FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id "
                "GROUP BY d.id ORDER BY d.event_id"
            )
        ).all()
    failing = ids[3]
    assert [tuple(r) for r in rows] == [
        (i, 2, 200, True, [500, 200], [1, 2]) if i == failing else (i, 1, 200, True, [200], [1]) for i in ids
    ]
    assert sorted(h.id for h in receiver.ok()) == sorted(f"evt_{i}" for i in ids)
    assert worker.stats["records"] < 11  # fewer statements than the eleven outcomes


def test_a_claim_that_waited_too_long_for_a_slot_is_handed_back_unsent_and_uncounted(
    db: Engine, receiver: Receiver, start_worker: Callable[..., WebhookWorker]
) -> None:
    def answer(headers: dict[str, str], body: bytes) -> int:
        time.sleep(0.7)  # longer than a claim may wait for the only slot: (lease 3 s - timeout 2 s) / 2
        return 200

    receiver.answer = answer
    _subscribe(db, receiver.url)
    start_worker(FAST.model_copy(update={"concurrency": 1}))
    with Session(db) as session, session.begin():
        ids = [emit(session, "asset.created", {"n": n}, subject=f"S{n}") for n in range(3)]
    _wait(lambda: set(_states(db).values()) == {"delivered"} and len(_states(db)) == 3, 20, what="all three")
    assert sorted(h.id for h in receiver.hits) == sorted(f"evt_{i}" for i in ids)  # each sent once
    with db.connect() as conn:
        attempts = conn.execute(text("SELECT attempts FROM webhook_deliveries")).scalars().all()
        logged = conn.execute(text("SELECT count(*) FROM webhook_attempts")).scalar()
    assert attempts == [1, 1, 1] and logged == 3  # a hand-back is no attempt


def test_with_no_subscription_commits_cost_the_worker_nothing_and_a_new_one_is_served_at_once(
    db: Engine, receiver: Receiver, start_worker: Callable[..., WebhookWorker]
) -> None:
    worker = start_worker(FAST.model_copy(update={"poll_s": 2.0}))
    _wait(lambda: worker._live is False, what="the worker to see no subscription")
    _emit(db, "asset.created", "A", n=0)
    time.sleep(0.1)
    steps = worker.stats["steps"]
    for n in range(1, 41):
        _emit(db, "asset.created", f"S{n}", n=n)
    time.sleep(0.2)
    # Forty commits, no subscription: the worker did not wake for them (its 2 s poll may have stepped once).
    assert worker.stats["steps"] - steps <= 1
    _wait(  # marked in bulk at the next poll, nothing delivered
        lambda: _count(db, "SELECT count(*) FROM event_outbox WHERE fanned_out_at IS NULL") == 0,
        what="the events marked",
    )
    assert _count(db, "SELECT count(*) FROM webhook_deliveries") == 0
    _subscribe(db, receiver.url, ["asset.handed_over"])  # its NOTIFY starts the listening again
    _wait(lambda: worker._live is True, 2.0, what="the worker to see the subscription")
    t0 = time.monotonic()
    for n in range(20):  # events nobody wants do not hold up the one that is wanted
        _emit(db, "asset.created", f"S{n}", n=n)
    wanted = _emit(db, "asset.handed_over", "H", n=99)
    _wait(lambda: len(receiver.ok()) == 1, 2.0, what="the delivery")
    assert receiver.ok()[0].at - t0 < 1.0 and receiver.ok()[0].id == f"evt_{wanted}"
    _wait(lambda: _count(db, "SELECT count(*) FROM event_outbox WHERE fanned_out_at IS NULL") == 0)
    assert _count(db, "SELECT count(*) FROM webhook_deliveries") == 1


def _count(db: Engine, sql: str) -> int:
    with db.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_410_gone_disables_the_subscription(
    db: Engine,
    receiver: Receiver,
    start_worker: Callable[..., WebhookWorker],
    client: TestClient,
    auth: dict[str, str],
) -> None:
    receiver.answer = lambda headers, body: 410
    sub_id, _ = _subscribe(db, receiver.url)
    start_worker()
    _emit(db, "asset.created", "A", n=1)
    _wait(
        lambda: not client.get(f"/api/v1/webhooks/{sub_id}", headers=auth).json()["enabled"], what="disabled"
    )
    view = client.get(f"/api/v1/webhooks/{sub_id}", headers=auth).json()
    assert "410" in view["disabled_reason"]
    _emit(db, "asset.created", "B", n=2)
    time.sleep(0.5)
    assert len(receiver.hits) == 1
    log = client.get(f"/api/v1/webhooks/{sub_id}/deliveries", headers=auth).json()["items"]
    assert [(d["state"], d["last_status"]) for d in log] == [("dead", 410)]


def test_a_worker_killed_mid_delivery_is_replaced_and_the_event_sent_again_under_the_same_id(
    db: Engine,
    owner_url: str,
    receiver: Receiver,
    start_worker: Callable[..., WebhookWorker],
    tmp_path: Path,
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def answer(headers: dict[str, str], body: bytes) -> int:
        if not arrived.is_set():
            arrived.set()
            release.wait(20)  # held open while the worker is killed
        return 200

    receiver.answer = answer
    _subscribe(db, receiver.url)
    event_id = _emit(db, "asset.decommissioned", "A", code="A")
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "SMARTCODE_DATABASE_URL": owner_url,
        "SMARTCODE_WEBHOOKS_TIMEOUT_S": "10",
        "SMARTCODE_WEBHOOKS_LEASE_S": "12",
        "SMARTCODE_WEBHOOKS_POLL_S": "0.2",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert arrived.wait(60), "the worker never sent the event"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    release.set()  # the receiver answers into a closed connection: the worker never learns of it
    with db.connect() as conn:
        conn.execute(  # rather than wait the killed worker's 12 s lease out
            text("UPDATE webhook_deliveries SET leased_until = now() + interval '1 second'")
        )
        conn.commit()
    assert _states(db) == {event_id: "pending"}
    start_worker()
    _wait(lambda: _states(db) == {event_id: "delivered"}, what="redelivery after the lease")
    assert [h.id for h in receiver.hits] == [f"evt_{event_id}"] * 2  # same id: the receiver deduplicates
    assert len({h.id for h in receiver.ok()}) == 1
    with db.connect() as conn:
        assert conn.execute(text("SELECT attempts FROM webhook_deliveries")).scalar() == 2


# --- the API -----------------------------------------------------------------------------------------------


def test_subscriptions_are_managed_through_the_api_and_the_secret_is_shown_once(
    client: TestClient, auth: dict[str, str], db: Engine
) -> None:
    created = client.post(
        "/api/v1/webhooks",
        headers=auth,
        json={"url": "https://cases.example.cn/hook", "events": ["asset.handed_over", "asset.created"]},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["asset.created", "asset.handed_over"]
    sub = body["id"]
    listed = client.get("/api/v1/webhooks", headers=auth).json()["items"]
    assert [s["id"] for s in listed] == [sub] and "secret" not in listed[0]
    assert "secret" not in client.get(f"/api/v1/webhooks/{sub}", headers=auth).json()
    changed = client.patch(f"/api/v1/webhooks/{sub}", headers=auth, json={"enabled": False, "events": ["*"]})
    assert (
        changed.status_code == 200
        and changed.json()["enabled"] is False
        and changed.json()["events"] == ["*"]
    )
    given = client.post(
        "/api/v1/webhooks",
        headers=auth,
        json={"url": "http://127.0.0.1:9/h", "events": ["*"], "secret": "whsec_" + "A" * 32},
    )
    assert given.status_code == 201 and given.json()["secret"] == "whsec_" + "A" * 32
    # An address of this machine is accepted, but not silently: no allow-list fences it in.
    assert "SMARTCODE_WEBHOOKS_ALLOW_HOSTS" in given.json()["warnings"][0]
    assert body["warnings"] == []
    for bad in (
        {"url": "ftp://x.cn/h", "events": ["*"]},
        {"url": "https://x.cn/h", "events": ["asset.renamed"]},
        {"url": "https://x.cn/h", "events": ["*"], "secret": "whsec_short"},
    ):
        refused = client.post("/api/v1/webhooks", headers=auth, json=bad)
        assert refused.status_code == 400, refused.text
    assert client.delete(f"/api/v1/webhooks/{sub}", headers=auth).status_code == 200
    assert client.get(f"/api/v1/webhooks/{sub}", headers=auth).status_code == 404
    assert [s["id"] for s in client.get("/api/v1/webhooks", headers=auth).json()["items"]] == [
        given.json()["id"]
    ]
    # The delivery log of a deleted subscription is still there.
    assert client.get(f"/api/v1/webhooks/{sub}/deliveries", headers=auth).status_code == 200


def test_only_administrators_manage_webhooks(client: TestClient, auth: dict[str, str], db: Engine) -> None:
    unit = make_unit(db, POWER, Actor("t", admin=True)).id
    with transaction(db) as session:
        reader = tokens.create_token(session, "r", "reader", Actor("t", admin=True))
        unit_token = tokens.create_token(session, "u", "unit", Actor("t", admin=True), unit_id=unit)
    body = {"url": "https://x.cn/h", "events": ["*"]}
    assert client.post("/api/v1/webhooks", json=body).status_code == 401
    for secret in (reader, unit_token):
        headers = {"Authorization": f"Bearer {secret}"}
        assert client.post("/api/v1/webhooks", headers=headers, json=body).status_code == 403
        assert client.get("/api/v1/webhooks", headers=headers).status_code == 403
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM webhook_subscriptions")).scalar() == 0


def test_manual_redelivery_of_one_event_and_of_every_failure_since_a_time(
    db: Engine,
    receiver: Receiver,
    start_worker: Callable[..., WebhookWorker],
    client: TestClient,
    auth: dict[str, str],
) -> None:
    receiver.answer = lambda headers, body: 500
    sub, secret = _subscribe(db, receiver.url)
    start_worker(FAST.model_copy(update={"schedule_s": [0.05]}))  # two attempts, then dead
    first = _emit(db, "asset.created", "A", n=1)
    second = _emit(db, "asset.created", "B", n=2)
    _wait(lambda: set(_states(db).values()) == {"dead"} and len(_states(db)) == 2, what="dead")
    log = client.get(f"/api/v1/webhooks/{sub}/deliveries", headers=auth).json()["items"]
    assert [(d["event_id"], d["state"], d["attempts"]) for d in log] == [
        (second, "dead", 2),
        (first, "dead", 2),
    ]
    assert [a["status"] for a in log[0]["log"]] == [500, 500] and log[0]["log"][0]["response"] == "ok"
    assert "retries used up" in log[0]["last_error"]

    receiver.answer = lambda headers, body: 200
    one = client.post(f"/api/v1/webhooks/{sub}/redeliver", headers=auth, json={"event_id": first})
    assert one.status_code == 200 and one.json()["queued"] == 1
    _wait(lambda: _states(db)[first] == "delivered", what="one redelivered")
    assert _states(db)[second] == "dead"
    since = client.post(
        f"/api/v1/webhooks/{sub}/redeliver", headers=auth, json={"since": "2000-01-01T00:00:00+08:00"}
    )
    assert since.json()["queued"] == 1
    _wait(lambda: set(_states(db).values()) == {"delivered"}, what="all redelivered")
    assert [h.id for h in receiver.ok()] == [f"evt_{first}", f"evt_{second}"]
    for hit in receiver.ok():
        standardwebhooks.Webhook(secret).verify(hit.body, hit.headers)
    # A delivered event sent again on request keeps its id (the receiver may drop it as seen).
    client.post(f"/api/v1/webhooks/{sub}/redeliver", headers=auth, json={"event_id": second})
    _wait(lambda: len(receiver.ok()) == 3, what="third")
    assert receiver.ok()[-1].id == f"evt_{second}"
    assert client.post(f"/api/v1/webhooks/{sub}/redeliver", headers=auth, json={}).status_code == 400
    assert (
        client.post(f"/api/v1/webhooks/{sub}/redeliver", headers=auth, json={"event_id": 999}).status_code
        == 404
    )


def test_the_server_delivers_by_itself_within_a_second(
    db: Engine, settings: Settings, migrated_url: str, receiver: Receiver, auth: dict[str, str]
) -> None:
    from api.app import create_app

    # The thread layout: the worker is up when the app is (tests/test_webhook_process.py: the child).
    webhooks = FAST.model_copy(update={"worker": "thread"})
    app = create_app(settings.model_copy(update={"webhooks": webhooks}), url=migrated_url)
    with TestClient(app) as client:
        created = client.post(
            "/api/v1/webhooks", headers=auth, json={"url": receiver.url, "events": ["asset.*"]}
        )
        assert created.status_code == 400  # no wildcards but "*"
        created = client.post(
            "/api/v1/webhooks", headers=auth, json={"url": receiver.url, "events": ["asset.created"]}
        )
        unit = client.post("/api/v1/units", headers=auth, json={"name": POWER, "kind": "utility"}).json()[
            "id"
        ]
        t0 = time.monotonic()
        registered = client.post(
            "/api/v1/assets",
            headers=auth,
            json={
                "class_code": "0118",
                "geometry": {"type": "Point", "coordinates": [114.347, 22.696]},
                "owner_id": unit,
            },
        )
        assert registered.status_code == 201, registered.text
        _wait(lambda: len(receiver.ok()) == 1, what="delivery by the server's own worker")
        assert receiver.ok()[0].at - t0 < 1.0
        hit = receiver.ok()[0]
        payload = standardwebhooks.Webhook(created.json()["secret"]).verify(hit.body, hit.headers)
        assert payload["type"] == "asset.created" and payload["data"]["code"] == registered.json()["code"]


# --- asset events ----------------------------------------------------------------------------------------


def _outbox(db: Engine) -> list[tuple[str, str, dict[str, Any]]]:
    with db.connect() as conn:
        return [
            tuple(r) for r in conn.execute(text("SELECT type, subject, data FROM event_outbox ORDER BY id"))
        ]  # type: ignore[misc]


def test_asset_changes_emit_their_events_in_their_transaction(db: Engine, admin: Actor) -> None:
    power = make_unit(db, POWER, admin).id
    water = make_unit(db, WATER, admin).id
    asset = make_asset(db, admin, owner_id=power)
    with transaction(db) as session:
        moved = assets.hand_over(
            session, asset.code, UnitsChange(version=asset.version, owner_id=water, reason="移交"), admin
        )[0]
    with pytest.raises(StaleVersion), transaction(db) as session:  # a refused change emits nothing
        assets.hand_over(session, asset.code, UnitsChange(version=1, owner_id=power, reason="stale"), admin)
    with transaction(db) as session:
        assets.decommission_asset(
            session, asset.code, Decommission(version=moved.version, reason="拆除"), admin
        )
    events = _outbox(db)
    assert [(t, s) for t, s, _ in events] == [
        ("asset.created", asset.code),
        ("asset.handed_over", asset.code),
        ("asset.decommissioned", asset.code),
    ]
    created, handed, gone = (d for _, _, d in events)
    assert created["owner"] == {"id": power, "name": POWER} and created["version"] == 1
    assert handed["changed"] == {"owner_id": {"from": power, "to": water}} and handed["reason"] == "移交"
    assert handed["owner"]["name"] == WATER and handed["version"] == 2
    assert gone["in_use"] is False and gone["reason"] == "拆除" and gone["by"] == admin.name


@pytest.mark.parametrize("direct", [False, True], ids=["planned", "direct"])
def test_an_import_emits_one_event_per_committed_batch(
    db: Engine,
    owner_engine: Engine,
    settings: Settings,
    admin: Actor,
    tmp_path: Path,
    direct: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from common.settings import ImportSettings
    from importers import pipeline
    from importers.pipeline import ImportOptions, run_import

    monkeypatch.setattr(pipeline, "IMPORTED_CODES_CAP", 2)
    chosen = settings.model_copy(update={"imports": ImportSettings(direct_min_bytes=0 if direct else -1)})
    path = write_geojson(
        tmp_path / "l.geojson", [lamp(114.3466, 22.6953), lamp(114.3470, 22.6960), lamp(114.3480, 22.6970)]
    )
    engine = owner_engine if direct else db  # the direct load is the owner's (smartcode import)
    report = run_import(engine, path, admin, chosen, ImportOptions())
    assert report.status == "committed" and report.created == 3
    assert any("empty" in n for n in report.notes) == direct
    events = [e for e in _outbox(db) if e[0] == "asset.imported"]
    assert len(events) == 1
    _, subject, data = events[0]
    assert subject == f"batch:{report.batch_id}"
    assert data["counts"]["created"] == 3 and data["batch_id"] == report.batch_id
    with db.connect() as conn:
        codes = sorted(conn.execute(text("SELECT code FROM assets")).scalars())
    assert data["codes"] == codes[:2] and data["codes_truncated"] is True and data["codes_cap"] == 2
    dry = run_import(db, path, admin, chosen, ImportOptions(dry_run=True))
    assert dry.status == "dry_run" and len([e for e in _outbox(db) if e[0] == "asset.imported"]) == 1
