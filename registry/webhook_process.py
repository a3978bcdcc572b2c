"""The delivery worker as a child process of the server: started, watched, restarted, stopped with it.

With ``SMARTCODE_WEBHOOKS_WORKER=process`` (the default) the API process does not deliver webhooks
itself: a thread there would share the interpreter lock with every request (docs/benchmarks.md,
"Webhook delivery as a process of its own"). :class:`DeliveryProcess` keeps one child process running
``registry.webhook_worker.WebhookWorker`` instead. From a thread of the server it starts the child,
starts it again after a growing pause when it dies unasked (1 s, 2 s, 4 s ... at most a minute; back
to 1 s after a minute of running), and stops it when the server stops: SIGTERM (the worker finishes or
hands back what is in flight), then SIGKILL after a grace period.

The child never outlives the server, however the server ends (Ctrl-C, SIGTERM, SIGKILL, a crash, the
OOM killer). Its standard input is a pipe whose only write end is held by the server: when the server
ends in any way, the kernel closes that end, the child reads end-of-file and stops. This is chosen over
``prctl(PR_SET_PDEATHSIG)``, which is Linux-only and fires when the *thread* that started the child
ends (not the process), and over polling the parent's pid, which lags and can be fooled by a reused pid
or by the child being adopted before it first looks. The pipe has no such window: a child started just
as its server died reads the end-of-file at once. The same pipe brings the child its configuration, so
the connection string (with its password) never appears on a command line that ``ps`` shows, and the
child delivers with exactly the server's webhook settings.

The child runs in a session of its own, so a Ctrl-C at the terminal reaches the server alone, which then
stops the child in order (a child stopped by the same keystroke would look like a crash to restart).

An extra worker during a restart is harmless: all of a worker's state is in the tables; the fan-out is
one worker at a time (an advisory lock), claims are ``FOR UPDATE SKIP LOCKED`` under a lease, and
outcomes are recorded only where the lease is still the recording worker's (registry/webhook_worker.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from common.settings import PROJECT_ROOT, WebhookSettings

log = logging.getLogger("smartcode.webhooks")

_MODULE = "registry.webhook_process"


class DeliveryProcess:
    """The delivery worker in a supervised child process (``start``/``stop``); ``pid`` is the current one."""

    def __init__(
        self,
        conninfo: str,
        settings: WebhookSettings,
        *,
        first_pause_s: float = 1.0,
        max_pause_s: float = 60.0,
        steady_s: float = 60.0,
        grace_s: float = 10.0,
    ) -> None:
        self._config = (
            json.dumps({"conninfo": conninfo, "webhooks": settings.model_dump(mode="json")}).encode() + b"\n"
        )
        self._first_pause_s = first_pause_s
        self._max_pause_s = max_pause_s
        self._steady_s = steady_s  # a child that ran this long was not crash-looping: the pause starts over
        self._grace_s = grace_s
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # a stop never races a start: no child is started after stop()
        self._stopping = threading.Event()
        self._first = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The process id of the child started last (None before the first start)."""
        proc = self._proc
        return None if proc is None else proc.pid

    def start(self) -> None:
        """Start the child and the thread that watches it; returns once the first child was started."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._first.clear()
        self._thread = threading.Thread(
            target=self._supervise, name="smartcode-delivery-supervisor", daemon=True
        )
        self._thread.start()
        self._first.wait(10)

    def stop(self) -> None:
        """Stop the child (SIGTERM, SIGKILL after the grace period) and its watcher; no restart follows."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        thread, self._thread = self._thread, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        if thread is not None:
            # The watcher returns as soon as the child has exited (it is the one waiting on it).
            thread.join(self._grace_s)
            if thread.is_alive() and proc is not None:
                log.warning(
                    "webhook 投递进程（pid %d）%g 秒内未停止，强制结束 / "
                    "the webhook delivery process (pid %d) did not stop within %g s: killed",
                    proc.pid,
                    self._grace_s,
                    proc.pid,
                    self._grace_s,
                )
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                thread.join(5)
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def _supervise(self) -> None:
        pause = self._first_pause_s
        while True:
            began = time.monotonic()
            proc, failure = self._spawn()
            self._first.set()
            if proc is None and failure is None:
                return  # stopping
            if proc is not None:
                code = proc.wait()
                if proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
                if self._stopping.is_set():
                    return
                failure = _describe_exit(code)
            if time.monotonic() - began >= self._steady_s:
                pause = self._first_pause_s
            self.restarts += 1
            pid = "-" if proc is None else str(proc.pid)
            log.error(
                "webhook 投递进程（pid %s）意外退出：%s；%g 秒后重启 / the webhook delivery process (pid %s) "
                "ended unexpectedly: %s; restarting in %g s",
                pid,
                failure,
                pause,
                pid,
                failure,
                pause,
            )
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, self._max_pause_s)

    def _spawn(self) -> tuple[subprocess.Popen[bytes] | None, str | None]:
        """A started child; or None and why it could not start; or None, None when stopping."""
        env = dict(os.environ)
        # The child imports the very code the server runs, wherever the server was started from.
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(PROJECT_ROOT) not in paths:
            env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *paths])
        with self._lock:
            if self._stopping.is_set():
                return None, None
            try:
                # -P: not the working directory first on sys.path; the child holds the database password,
                # and a stray registry.py where serve was started must not be what it imports.
                proc = subprocess.Popen(
                    [sys.executable, "-P", "-m", _MODULE],
                    stdin=subprocess.PIPE,
                    start_new_session=True,
                    env=env,
                )
            except OSError as exc:
                return None, f"{type(exc).__name__}: {exc.strerror or exc}"
            self._proc = proc
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died at once: its exit is what counts
            proc.stdin.write(self._config)
            proc.stdin.flush()
        log.info(
            "webhook 投递进程已启动（pid %d） / webhook delivery process started (pid %d)", proc.pid, proc.pid
        )
        return proc, None


def _describe_exit(code: int) -> str:
    """How a child ended, as people read it."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"信号 {name} / signal {name}"
    return f"退出码 {code} / exit status {code}"


def child_main() -> None:
    """The child: read the configuration from stdin, deliver until SIGTERM/SIGINT or the server's end."""
    from registry.webhook_worker import WebhookWorker, run_loop

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
    )
    line = sys.stdin.buffer.readline()
    if not line:
        return  # the server ended before it said anything
    config = json.loads(line)
    worker = WebhookWorker(
        config["conninfo"], WebhookSettings(**config["webhooks"]), name="smartcode-delivery"
    )
    fd = sys.stdin.fileno()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.request_stop)
        os.set_blocking(fd, False)

        def server_gone() -> None:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            if data:
                return  # the server sends nothing after the configuration; not an end
            loop.remove_reader(fd)
            log.warning("服务进程已结束，投递进程随之停止 / the server is gone: the delivery process stops")
            worker.request_stop()

        loop.add_reader(fd, server_gone)
        await worker.run()

    run_loop(main())


if __name__ == "__main__":
    child_main()
