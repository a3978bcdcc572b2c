"""Backups of the embedded cluster: base backups plus the WAL archive, and point-in-time restore.

PostgreSQL's own machinery, nothing home-made: ``pg_basebackup`` takes a base backup (compressed tar,
with the WAL it needs to be consistent on its own), the server archives every WAL segment
(``archive_command`` in registry/embedded.py), and a restore unpacks a base backup and replays the
archive up to a time (``recovery_target_time``), then promotes. The data directory being replaced is
moved aside, never deleted; when the restored server does not come up, the old one is put back.
External databases use the same PostgreSQL tools or pgBackRest (docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from common.errors import ConfigurationError, DatabaseUnavailable, InvalidInput
from registry.embedded import EmbeddedCluster

META = "smartcode-backup.json"


@dataclass(frozen=True)
class BaseBackup:
    """One base backup: its id (UTC start time), where it is, when it ran and its first WAL segment."""

    id: str
    path: Path
    started_at: dt.datetime
    finished_at: dt.datetime
    start_wal: str
    bytes: int

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "path": str(self.path),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "start_wal": self.start_wal,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Restored:
    """What a restore did: the backup used, the target time, and where the replaced data went."""

    backup: BaseBackup
    target: dt.datetime | None
    previous_data_dir: Path


def _base_dir(cluster: EmbeddedCluster) -> Path:
    return cluster.backup_root / "base"


def _connect(cluster: EmbeddedCluster) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(cluster.conninfo(), autocommit=True, connect_timeout=5)


def _require_archive(cluster: EmbeddedCluster) -> None:
    if not cluster.wal_archive:
        raise ConfigurationError(
            "the WAL archive is off (SMARTCODE_WAL_ARCHIVE=false): a base backup alone cannot be restored "
            "to a point in time; turn it on and restart the database"
        )


def take_backup(cluster: EmbeddedCluster, keep: int) -> BaseBackup:
    """Take a base backup of the running cluster, then keep only the newest ``keep`` and their WAL."""
    _require_archive(cluster)
    cluster.start()
    with _connect(cluster) as conn:
        row = conn.execute("SELECT now(), pg_walfile_name(pg_current_wal_lsn())").fetchone()
    assert row is not None
    started_at, start_wal = row[0], str(row[1])
    assert isinstance(started_at, dt.datetime)
    backup_id = started_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = _base_dir(cluster) / backup_id
    cluster.make_server_dir(target.parent)
    cluster.run_as_server(
        "pg_basebackup",
        [
            "--pgdata", str(target),
            "--format", "tar",
            "--gzip",
            "--wal-method", "stream",
            "--checkpoint", "fast",
            "--label", f"smartcode {backup_id}",
            "--no-password",
            "--dbname", cluster.conninfo(),
        ],
        timeout=24 * 3600,
    )  # fmt: skip
    with _connect(cluster) as conn:
        finished = conn.execute("SELECT now()").fetchone()
        # The segment holding the backup's end goes to the archive now, not at the next timeout.
        conn.execute("SELECT pg_switch_wal()")
    assert finished is not None and isinstance(finished[0], dt.datetime)
    size = sum(f.stat().st_size for f in target.iterdir() if f.is_file())
    backup = BaseBackup(backup_id, target, started_at, finished[0], start_wal, size)
    meta = {k: v for k, v in backup.as_dict().items() if k != "path"}
    cluster.write_server_file(target / META, json.dumps(meta, indent=2))
    _prune(cluster, keep)
    return backup


def list_backups(cluster: EmbeddedCluster) -> list[BaseBackup]:
    """The complete base backups, oldest first (a directory without its metadata is unfinished)."""
    base = _base_dir(cluster)
    if not base.is_dir():
        return []
    found = []
    for meta_path in sorted(base.glob(f"*/{META}")):
        meta = json.loads(meta_path.read_text())
        found.append(
            BaseBackup(
                meta["id"],
                meta_path.parent,
                dt.datetime.fromisoformat(meta["started_at"]),
                dt.datetime.fromisoformat(meta["finished_at"]),
                meta["start_wal"],
                int(meta["bytes"]),
            )
        )
    return sorted(found, key=lambda b: b.started_at)


def _prune(cluster: EmbeddedCluster, keep: int) -> None:
    backups = list_backups(cluster)
    if len(backups) <= keep:
        return
    for old in backups[: len(backups) - keep]:
        shutil.rmtree(old.path)
    oldest_kept = backups[len(backups) - keep]
    # WAL older than the oldest kept backup's start can restore nothing any more.
    cluster.run_as_server(
        "pg_archivecleanup", ["-x", ".gz", str(cluster.wal_archive_dir), oldest_kept.start_wal]
    )


def choose_backup(backups: list[BaseBackup], to: dt.datetime | None) -> BaseBackup:
    """The newest backup that finished before ``to`` (the newest of all without a time)."""
    if not backups:
        raise InvalidInput("no base backup exists yet: take one with `smartcode db backup`")
    if to is None:
        return backups[-1]
    usable = [b for b in backups if b.finished_at <= to]
    if not usable:
        raise InvalidInput(
            f"no base backup finished before {to.isoformat()}; the earliest finished at "
            f"{backups[0].finished_at.isoformat()}",
            field="to",
        )
    return usable[-1]


def _archive_everything(cluster: EmbeddedCluster, wait_s: float = 30) -> None:
    """Switch to a new WAL segment and wait until the finished one is archived (best effort)."""
    try:
        with _connect(cluster) as conn:
            row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert row is not None
            wanted = str(row[0])
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                done = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
                if done and done[0] and str(done[0])[:24] >= wanted:
                    return
                time.sleep(0.1)
    except psycopg.OperationalError:
        return  # not running: what is archived is what there is


def restore(
    cluster: EmbeddedCluster,
    *,
    to: dt.datetime | None = None,
    backup_id: str | None = None,
    wait_s: float = 900,
) -> Restored:
    """Replace the cluster's data with a base backup replayed to ``to`` (the end of the archive if None)."""
    _require_archive(cluster)
    backups = list_backups(cluster)
    if backup_id is not None:
        backups = [b for b in backups if b.id == backup_id]
        if not backups:
            raise InvalidInput(f"no base backup {backup_id!r}", field="backup")
    backup = choose_backup(backups, to)
    _archive_everything(cluster)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    data_dir = cluster.data_dir
    aside = data_dir.with_name(f"{data_dir.name}.before-restore-{stamp}")
    with cluster.locked():
        cluster.stop_locked()
        data_dir.rename(aside)
        try:
            _unpack(cluster, backup, to)
            cluster.start_locked()
            _wait_promoted(cluster, wait_s)
        except DatabaseUnavailable:
            # Put the previous cluster back so a failed restore costs nothing.
            cluster.stop_locked()
            data_dir.rename(data_dir.with_name(f"{data_dir.name}.failed-restore-{stamp}"))
            aside.rename(data_dir)
            cluster.start_locked()
            raise
    with _connect(cluster) as conn:
        for name in ("restore_command", "recovery_target_time", "recovery_target_action"):
            conn.execute(f"ALTER SYSTEM RESET {name}")
        conn.execute("SELECT pg_reload_conf()")
    return Restored(backup, to, aside)


