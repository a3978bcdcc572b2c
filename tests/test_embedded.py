"""The embedded PostgreSQL + PostGIS cluster, against the real server binaries (no mocks)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from common.errors import DatabaseUnavailable
from common.settings import DatabaseSettings, EmbeddedSettings, Settings
from registry.db import service_url
from registry.embedded import (
    APP_ROLE,
    FALLBACK_ROOT,
    MAX_SOCKET_PATH,
    EmbeddedCluster,
    _shared_buffers_mb,
    check_postgis,
    ensure_database_url,
    find_binaries,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _tempdir() -> Path:
    """A fresh directory under /tmp that the server account (when we are root) can traverse."""
    path = Path(tempfile.mkdtemp(prefix="smartcode-test-"))
    path.chmod(0o755)
    return path


def _run_python(code: str) -> subprocess.Popen[str]:
    """Start ``code`` in a separate interpreter (a truly separate process, as a second CLI call would be)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = _tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def embedded(workdir: Path) -> Iterator[EmbeddedCluster]:
    """One throwaway cluster shared by the module (initdb + PostGIS costs about a second)."""
    cluster = EmbeddedCluster(workdir / "var" / "pgdata", fast_unsafe=True)
    cluster.start()
    yield cluster
    cluster.destroy()


def test_start_reports_a_running_private_cluster(embedded: EmbeddedCluster) -> None:
    status = embedded.status()
    assert status.running
    assert status.pid is not None and Path(f"/proc/{status.pid}").exists()
    assert status.data_dir == embedded.data_dir
    assert (status.data_dir / "PG_VERSION").read_text().strip() == status.version
    assert status.socket_dir == embedded.socket_dir
    assert (status.socket_dir / ".s.PGSQL.5432").exists()
    # The socket dir is what makes trust auth safe: only the server account (and root) may enter it.
    st = status.socket_dir.stat()
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0
    assert pwd.getpwuid(st.st_uid).pw_name == status.server_user


def test_url_connects_with_postgis(embedded: EmbeddedCluster) -> None:
    url = embedded.url()
    assert url.startswith("postgresql+psycopg://smartcode@/smartcode?host=/")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == "smartcode"
            assert str(conn.execute(text("SELECT postgis_version()")).scalar()).startswith("3.")
            point = conn.execute(text("SELECT ST_AsText(ST_SetSRID(ST_MakePoint(114.35, 22.7), 4326))"))
            assert point.scalar() == "POINT(114.35 22.7)"
    finally:
        engine.dispose()


def test_listens_only_on_its_private_socket(embedded: EmbeddedCluster) -> None:
    with psycopg.connect(embedded.conninfo()) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.execute("SHOW unix_socket_directories").fetchone() == (str(embedded.socket_dir),)
        # Only "local" (socket) lines in pg_hba: trust can never apply to a TCP client.
        kinds = {row[0] for row in conn.execute("SELECT type FROM pg_hba_file_rules")}
        assert kinds == {"local"}


def test_server_settings_are_applied(embedded: EmbeddedCluster) -> None:
    with psycopg.connect(embedded.conninfo()) as conn:

        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            assert row is not None
            return str(row[0])

        assert show("shared_buffers") == f"{_shared_buffers_mb()}MB"  # an eighth of the memory
        assert show("wal_compression") in {"lz4", "on"} and show("wal_buffers") == "64MB"
        assert show("work_mem") == "32MB"
        assert show("max_connections") == "100"
        assert show("server_encoding") == "UTF8"
        assert show("fsync") == "off"  # fast_unsafe test cluster
    assert "log_line_prefix" in (embedded.data_dir / "smartcode.conf").read_text()


def test_start_again_is_idempotent(embedded: EmbeddedCluster) -> None:
    before = embedded.status()
    began = time.perf_counter()
    assert embedded.start() == embedded.url()
    assert time.perf_counter() - began < 5
    assert embedded.status().pid == before.pid


def test_another_process_sees_the_same_cluster(embedded: EmbeddedCluster) -> None:
    proc = _run_python(
        f"""
        import json
        from registry.embedded import EmbeddedCluster
        pg = EmbeddedCluster({str(embedded.configured_data_dir)!r})
        s = pg.status()
        seen = {{"running": s.running, "pid": s.pid, "data_dir": str(s.data_dir), "url": pg.url()}}
        print(json.dumps(seen))
        """
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    seen = json.loads(out)
    assert seen == {
        "running": True,
        "pid": embedded.status().pid,
        "data_dir": str(embedded.data_dir),
        "url": embedded.url(),
    }


def test_ensure_database_url(embedded: EmbeddedCluster) -> None:
    external = "postgresql+psycopg://someone@db.example/registry"
    assert ensure_database_url(Settings(database=DatabaseSettings(url=external))) == external
    settings = Settings(embedded=EmbeddedSettings(data_dir=embedded.configured_data_dir))
    assert ensure_database_url(settings) == embedded.url()


def test_the_service_connects_as_its_own_unprivileged_role(embedded: EmbeddedCluster) -> None:
    external = "postgresql+psycopg://smartcode_app@db.example/registry"
    assert service_url(Settings(database=DatabaseSettings(url=external))) == external
    settings = Settings(embedded=EmbeddedSettings(data_dir=embedded.configured_data_dir))
    url = service_url(settings)
    assert url == embedded.app_url() and url.startswith(f"postgresql+psycopg://{APP_ROLE}@")
    assert url != ensure_database_url(settings)  # migrations run as the owner
    conninfo = psycopg.conninfo.make_conninfo(embedded.conninfo(), user=APP_ROLE)
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = current_user"
        ).fetchone()
    assert row == (APP_ROLE, False, False, False)


