"""Read replicas with a real primary and a real streaming standby made by ``smartcode db replica create``.

The standby is a copy of the test session's cluster (made once for this module, about a second); the
app reads lookups there while it is fit and says who answered in ``X-Served-By``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from common.settings import EmbeddedSettings, Settings
from registry.db import Actor
from registry.embedded import EmbeddedCluster
from registry.replica import StandbyCluster, measure_lag, parse_lsn
from tests.conftest import ADMIN_TOKEN
from tests.helpers import PINGSHAN, make_asset, make_unit, point

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def replica(cluster: EmbeddedCluster, owner_url: str) -> Iterator[StandbyCluster]:
    """A streaming standby of the session's (migrated) cluster, removed with its slot afterwards."""
    standby = StandbyCluster(cluster)
    standby.create()
    try:
        yield standby
    finally:
        standby.destroy()


@pytest.fixture
def standby(replica: StandbyCluster, db: Engine) -> Iterator[StandbyCluster]:
    """The standby running and replaying, caught up with the emptied registry (and left so)."""
    replica.start()
    _resume(replica)
    wait_until(lambda: _caught_up(replica), what="the standby to replay the emptied registry")
    yield replica
    replica.start()
    _resume(replica)


def app_with_replica(settings: Settings, migrated_url: str, replica: StandbyCluster, **database: Any) -> Any:
    """The app with the standby as its read URL (and other database settings for one test)."""
    from api.app import create_app

    changed = settings.database.model_copy(update={"read_url": replica.app_url(), **database})
    return create_app(settings.model_copy(update={"database": changed}), url=migrated_url)


def wait_until(check: Callable[[], bool], *, what: str, timeout: float = 10.0) -> float:
    """Poll ``check`` until it holds; the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def _caught_up(replica: StandbyCluster) -> bool:
    st = replica.replica_status()
    return st.state == "streaming" and st.lag_bytes == 0


def _pause(replica: StandbyCluster) -> None:
    with psycopg.connect(replica.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")


def _resume(replica: StandbyCluster) -> None:
    with psycopg.connect(replica.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_resume()")


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The Web Mercator tile holding a point."""
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def test_a_replica_created_while_the_api_runs_takes_reads_and_a_removed_one_is_let_go(
    cluster: EmbeddedCluster, db: Engine, admin: Actor, settings: Settings, migrated_url: str
) -> None:
    from api.app import create_app

    # The session cluster's one standby place: the module's standby (when made already) gives way.
    standby = StandbyCluster(cluster)
    existed = standby.created()
    standby.destroy()
    lamp = make_asset(db, admin, geometry=point())
    # As `smartcode serve` runs it: the settings name the embedded cluster, the URL is its service role's.
    embedded = EmbeddedSettings(
        data_dir=cluster.configured_data_dir, db_name=cluster.db_name, server_user=cluster.server_user
    )
    on_embedded = settings.model_copy(
        update={"database": settings.database.model_copy(update={"url": None}), "embedded": embedded}
    )
    app = create_app(on_embedded, url=migrated_url)
    try:
        with TestClient(app) as client:

            def served_by(*, settled: bool = True) -> str | None:
                response = client.get("/api/v1/resolve", params={"code": lamp.code})
                assert response.status_code == 200, response.text
                asset = client.get(f"/api/v1/assets/{lamp.code}", headers=AUTH)
                assert asset.status_code == 200, asset.text
                if settled:  # while the router changes its mind, two lookups may be answered apart
                    assert asset.headers.get("x-served-by") == response.headers.get("x-served-by")
                return response.headers.get("x-served-by")

            assert served_by() is None and "replica" not in client.get("/api/v1/health").json()
            new = {"class_code": "0118", "geometry": point()}
            assert "x-smartcode-lsn" not in client.post("/api/v1/assets", json=new, headers=AUTH).headers
            standby.create()  # as `smartcode db replica create` does, with the API up
            took = wait_until(
                lambda: served_by(settled=False) == "replica", what="reads on the new replica", timeout=3.0
            )
            assert took < 3.0  # a few checks of 0.5 s, no restart
            assert served_by() == "replica"  # both lookups, now that it is settled
            health = client.get("/api/v1/health").json()["replica"]
            assert health["state"] == "serving" and health["serving_reads"] is True
            # Writes now carry their position, so their writers read them back (from here on).
            written = client.post("/api/v1/assets", json=new, headers=AUTH)
            assert written.status_code == 201 and "x-smartcode-lsn" in written.headers
            mine = client.get(f"/api/v1/assets/{written.json()['code']}", headers=AUTH)
            assert mine.status_code == 200
            standby.stop()
            assert served_by() == "primary"  # the first lookup after the loss is answered
            standby.destroy()
            # Removed: no longer tried or shown, and lookups keep being answered by the primary.
            wait_until(
                lambda: "replica" not in client.get("/api/v1/health").json(),
                what="/health to let the removed replica go",
                timeout=2.0,
            )
            for _ in range(3):
                assert served_by() is None
    finally:
        standby.destroy()
        if existed:
            standby.create()


