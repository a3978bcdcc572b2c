"""A database outage: every endpoint says 503 at once, shows nothing of the server, and recovers by itself.

Runs on its own small cluster (the session's is shared by every other test), which is stopped and
started again under a running app.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from common.settings import ApiSettings, DatabaseSettings, EmbeddedSettings, Settings
from registry.db import migrate
from registry.embedded import EmbeddedCluster
from tests.conftest import ADMIN_TOKEN, throwaway_cluster
from tests.helpers import PINGSHAN, point

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def outage_cluster() -> Iterator[EmbeddedCluster]:
    """A throwaway cluster this module may stop and start."""
    with throwaway_cluster("smartcode_outage") as cluster:
        yield cluster


def _calls(client: TestClient, code: str) -> dict[str, Callable[[], Response]]:
    """One request of every kind: public and token lookups, the log, lists, health and a write."""
    lon, lat = PINGSHAN
    return {
        "resolve by code": lambda: client.get("/api/v1/resolve", params={"code": code}),
        "resolve by location": lambda: client.get(
            "/api/v1/resolve", params={"lon": lon, "lat": lat}, headers=AUTH
        ),
        "resolutions": lambda: client.get("/api/v1/resolutions", headers=AUTH),
        "one resolution": lambda: client.get("/api/v1/resolutions/1", headers=AUTH),
        "assets list": lambda: client.get("/api/v1/assets", headers=AUTH),
        "asset by code": lambda: client.get(f"/api/v1/assets/{code}"),
        "health": lambda: client.get("/api/v1/health"),
        "write": lambda: client.post(
            "/api/v1/units", json={"name": "坪山区城市管理和综合执法局"}, headers=AUTH
        ),
    }


def test_outage_answers_503_quickly_without_internals_and_recovers(
    outage_cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    url = outage_cluster.url()
    settings = Settings(
        database=DatabaseSettings(url=url),
        api=ApiSettings(api_token=ADMIN_TOKEN),
        embedded=EmbeddedSettings(data_dir=tmp_path / "pgdata"),
    )
    migrate(url, settings=settings)
    from api.app import create_app

    with TestClient(create_app(settings, url=outage_cluster.app_url())) as client:
        created = client.post(
            "/api/v1/assets", json={"class_code": "0118", "geometry": point()}, headers=AUTH
        )
        assert created.status_code == 201, created.text
        code = created.json()["code"]
        assert client.get("/api/v1/resolve", params={"code": code}).status_code == 200

        outage_cluster.stop()
        try:
            for _ in range(2):  # the first round finds the pooled connections dead, the second none at all
                for what, call in _calls(client, code).items():
                    started = time.monotonic()
                    response = call()
                    elapsed = time.monotonic() - started
                    assert response.status_code == 503, (what, response.status_code, response.text)
                    assert elapsed < 2.0, (what, elapsed)
                    error = response.json()["error"]
                    assert error["type"] == "DatabaseUnavailable", what
                    assert "数据库" in error["message"] and "unavailable" in error["message"]
                    assert response.headers.get("retry-after"), what
                    for secret in (str(outage_cluster.socket_dir), "/tmp", ".s.PGSQL", "socket", "psycopg"):
                        assert secret not in response.text, (what, secret)
        finally:
            outage_cluster.start()

        deadline = time.monotonic() + 5.0
        while True:
            statuses = {what: call().status_code for what, call in _calls(client, code).items()}
            healthy = statuses["write"] in (201, 409) and all(
                status == 200 for what, status in statuses.items() if what not in ("write", "one resolution")
            )
            if healthy or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert healthy, statuses