def test_stop_start_keeps_data_then_destroy(embedded: EmbeddedCluster) -> None:
    # Runs last in this module: it stops, restarts and finally destroys the shared embedded.
    with psycopg.connect(embedded.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    embedded.stop()
    status = embedded.status()
    assert not status.running and status.pid is None
    embedded.stop()  # idempotent
    embedded.start()
    with psycopg.connect(embedded.conninfo()) as conn:
        assert conn.execute("SELECT id FROM kept").fetchone() == (42,)
    embedded.destroy()
    assert not embedded.data_dir.exists()
    status = embedded.status()
    assert not status.running and status.version is None
    embedded.destroy()  # idempotent too


def test_long_data_dir_concurrent_start_and_failure_log() -> None:
    workdir = _tempdir()
    # Deep enough that <data_dir>/run/.s.PGSQL.5432 would not fit in a Unix socket address.
    data_dir = workdir / ("d" * 60) / ("e" * 60) / "pgdata"
    assert len(str(data_dir / "run" / ".s.PGSQL.5432")) > MAX_SOCKET_PATH
    pg = EmbeddedCluster(data_dir, fast_unsafe=True)
    try:
        assert len(str(pg.socket_dir / ".s.PGSQL.5432")) <= MAX_SOCKET_PATH
        assert pg.socket_dir.parent == Path("/tmp")

        # Two processes start the same new cluster at once: both succeed, initdb runs exactly once.
        code = f"""
            import logging
            logging.basicConfig(level=logging.INFO, format="%(message)s")
            from registry.embedded import EmbeddedCluster
            print(EmbeddedCluster({str(data_dir)!r}, fast_unsafe=True).start())
            """
        procs = [_run_python(code) for _ in range(2)]
        results = [p.communicate(timeout=300) for p in procs]
        for proc, (_, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, err
        assert {out.strip() for out, _ in results} == {pg.url()}
        assert sum(err.count("initialising a new cluster") for _, err in results) == 1

        with psycopg.connect(pg.conninfo()) as conn:
            assert conn.execute("SELECT postgis_version()").fetchone() is not None
        st = pg.socket_dir.stat()
        assert stat.S_IMODE(st.st_mode) == 0o700

        # A server that cannot start reports why, from the tail of its log.
        pg.stop()
        main_conf = pg.data_dir / "postgresql.conf"
        good = main_conf.read_text()
        main_conf.write_text(good + "\nno_such_setting = 1\n")
        with pytest.raises(DatabaseUnavailable) as failure:
            pg.start()
        assert "no_such_setting" in failure.value.message
        main_conf.write_text(good)
        pg.start()
        assert pg.status().running
    finally:
        pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    assert not pg.socket_dir.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the data-dir fallback only applies when running as root")
def test_root_falls_back_when_server_account_cannot_reach_data_dir() -> None:
    hidden = Path(tempfile.mkdtemp(prefix="smartcode-test-"))  # mode 0700, like /root
    configured = hidden / "var" / "pgdata"
    pg = EmbeddedCluster(configured, fast_unsafe=True)
    try:
        assert pg.data_dir.parent.parent == FALLBACK_ROOT
        assert pg.data_dir != configured
        pg.start()
        # A later process (e.g. `smartcode db status`) derives the same real directory.
        again = EmbeddedCluster(configured)
        assert again.data_dir == pg.data_dir
        assert again.url() == pg.url()
        assert again.status().running
        assert not configured.exists()
    finally:
        pg.destroy()
        shutil.rmtree(hidden, ignore_errors=True)
    assert not pg.data_dir.parent.exists()


def _fake_install(root: Path, major: str) -> Path:
    """A PostgreSQL-like install tree (version report only, no PostGIS) for the discovery checks."""
    bindir = root / "lib" / major / "bin"
    bindir.mkdir(parents=True)
    share = root / "share" / major
    (share / "extension").mkdir(parents=True)
    scripts = {
        "postgres": f'echo "postgres (PostgreSQL) {major}.1"',
        "pg_ctl": "exit 0",
        "pg_config": f'case "$1" in --bindir) echo {bindir};; --sharedir) echo {share};; esac',
    }
    for name, body in scripts.items():
        script = bindir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    return root / "lib"


def test_missing_postgis_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debian_root = _fake_install(tmp_path, "99")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # hide the real pg_config
    bins = find_binaries(debian_root=debian_root)
    assert bins.major == "99"
    with pytest.raises(DatabaseUnavailable, match=r"apt-get install postgresql-99-postgis-3"):
        check_postgis(bins)


def test_missing_postgres_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DatabaseUnavailable, match=r"apt-get install postgresql postgresql-postgis"):
        find_binaries(debian_root=tmp_path / "nothing")


def test_existing_cluster_of_another_version_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    debian_root = _fake_install(tmp_path, "99")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DatabaseUnavailable, match=r"apt-get install postgresql-42 postgresql-42-postgis-3"):
        find_binaries("42", debian_root=debian_root)
