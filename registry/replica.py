"""A streaming standby of the embedded cluster: ``smartcode db replica create|start|stop|status``.

The standby is a physical copy made with ``pg_basebackup -R`` through a replication slot, in its own
data directory beside the primary's (``pgdata-replica``) with its own socket (port 5433 names it).
It replays the primary's WAL and answers read-only queries (hot standby); the slot keeps the primary
from recycling WAL the standby has not received yet, so a stopped standby catches up when it starts.

The lag arithmetic here is shared by the CLI's status and the API's health loop (api/replicas.py).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg

from common.errors import DatabaseUnavailable
from common.settings import Settings
from registry.embedded import LOG_NAME, PORT, EmbeddedCluster, _run

log = logging.getLogger(__name__)

REPLICA_PORT = PORT + 1
SLOT_NAME = "smartcode_replica"
# What a standby says about itself: whether it replays, how far, and when the last replayed commit
# was made on the primary.
STANDBY_SQL = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,"
    " extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8"
)
# The WAL position after everything committed so far: a standby has replayed everything when it has
# reached it, and a client that just wrote reads its write on a standby that has. The insert
# position, not the write position: with synchronous_commit off a commit may not be written out for
# a while, and the write position would call a standby current that has not seen it.
PRIMARY_LSN_SQL = "SELECT pg_current_wal_insert_lsn()::text"
COMMIT_LSN_SQL = PRIMARY_LSN_SQL
# WAL pages (XLOG_BLCKSZ) and the longest page header: an insert position just past a page header
# is where the last record ended, seen from the next page.
WAL_PAGE = 8192
WAL_PAGE_HEADER_MAX = 40
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def parse_lsn(text: str | None) -> int | None:
    """An LSN such as ``0/3000148`` as a number; None when ``text`` is not one."""
    match = _LSN.match(text or "")
    if match is None:
        return None
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(lsn: int) -> str:
    """A number as PostgreSQL writes an LSN (``0/3000148``)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class Lag:
    """How far a standby is behind its primary: WAL bytes not replayed yet and their age in seconds."""

    in_recovery: bool
    replay_lsn: int | None
    primary_lsn: int | None
    bytes: int | None
    seconds: float | None


def measure_lag(
    in_recovery: bool, replay_lsn: str | None, replay_age_s: float | None, primary_lsn: str | None
) -> Lag:
    """The lag from the standby's row of :data:`STANDBY_SQL` and the primary's :data:`PRIMARY_LSN_SQL`.

    A standby that has replayed everything has no lag however long ago the last commit was (an idle
    primary sends nothing); otherwise the lag is the age of the last commit it replayed. A server not
    in recovery (a read URL naming a primary, or a promoted standby) is never behind.
    """
    if not in_recovery:
        return Lag(False, None, parse_lsn(primary_lsn), 0, 0.0)
    replayed, current = parse_lsn(replay_lsn), parse_lsn(primary_lsn)
    if replayed is None or current is None:
        return Lag(True, replayed, current, None, None)
    behind = max(0, current - replayed)
    if 0 < current % WAL_PAGE <= WAL_PAGE_HEADER_MAX and replayed == current - current % WAL_PAGE:
        behind = 0  # the last record ended on a page boundary: nothing is missing
    if behind == 0:
        return Lag(True, replayed, current, 0, 0.0)
    return Lag(True, replayed, current, behind, None if replay_age_s is None else max(0.0, replay_age_s))


@dataclass(frozen=True)
class ReplicaStatus:
    """What ``smartcode db replica status`` shows."""

    created: bool
    running: bool
    data_dir: Path
    socket_dir: Path
    port: int
    pid: int | None
    slot: str
    slot_active: bool | None  # None: the primary is not running, or has no such slot
    state: str | None  # pg_stat_replication.state: streaming, catchup, startup...
    sent_lsn: str | None
    replay_lsn: str | None
    primary_lsn: str | None
    lag_bytes: int | None
    lag_s: float | None