def _unpack(cluster: EmbeddedCluster, backup: BaseBackup, to: dt.datetime | None) -> None:
    data_dir = cluster.data_dir
    cluster.make_server_dir(data_dir)
    cluster.run_as_server("tar", ["-xzf", str(backup.path / "base.tar.gz"), "-C", str(data_dir)])
    cluster.make_server_dir(data_dir / "pg_wal")
    cluster.run_as_server("tar", ["-xzf", str(backup.path / "pg_wal.tar.gz"), "-C", str(data_dir / "pg_wal")])
    # The socket directory may live inside the data directory: its lock files are from the old server.
    for stale in data_dir.glob("run/.s.PGSQL.*"):
        stale.unlink()
    wal = str(cluster.wal_archive_dir).replace("'", "''")
    lines = [
        "",
        "# Written by smartcode db restore; reset once the restore is done.",
        f'restore_command = \'gunzip -c "{wal}/%f.gz" > "%p"\'',
        "recovery_target_action = 'promote'",
    ]
    if to is not None:
        lines.append(f"recovery_target_time = '{to.isoformat()}'")
    auto = data_dir / "postgresql.auto.conf"
    current = auto.read_text() if auto.exists() else ""
    cluster.write_server_file(auto, current + "\n".join(lines) + "\n")
    cluster.write_server_file(data_dir / "recovery.signal", "")


def _wait_promoted(cluster: EmbeddedCluster, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with _connect(cluster) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and row[0] is False:
                    return
        except psycopg.OperationalError:
            pass  # still starting, or replaying before it accepts connections
        time.sleep(0.2)
    raise DatabaseUnavailable(f"the restored cluster did not finish recovery within {wait_s:.0f} s")