def test_create_makes_a_streaming_standby_and_status_shows_its_lsns_and_lag(
    standby: StandbyCluster, cluster: EmbeddedCluster
) -> None:
    st = standby.replica_status()
    assert st.running and st.created and st.slot_active is True and st.state == "streaming"
    assert st.port != cluster.port and st.data_dir != cluster.data_dir
    assert st.lag_bytes == 0 and st.lag_s == 0.0
    assert parse_lsn(st.replay_lsn) == parse_lsn(st.primary_lsn)
    with psycopg.connect(standby.conninfo()) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE nope (x int)")


def test_lag_is_bytes_not_replayed_and_the_age_of_the_last_replayed_commit() -> None:
    assert measure_lag(True, "0/3000000", 120.0, "0/3000000").seconds == 0.0  # idle primary: no lag
    behind = measure_lag(True, "0/3000000", 2.5, "0/3000100")
    assert behind.bytes == 0x100 and behind.seconds == 2.5
    assert measure_lag(False, None, None, "0/5000000").bytes == 0  # a primary is never behind
    # The last record ended on a page boundary; the insert position is past the next page's header.
    assert measure_lag(True, "0/3002000", 60.0, "0/3002018").bytes == 0


def test_lookups_are_answered_by_the_replica_and_writes_and_the_log_by_the_primary(
    standby: StandbyCluster, db: Engine, admin: Actor, settings: Settings, migrated_url: str
) -> None:
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    lamp = make_asset(db, admin, owner_id=power.id, geometry=point())
    wait_until(lambda: _caught_up(standby), what="the standby to replay the new asset")
    app = app_with_replica(settings, migrated_url, standby)
    x, y = tile_of(*PINGSHAN, 16)
    with TestClient(app) as client:
        by_code = client.get("/api/v1/resolve", params={"code": lamp.code})
        assert by_code.status_code == 200 and by_code.headers["x-served-by"] == "replica"
        lon, lat = PINGSHAN
        by_place = client.get("/api/v1/resolve", params={"lon": lon, "lat": lat}, headers=AUTH)
        assert by_place.json()["owner"]["id"] == power.id
        assert by_place.headers["x-served-by"] == "replica"
        reads = [
            f"/c/{lamp.code}",
            f"/api/v1/assets/{lamp.code}",
            "/api/v1/assets",
            f"/api/v1/assets/{lamp.code}/history",
            f"/tiles/16/{x}/{y}.mvt",
            "/ogc/collections/assets/items",
            f"/ogc/collections/assets/items/{lamp.code}",
        ]
        for path in reads:
            response = client.get(path, headers=AUTH)
            assert response.status_code == 200, (path, response.text[:200])
            assert response.headers["x-served-by"] == "replica", path
        # The resolution log lives on the primary: the answers are there, under their ids.
        logged = client.get(f"/api/v1/resolutions/{by_code.json()['id']}", headers=AUTH)
        assert logged.status_code == 200 and logged.json()["answer"]["owner"]["id"] == power.id
        new = {"class_code": "0118", "geometry": point()}
        created = client.post("/api/v1/assets", json=new, headers=AUTH)
        assert created.status_code == 201 and "x-served-by" not in created.headers
        health = client.get("/api/v1/health").json()
    assert health["replica"]["state"] == "serving" and health["replica"]["serving_reads"] is True


def test_a_writer_reads_its_own_write_at_once_even_while_the_replica_is_behind(
    standby: StandbyCluster, settings: Settings, migrated_url: str
) -> None:
    # Generous lag bound: the paused standby stays fit, only the writer's position keeps it away.
    app = app_with_replica(settings, migrated_url, standby, max_replica_lag_s=120.0)
    with TestClient(app) as writer:
        _pause(standby)
        try:
            created = writer.post(
                "/api/v1/assets", json={"class_code": "0118", "geometry": point()}, headers=AUTH
            )
            assert created.status_code == 201
            code = created.json()["code"]
            lsn = created.headers["x-smartcode-lsn"]
            assert parse_lsn(lsn) is not None and writer.cookies.get("smartcode_lsn") == lsn
            mine = writer.get(f"/api/v1/assets/{code}", headers=AUTH)
            assert mine.status_code == 200 and mine.headers["x-served-by"] == "primary"
            resolved = writer.get("/api/v1/resolve", params={"code": code})
            assert resolved.status_code == 200 and resolved.headers["x-served-by"] == "primary"
            # A client that did not write reads the replica, which really has not replayed it yet.
            writer.cookies.clear()
            theirs = writer.get(f"/api/v1/assets/{code}", headers=AUTH)
            assert theirs.status_code == 404 and theirs.headers["x-served-by"] == "replica"
            # A client without cookies sends the position back in the header.
            echoed = writer.get(f"/api/v1/assets/{code}", headers={**AUTH, "X-Smartcode-Lsn": lsn})
            assert echoed.status_code == 200 and echoed.headers["x-served-by"] == "primary"
        finally:
            _resume(standby)
        wait_until(lambda: _caught_up(standby), what="the standby to replay the write")
        again = writer.get(f"/api/v1/assets/{code}", headers={**AUTH, "X-Smartcode-Lsn": lsn})
        assert again.status_code == 200 and again.headers["x-served-by"] == "replica"