class StandbyCluster(EmbeddedCluster):
    """The standby: an embedded cluster whose data directory is a base backup of the primary's."""

    def __init__(self, primary: EmbeddedCluster) -> None:
        """Describe the standby of ``primary`` (beside its data directory); nothing is created here."""
        self.primary = primary
        data_dir = primary.data_dir.with_name(f"{primary.data_dir.name}-replica")
        super().__init__(
            data_dir,
            primary.db_name,
            primary.server_user,
            fast_unsafe=primary.fast_unsafe,
            port=REPLICA_PORT,
        )

    def created(self) -> bool:
        """Whether the standby's data directory holds a base backup."""
        return (self.data_dir / "PG_VERSION").exists()

    def create(self) -> str:
        """Copy the running primary into a new standby and start it; an existing standby is just started."""
        if self.created():
            return self.start()
        self.primary.start()
        self.primary.ensure_replication_access()
        self._ensure_slot()
        try:
            with self._locked():
                bins = self._binaries(require_postgis=True)
                uid, gid = self._server_ids(create=True)
                self._ensure_data_dir(uid, gid)
                self._base_backup(bins.tool("pg_basebackup"))
        except BaseException:
            self._remove_data()
            self._drop_slot()
            raise
        return self.start()

    def start(self) -> str:
        """Start the standby (it must have been created); return its URL as the cluster's owner."""
        if not self.created():
            raise DatabaseUnavailable(
                "no replica has been created yet: run `smartcode db replica create` first",
                data_dir=str(self.data_dir),
            )
        return super().start()

    def destroy(self) -> None:
        """Stop and delete the standby, and drop its slot so the primary stops keeping WAL for it."""
        super().destroy()
        self._drop_slot()

    def replica_status(self) -> ReplicaStatus:
        """The standby's state, and its lag as the primary and the standby see it."""
        base = self.status()
        slot_active = state = sent = replay = primary_lsn = None
        if self.primary.status().running:
            with (
                contextlib.suppress(psycopg.Error),
                psycopg.connect(self.primary.conninfo(), connect_timeout=5) as conn,
            ):
                row = conn.execute(
                    "SELECT sl.active, r.state, r.sent_lsn::text, r.replay_lsn::text,"
                    " pg_current_wal_insert_lsn()::text FROM pg_replication_slots sl"
                    " LEFT JOIN pg_stat_replication r ON r.pid = sl.active_pid WHERE sl.slot_name = %s",
                    (SLOT_NAME,),
                ).fetchone()
                if row is None:
                    primary_lsn = conn.execute(PRIMARY_LSN_SQL).fetchone()[0]  # type: ignore[index]
                else:
                    slot_active, state, sent, replay, primary_lsn = row
        lag = Lag(True, None, None, None, None)
        if base.running:
            with (
                contextlib.suppress(psycopg.Error),
                psycopg.connect(self.conninfo(), connect_timeout=5) as conn,
            ):
                in_recovery, replayed, age = conn.execute(STANDBY_SQL).fetchone()  # type: ignore[misc]
                lag = measure_lag(in_recovery, replayed, age, primary_lsn)
                replay = replayed or replay
        return ReplicaStatus(
            created=self.created(),
            running=base.running,
            data_dir=self.data_dir,
            socket_dir=self.socket_dir,
            port=self.port,
            pid=base.pid,
            slot=SLOT_NAME,
            slot_active=slot_active,
            state=state,
            sent_lsn=sent,
            replay_lsn=replay,
            primary_lsn=primary_lsn,
            lag_bytes=lag.bytes,
            lag_s=lag.seconds,
        )

    # ------------------------------------------------------------------------------------ internals

    def _ensure_slot(self) -> None:
        with psycopg.connect(self.primary.conninfo(), autocommit=True, connect_timeout=30) as conn:
            exists = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (SLOT_NAME,))
            if exists.fetchone() is None:
                # Reserve WAL at once, so nothing written from here on is recycled before the copy streams it.
                conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (SLOT_NAME,))

    def _drop_slot(self) -> None:
        if not self.primary.status().running:
            return
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.primary.conninfo(), autocommit=True, connect_timeout=5) as conn,
        ):
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = %s AND NOT active",
                (SLOT_NAME,),
            )

    def _base_backup(self, pg_basebackup: str) -> None:
        """``pg_basebackup -R``: copy the primary over its socket and write the standby's settings."""
        cmd = [
            pg_basebackup,
            "--pgdata",
            str(self.data_dir),
            "--host",
            str(self.primary.socket_dir),
            "--port",
            str(self.primary.port),
            "--username",
            self.primary.server_user,
            "--no-password",
            "--wal-method=stream",
            "--slot",
            SLOT_NAME,
            "--write-recovery-conf",
            "--checkpoint=fast",
        ]
        if self.fast_unsafe:
            cmd.append("--no-sync")
        log.info("embedded PostgreSQL: copying %s into a standby at %s", self.primary.data_dir, self.data_dir)
        proc = _run(self._as_server(cmd), check=False, timeout=3600)
        if proc.returncode != 0:
            raise DatabaseUnavailable(
                f"pg_basebackup could not copy the primary into {self.data_dir}:\n"
                f"{(proc.stderr or proc.stdout).strip()}",
                data_dir=str(self.data_dir),
            )
        # Files of the primary's running server that mean nothing to the standby.
        for stale in (LOG_NAME, LOG_NAME + ".1"):
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / stale).unlink()
        run_dir = self.data_dir / "run"
        if run_dir.is_dir():
            for leftover in run_dir.iterdir():
                with contextlib.suppress(OSError):
                    leftover.unlink()

    def _remove_data(self) -> None:
        with contextlib.suppress(DatabaseUnavailable):
            self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def embedded_replica(settings: Settings) -> StandbyCluster:
    """The standby of the configured embedded cluster (described only: nothing starts here)."""
    # As the deployment runs it (WAL archive included): creating a standby may start the primary.
    return StandbyCluster(EmbeddedCluster.from_settings(settings))


def embedded_standby(settings: Settings) -> StandbyCluster | None:
    """The standby the API looks for: the embedded cluster's, unless the settings name a database.

    With ``SMARTCODE_DATABASE_URL`` (an external primary) or a read URL of its own there is no embedded
    standby to look for: None.
    """
    if settings.database.url or settings.database.read_url:
        return None
    return embedded_replica(settings)


def standby_read_url(standby: StandbyCluster) -> str | None:
    """The service role's URL on ``standby`` while it exists; None before it is created or once removed.

    A standby that is created but stopped is still named: the API's health check finds it down, and
    back when it runs again. Cheap (one file looked up): the API asks at every check.
    """
    return standby.app_url() if standby.created() else None
