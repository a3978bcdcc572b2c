"""Where the server delivers webhooks (SMARTCODE_WEBHOOKS_WORKER): a supervised child process (the
default), a thread of the API process, or not at all; and that the child lives and dies with the server.

Children are found and checked by pid in /proc (Linux): a test that kills a server must see that its
child went too, not just that the server said so.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import standardwebhooks
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from common.settings import PROJECT_ROOT, Settings, WebhookSettings
from registry import webhook_process
from registry.webhook_process import DeliveryProcess
from registry.webhook_worker import WebhookWorker
from tests.conftest import ADMIN_TOKEN
from tests.test_webhooks import FAST, Receiver, _emit, _free_port, _subscribe, _wait

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver answering 200 to everything (as in tests/test_webhooks.py)."""
    r = Receiver(_free_port())
    r.up()
    yield r
    r.down()


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _delivery_children(parent: int) -> list[int]:
    """Live processes started by ``parent`` that run the delivery child."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[1] != parent or stat[0] == "Z":
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"registry.webhook_process" in cmdline:
            found.append(int(entry.name))
    return found


def _app(settings: Settings, url: str, layout: str) -> TestClient:
    from api.app import create_app

    webhooks = FAST.model_copy(update={"worker": layout})
    return TestClient(create_app(settings.model_copy(update={"webhooks": webhooks}), url=url))


def _delivered(db: Engine) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'")
            ).scalar_one()
        )


# --- the layouts, in the API process's life cycle ----------------------------------------------------


def test_the_server_delivers_from_a_child_process_which_stops_with_it(
    db: Engine, settings: Settings, migrated_url: str, receiver: Receiver
) -> None:
    _, secret = _subscribe(db, receiver.url, ["asset.handed_over"])
    with _app(settings, migrated_url, "process") as client:
        delivery = client.app.state.webhook_delivery  # type: ignore[attr-defined]
        assert isinstance(delivery, DeliveryProcess)
        child = delivery.pid
        assert child is not None and _delivery_children(os.getpid()) == [child]
        # Not on a thread of this process: the API keeps its interpreter to itself.
        assert not [t for t in threading.enumerate() if t.name.startswith("smartcode-webhooks")]
        event_id = _emit(db, "asset.handed_over", "44031001180000014", code="44031001180000014")
        _wait(lambda: len(receiver.ok()) == 1, 30, "the child's delivery")
        hit = receiver.ok()[0]
        assert standardwebhooks.Webhook(secret).verify(hit.body, hit.headers)["data"] == {
            "code": "44031001180000014"
        }
        assert hit.id == f"evt_{event_id}"
    # The app's shutdown stopped the child: gone by pid, not only out of the server's sight.
    assert not _alive(child)
    assert _delivery_children(os.getpid()) == []


def test_a_killed_child_is_started_again_after_a_pause_and_delivery_goes_on(
    db: Engine, settings: Settings, migrated_url: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    _subscribe(db, receiver.url)
    caplog.set_level(logging.INFO, logger="smartcode.webhooks")
    with _app(settings, migrated_url, "process") as client:
        delivery = client.app.state.webhook_delivery  # type: ignore[attr-defined]
        first = delivery.pid
        _emit(db, "asset.created", "A", code="A")
        _wait(lambda: _delivered(db) == 1, 30, "delivery by the first child, recorded")
        os.kill(first, signal.SIGKILL)
        _wait(lambda: delivery.pid != first and _alive(delivery.pid), 30, "a new child")
        assert not _alive(first) and delivery.restarts == 1
        crash = [
            r.getMessage()
            for r in caplog.records
            if r.name == "smartcode.webhooks" and r.levelno == logging.ERROR
        ]
        how = "信号 SIGKILL / signal SIGKILL"
        assert crash == [
            f"webhook 投递进程（pid {first}）意外退出：{how}；1 秒后重启 / the webhook "
            f"delivery process (pid {first}) ended unexpectedly: {how}; restarting in 1 s"
        ]
        _emit(db, "asset.created", "B", code="B")
        _wait(lambda: len(receiver.ok()) == 2, 30, "delivery by the new child")
        assert [h.payload["data"]["code"] for h in receiver.ok()] == ["A", "B"]
        second = delivery.pid
    assert not _alive(second)


def test_a_child_that_keeps_dying_is_restarted_with_growing_pauses_not_in_a_storm(
    migrated_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child that ends at once, every time (as a broken installation would).
    monkeypatch.setattr(webhook_process, "_MODULE", "this_module_does_not_exist")
    caplog.set_level(logging.ERROR, logger="smartcode.webhooks")
    supervisor = DeliveryProcess(migrated_url, FAST, first_pause_s=0.05, max_pause_s=0.2, steady_s=60)
    supervisor.start()
    try:
        _wait(lambda: supervisor.restarts >= 5, 30, "five restarts")
    finally:
        supervisor.stop()
    pauses = [
        r.getMessage().rsplit("restarting in ", 1)[1]
        for r in caplog.records
        if r.name == "smartcode.webhooks"
    ][:5]
    assert pauses == ["0.05 s", "0.1 s", "0.2 s", "0.2 s", "0.2 s"]
    assert "退出码 1 / exit status 1" in caplog.records[0].getMessage()
    assert supervisor.pid is not None and not _alive(supervisor.pid)
    assert _delivery_children(os.getpid()) == []


def test_the_thread_layout_delivers_from_the_api_process(
    db: Engine, settings: Settings, migrated_url: str, receiver: Receiver
) -> None:
    _subscribe(db, receiver.url)
    with _app(settings, migrated_url, "thread") as client:
        assert isinstance(client.app.state.webhook_delivery, WebhookWorker)  # type: ignore[attr-defined]
        assert _delivery_children(os.getpid()) == []
        _emit(db, "asset.created", "A", code="A")
        _wait(lambda: len(receiver.ok()) == 1, 30, "delivery by the thread")
    assert not [t for t in threading.enumerate() if t.name.startswith("smartcode-webhooks")]


def test_the_off_layout_delivers_nothing_and_starts_nothing(
    db: Engine, settings: Settings, migrated_url: str, receiver: Receiver, auth: dict[str, str]
) -> None:
    _subscribe(db, receiver.url)
    with _app(settings, migrated_url, "off") as client:
        assert client.app.state.webhook_delivery is None  # type: ignore[attr-defined]
        assert client.get("/api/v1/health").status_code == 200
        _emit(db, "asset.created", "A", code="A")
        assert _delivery_children(os.getpid()) == []
        assert not [
            t
            for t in threading.enumerate()
            if t.name.startswith(("smartcode-webhooks", "smartcode-delivery"))
        ]
    with db.connect() as conn:  # the event waits in the outbox for a `smartcode worker`
        assert (
            conn.execute(text("SELECT count(*) FROM event_outbox WHERE fanned_out_at IS NULL")).scalar() == 1
        )
    assert receiver.hits == []


def test_the_setting_names_the_three_layouts_and_defaults_to_the_process() -> None:
    assert WebhookSettings().worker == "process"
    with pytest.raises(ValueError, match="process"):
        WebhookSettings(worker="inline")  # type: ignore[arg-type]


def test_the_old_switch_off_still_means_no_delivery_from_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    # A deployment that delivered from `smartcode worker` elsewhere set SMARTCODE_WEBHOOKS_ENABLED=false.
    monkeypatch.setenv("SMARTCODE_WEBHOOKS_ENABLED", "false")
    assert WebhookSettings().worker == "off"
    monkeypatch.setenv("SMARTCODE_WEBHOOKS_WORKER", "thread")
    assert WebhookSettings().worker == "thread"  # the new setting, when given, decides
    monkeypatch.delenv("SMARTCODE_WEBHOOKS_WORKER")
    monkeypatch.setenv("SMARTCODE_WEBHOOKS_ENABLED", "true")
    assert WebhookSettings().worker == "process"


# --- `smartcode serve` itself --------------------------------------------------------------------------


@dataclass
class Serve:
    """A `smartcode serve` process, and the delivery children seen under it (killed after the test)."""

    proc: subprocess.Popen[bytes]
    log: Path
    children: list[int] = field(default_factory=list)

    def child(self) -> int:
        """Its one delivery child, once started."""
        found: list[int] = []

        def one() -> bool:
            found[:] = _delivery_children(self.proc.pid)
            return len(found) == 1 or self.proc.poll() is not None

        _wait(one, 60, "serve's delivery child")
        assert self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
        self.children.extend(found)
        return found[0]


@pytest.fixture
def serve(owner_url: str, tmp_path: Path) -> Iterator[Serve]:
    """`smartcode serve` on a free port, with the default layout; killed after the test if still running."""
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "SMARTCODE_DATABASE_URL": owner_url,
        "SMARTCODE_API_TOKEN": ADMIN_TOKEN,
        "SMARTCODE_LABELS_KEY_FILE": str(tmp_path / "label-keys"),
        "SMARTCODE_WEBHOOKS_POLL_S": "0.5",
    }
    env.pop("SMARTCODE_WEBHOOKS_WORKER", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(_free_port())],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started = Serve(proc, log)
    try:
        yield started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for child in started.children:  # adopted by init by now if serve died first: by pid, not by parent
            if _alive(child):
                os.kill(child, signal.SIGKILL)


# SIGINT: what a terminal's Ctrl-C sends serve; SIGTERM: what systemd, docker stop or kill send.
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_serve_stops_its_delivery_child(
    db: Engine, receiver: Receiver, serve: Serve, stop: signal.Signals
) -> None:
    _subscribe(db, receiver.url)
    child = serve.child()
    _emit(db, "asset.created", "A", code="A")
    _wait(lambda: len(receiver.ok()) == 1, 30, "delivery by serve's child")
    serve.proc.send_signal(stop)
    serve.proc.wait(60)
    # Stopped by serve before it ended (not left to notice by itself): gone the moment serve is.
    assert not _alive(child)
    assert _delivered(db) == 1  # its delivery was recorded on the way out


def test_a_killed_serve_leaves_no_delivery_process_behind(db: Engine, serve: Serve) -> None:
    child = serve.child()
    assert "delivered by a child process" in serve.log.read_text()  # serve says which layout it runs
    serve.proc.send_signal(signal.SIGKILL)  # no shutdown at all: the child must see it by itself
    serve.proc.wait(10)
    _wait(lambda: not _alive(child), 15, "the orphaned child's end")