def test_reads_leave_a_stopped_replica_at_once_and_come_back_within_two_seconds(
    standby: StandbyCluster, db: Engine, admin: Actor, settings: Settings, migrated_url: str
) -> None:
    lamp = make_asset(db, admin, geometry=point())
    wait_until(lambda: _caught_up(standby), what="the standby to replay the new asset")
    app = app_with_replica(settings, migrated_url, standby)
    with TestClient(app) as client:

        def served_by() -> str:
            response = client.get("/api/v1/resolve", params={"code": lamp.code})
            assert response.status_code == 200, response.text  # no lookup fails, whatever the replica does
            served = client.get(f"/api/v1/assets/{lamp.code}", headers=AUTH)
            assert served.status_code == 200, served.text
            return str(response.headers["x-served-by"])

        assert served_by() == "replica"
        standby.stop()
        assert served_by() == "primary"  # the very first lookup after the loss is answered
        wait_until(
            lambda: client.get("/api/v1/health").json()["replica"]["state"] == "down",
            what="/health to show the replica down",
            timeout=2.0,
        )
        for _ in range(5):
            assert served_by() == "primary"
        standby.start()
        took = wait_until(lambda: served_by() == "replica", what="reads back on the replica", timeout=2.0)
        assert took < 2.0
        health = client.get("/api/v1/health").json()["replica"]
        assert health["serving_reads"] is True and health["lag_bytes"] >= 0 and health["lag_s"] is not None
        # The lookups' log entries are still arriving: the standby reports no lag once it replayed them.
        wait_until(
            lambda: client.get("/api/v1/health").json()["replica"]["lag_bytes"] == 0,
            what="/health to show the standby caught up",
        )


def test_a_replica_lagging_beyond_the_bound_is_skipped_and_the_lag_is_in_health(
    standby: StandbyCluster, db: Engine, admin: Actor, settings: Settings, migrated_url: str
) -> None:
    lamp = make_asset(db, admin, geometry=point())
    wait_until(lambda: _caught_up(standby), what="the standby to replay the new asset")
    app = app_with_replica(settings, migrated_url, standby, max_replica_lag_s=0.5)
    with TestClient(app) as client:
        assert client.get("/api/v1/resolve", params={"code": lamp.code}).headers["x-served-by"] == "replica"
        _pause(standby)
        try:
            make_asset(db, admin, geometry=point())  # WAL the paused standby does not replay
            wait_until(
                lambda: client.get("/api/v1/health").json()["replica"]["state"] == "lagging",
                what="/health to show the replica lagging",
                timeout=5.0,
            )
            health = client.get("/api/v1/health").json()["replica"]
            assert health["lag_bytes"] > 0 and health["lag_s"] > 0.5 and health["serving_reads"] is False
            response = client.get("/api/v1/resolve", params={"code": lamp.code})
            assert response.status_code == 200 and response.headers["x-served-by"] == "primary"
        finally:
            _resume(standby)
        lookup = {"code": lamp.code}
        wait_until(
            lambda: client.get("/api/v1/resolve", params=lookup).headers["x-served-by"] == "replica",
            what="reads back on the caught-up replica",
            timeout=3.0,
        )


def test_the_cli_creates_stops_starts_and_reports_the_replica_in_chinese() -> None:
    from tests.test_cli import run

    base = Path(tempfile.mkdtemp(prefix="smartcode-test-"))
    base.chmod(0o755)  # the unprivileged server account must reach it when tests run as root
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCODE_")}
    env |= {"SMARTCODE_DATA_DIR": str(base / "pgdata"), "SMARTCODE_DB_NAME": "smartcode_cli_replica"}
    primary = EmbeddedCluster(base / "pgdata", db_name="smartcode_cli_replica")
    try:
        missing = run("db", "replica", "status", env=env)
        assert missing.returncode == 3 and "已创建" in missing.stdout
        created = run("db", "replica", "create", "--json", env=env)
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["status"] == "running"
        status = run("db", "replica", "status", env=env)
        assert status.returncode == 0, status.stderr
        lines = dict(line.split(maxsplit=1) for line in status.stdout.splitlines() if line.strip())
        assert lines["复制状态"].strip() == "streaming" and lines["延迟（字节）"].strip() == "0"
        assert run("db", "replica", "stop", env=env).returncode == 0
        assert run("db", "replica", "status", env=env).returncode == 3
        assert run("db", "replica", "start", env=env).returncode == 0
        again = json.loads(run("db", "replica", "status", "--json", env=env).stdout)
        assert again["running"] is True and again["slot"] == "smartcode_replica"
    finally:
        StandbyCluster(primary).destroy()
        primary.destroy()
        shutil.rmtree(base, ignore_errors=True)
