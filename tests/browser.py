"""A real browser for page tests: the app under uvicorn on 127.0.0.1 and Debian's headless chromium.

Use :func:`serve` for the app and :func:`chromium` for the browser (Playwright drives the system
chromium: ``playwright install`` cannot download here). :class:`RequestLog` records every request a
page makes, so a test can assert that none left the server.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Software WebGL (SwiftShader): MapLibre needs WebGL and the test machines have no GPU.
WEBGL_ARGS = ["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--lang=zh-CN"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on 127.0.0.1; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def chromium(*, webgl: bool = True) -> Iterator[Any]:
    """Headless system chromium through Playwright (skips the caller's test when Playwright is absent)."""
    import pytest

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run scripts/setup.sh (it installs chromium and fonts-noto-cjk)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=WEBGL_ARGS if webgl else ["--no-sandbox"], headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


class RequestLog:
    """Every URL a page requested, the answers of 400 and above, and the console errors it printed."""

    def __init__(self, page: Any) -> None:
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.failed: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def foreign(self, host: str = "127.0.0.1") -> list[str]:
        """The requests that went to another host (data: and blob: URLs stay in the page)."""
        return [
            url
            for url in self.urls
            if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).hostname != host
        ]
