"""The restore drill: a base backup, changes after it, and a restore to a time between them.

A real cluster with the WAL archive on (as a deployment runs it), its own directory, its own server.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from common.errors import InvalidInput
from registry.backup import list_backups, restore, take_backup
from registry.embedded import EmbeddedCluster


@pytest.fixture(scope="module")
def archived() -> Iterator[EmbeddedCluster]:
    """A started cluster that archives its WAL, removed afterwards with its backups."""
    base = Path(tempfile.mkdtemp(prefix="smartcode-backup-"))
    base.chmod(0o755)  # the unprivileged server account must reach it when tests run as root
    cluster = EmbeddedCluster(base / "pgdata", db_name="drill", fast_unsafe=True, wal_archive=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


def _sql(cluster: EmbeddedCluster, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def _names(cluster: EmbeddedCluster) -> list[str]:
    return [str(r[0]) for r in _sql(cluster, "SELECT name FROM drill ORDER BY name")]


def test_a_restore_to_a_time_before_a_change_loses_the_change_and_keeps_everything_before(
    archived: EmbeddedCluster,
) -> None:
    _sql(archived, "CREATE TABLE drill (name text PRIMARY KEY)")
    _sql(archived, "INSERT INTO drill VALUES ('在备份之前')")
    backup = take_backup(archived, keep=3)
    assert (backup.path / "base.tar.gz").is_file() and backup.bytes > 0
    _sql(archived, "INSERT INTO drill VALUES ('备份之后、还原点之前')")
    time.sleep(0.2)
    restore_point = dt.datetime.now(dt.UTC)
    time.sleep(0.2)
    _sql(archived, "INSERT INTO drill VALUES ('还原点之后（错误的批次）')")
    _sql(archived, "DROP TABLE IF EXISTS nothing_here")
    assert len(_names(archived)) == 3

    # Everything in the archive first: all three rows come back (the archive replays past the backup).
    full = restore(archived, backup_id=backup.id)
    assert full.previous_data_dir.is_dir(), "the replaced data directory is kept, not deleted"
    assert len(_names(archived)) == 3

    done = restore(archived, to=restore_point)
    assert done.backup.id == backup.id
    assert _names(archived) == ["在备份之前", "备份之后、还原点之前"]
    # The restored cluster is a writable primary again, and keeps archiving for the next restore.
    _sql(archived, "INSERT INTO drill VALUES ('还原之后')")
    assert _sql(archived, "SELECT pg_is_in_recovery()") == [(False,)]
    # The recovery settings are gone from the configuration, so the next start is an ordinary one.
    assert "recovery_target" not in (archived.data_dir / "postgresql.auto.conf").read_text()


def test_a_time_before_every_backup_is_refused_and_changes_nothing(archived: EmbeddedCluster) -> None:
    before = _sql(archived, "SELECT count(*) FROM pg_class")
    with pytest.raises(InvalidInput, match="no base backup finished before"):
        restore(archived, to=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert _sql(archived, "SELECT count(*) FROM pg_class") == before


def test_old_backups_and_their_wal_are_pruned(archived: EmbeddedCluster) -> None:
    for _ in range(3):
        take_backup(archived, keep=2)
    kept = list_backups(archived)
    assert len(kept) == 2
    oldest_wal = kept[0].start_wal
    # Segments are compared without their timeline (the first 8 digits), as pg_archivecleanup does.
    segments = sorted(p.name[8:24] for p in archived.wal_archive_dir.glob("*.gz") if len(p.name) == 27)
    assert segments and segments[0] >= oldest_wal[8:24]


def test_the_cli_backs_up_lists_and_restores_to_a_local_time(archived: EmbeddedCluster) -> None:
    from tests.test_cli import run

    env = {k: v for k, v in os.environ.items() if k != "SMARTCODE_DATABASE_URL"}
    env |= {
        "SMARTCODE_DATA_DIR": str(archived.configured_data_dir),
        "SMARTCODE_DB_NAME": "drill",
        "SMARTCODE_TIMEZONE": "Asia/Shanghai",
    }
    _sql(archived, "CREATE TABLE IF NOT EXISTS cli_drill (n int)")
    made = run("db", "backup", env=env)
    assert made.returncode == 0, made.stderr
    assert "已完成基础备份" in made.stdout and "Asia/Shanghai" in made.stdout
    _sql(archived, "INSERT INTO cli_drill VALUES (1)")
    time.sleep(1.1)  # the CLI takes whole seconds
    local_point = dt.datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    time.sleep(1.1)
    _sql(archived, "INSERT INTO cli_drill VALUES (2)")
    refused = run("db", "restore", "--to", "昨天", "--yes", env=env)
    assert refused.returncode == 1 and "时间格式" in refused.stderr
    done = run("db", "restore", "--to", local_point, "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["to"].endswith("+08:00")
    assert _sql(archived, "SELECT n FROM cli_drill") == [(1,)]


def test_the_backup_directory_can_live_on_another_disk(tmp_path: Path) -> None:
    from common.settings import EmbeddedSettings, Settings

    other_disk = tmp_path / "mnt" / "backup-disk"
    settings = Settings(embedded=EmbeddedSettings(data_dir=tmp_path / "pgdata", backup_dir=other_disk))
    cluster = EmbeddedCluster.from_settings(settings)
    assert cluster.wal_archive and cluster.wal_archive_dir == other_disk.resolve() / "wal"
