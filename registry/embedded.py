"""The embedded PostgreSQL + PostGIS cluster that smartcode runs for itself when no database URL is set.

The cluster listens only on a Unix socket in a private directory (no TCP port), so ``trust`` auth is safe:
only the account running the server (and root) can reach the socket. PostgreSQL refuses to run as root, so
when invoked as root the server runs as an unprivileged system account (``server_user``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from common.errors import DatabaseUnavailable
from common.settings import Settings

log = logging.getLogger(__name__)

# Where Debian/Ubuntu put one directory per installed server major version.
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
# Fallback home for clusters whose configured data dir the server account cannot reach (e.g. under /root).
FALLBACK_ROOT = Path("/var/lib/smartcode")
# Always /tmp, never $TMPDIR: the fallback socket dir must be derived identically by every process.
SOCKET_FALLBACK_ROOT = Path("/tmp")
PORT = 5432  # only names the socket file (.s.PGSQL.5432); nothing listens on TCP
# sun_path is 108 bytes including the terminating NUL; PostgreSQL refuses longer socket paths.
MAX_SOCKET_PATH = 107
LOG_NAME = "server.log"
CONF_NAME = "smartcode.conf"
# A log above this size is rotated (one generation kept) before the next start so it cannot grow forever.
LOG_ROTATE_BYTES = 16 * 1024 * 1024
LOG_TAIL_LINES = 25
# Seconds pg_ctl waits for start/stop; crash recovery or the shutdown checkpoint of a big import can be slow.
PG_CTL_WAIT = 300
# The login role the service uses (the owner runs migrations): see alembic/versions/0011_app_role.py.
APP_ROLE = "smartcode_app"

# pg_hba.conf: the socket only, for sessions and for a standby's WAL stream (replication connections
# match no database name, so they need their own line).
HBA_LINES = "local all all trust\nlocal replication all trust\n"

_INSTALL_POSTGRES = "apt-get install postgresql postgresql-postgis"
_warned_fallback: set[Path] = set()


@dataclass(frozen=True)
class ClusterStatus:
    """A snapshot of the embedded cluster: is it up, where does it live, who runs it."""

    running: bool
    data_dir: Path
    socket_dir: Path
    pid: int | None
    server_user: str  # the OS account that runs (or would run) the postmaster
    version: str | None  # the cluster's PostgreSQL major version (PG_VERSION), None before initdb


@dataclass(frozen=True)
class ServerBinaries:
    """One PostgreSQL server installation: its bin dir, major version and share dir."""

    bindir: Path
    major: str
    sharedir: Path

    def tool(self, name: str) -> str:
        """Absolute path of one of the installation's programs (initdb, pg_ctl...)."""
        return str(self.bindir / name)


class EmbeddedCluster:
    """A private PostgreSQL cluster in ``data_dir``, started on demand, reachable only via a Unix socket."""

    def __init__(
        self,
        data_dir: Path,
        db_name: str = "smartcode",
        server_user: str = "smartcode",
        *,
        fast_unsafe: bool = False,
        wal_archive: bool = False,
        archive_timeout_s: int = 300,
        backup_dir: Path | None = None,
        port: int = PORT,
    ) -> None:
        """Describe the cluster; nothing is created or started until :meth:`start`.

        ``wal_archive``: keep every WAL segment (gzipped) under :attr:`backup_root` ``/wal``, which with
        the base backups of :mod:`registry.backup` allows a restore to any point in time.
        """
        self.configured_data_dir = Path(data_dir).expanduser().resolve()
        self.db_name = db_name
        self.server_user = server_user
        # Throwaway test clusters may trade crash safety for speed; a real registry never should. It
        # takes effect when the server starts, not on a server that is already running.
        self.fast_unsafe = fast_unsafe
        self.wal_archive = wal_archive
        self.archive_timeout_s = archive_timeout_s
        self._backup_dir = Path(backup_dir).expanduser().resolve() if backup_dir else None
        # Only names the socket file: a standby beside the primary (registry/replica.py) takes another.
        self.port = port
        self._root = os.geteuid() == 0
        self._fallback_base = FALLBACK_ROOT / _short_hash(self.configured_data_dir, 12)
        # Decided once, from the file system alone, so every process (start, status, url) agrees.
        self.data_dir = self._choose_data_dir()
        self.socket_dir = _socket_dir_for(self.data_dir, port)
        self._binaries_cache: ServerBinaries | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedCluster:
        """The deployment's cluster as its settings describe it (with the WAL archive unless turned off)."""
        e = settings.embedded
        return cls(
            e.data_dir,
            e.db_name,
            e.server_user,
            wal_archive=e.wal_archive,
            archive_timeout_s=e.archive_timeout_s,
            backup_dir=e.backup_dir,
        )

    # ------------------------------------------------------------------------------------- public API

    def start(self) -> str:
        """Initialise (first time), start and prepare the database with PostGIS; return :meth:`url`."""
        self._announce_fallback()
        with self._locked():
            bins = self._binaries(require_postgis=True)
            uid, gid = self._server_ids(create=True)
            self._ensure_data_dir(uid, gid)
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(bins, uid, gid)
            self._start_server(bins, uid, gid)
            if not self.is_standby():
                self._ensure_database()
        return self.url()

    def is_standby(self) -> bool:
        """Whether the data directory is a streaming standby's (it holds ``standby.signal``)."""
        return (self.data_dir / "standby.signal").exists()

    def stop(self) -> None:
        """Shut the server down (fast mode: roll back open transactions); a no-op when it is not running."""
        if not (self.data_dir / "PG_VERSION").exists():
            return  # nothing was ever created: do not create directories just to take the lock
        with self._locked():
            self._stop_unlocked()

    def ensure_replication_access(self) -> None:
        """Let a standby stream WAL over the socket (clusters made before replicas lacked the hba line)."""
        with self._locked():
            uid, gid = self._server_ids(create=False)
            if self._ensure_replication_hba(uid, gid) and self._is_running():
                bins = self._binaries(require_postgis=False)
                _run(
                    self._as_server([bins.tool("pg_ctl"), "reload", "-D", str(self.data_dir), "-s"]),
                    check=True,
                )

    def status(self) -> ClusterStatus:
        """Report whether the server runs (``pg_ctl status``), its pid, directories and version."""
        running = self._is_running()
        return ClusterStatus(
            running=running,
            data_dir=self.data_dir,
            socket_dir=self.socket_dir,
            pid=self._postmaster_pid() if running else None,
            server_user=self._server_account_name(),
            version=self._cluster_version(),
        )

    def url(self) -> str:
        """SQLAlchemy URL of the database as its owner (migrations, the CLI), through the Unix socket."""
        return self._url_as(self.server_user)

    def app_url(self) -> str:
        """SQLAlchemy URL as the service's role (``APP_ROLE``): it may append to history, never rewrite it."""
        return self._url_as(APP_ROLE)

    def _url_as(self, role: str) -> str:
        user = quote(role, safe="")
        db = quote(self.db_name, safe="")
        host = quote(str(self.socket_dir), safe="/")
        port = "" if self.port == PORT else f"&port={self.port}"
        return f"postgresql+psycopg://{user}@/{db}?host={host}{port}"

    def conninfo(self, dbname: str | None = None) -> str:
        """libpq connection string for psycopg or the PostgreSQL client tools (default: our database)."""
        return psycopg.conninfo.make_conninfo(
            host=str(self.socket_dir),
            port=str(self.port),
            user=self.server_user,
            dbname=dbname or self.db_name,
        )

    @property
    def backup_root(self) -> Path:
        """Where base backups and the WAL archive live (default: ``backups`` beside the data directory)."""
        return self._backup_dir or self.data_dir.parent / "backups"

    @property
    def wal_archive_dir(self) -> Path:
        """The WAL archive (one gzipped file per segment), written by the server's archive_command."""
        return self.backup_root / "wal"

    def run_as_server(self, tool: str, args: Sequence[str], *, timeout: float = 600) -> str:
        """Run a PostgreSQL tool (``pg_basebackup``, ``tar`` …) as the server account; its output.

        A tool from the server's own bin directory is looked up there, anything else on PATH.
        ``DatabaseUnavailable`` with the tool's own message when it fails.
        """
        bins = self._binaries(require_postgis=False)
        path = bins.tool(tool) if (bins.bindir / tool).exists() else (shutil.which(tool) or tool)
        proc = _run(self._as_server([path, *args]), check=False, timeout=timeout)
        if proc.returncode != 0:
            raise DatabaseUnavailable(
                f"{tool} failed: {(proc.stderr or proc.stdout).strip()}", data_dir=str(self.data_dir)
            )
        return proc.stdout

    def make_server_dir(self, path: Path) -> None:
        """Create ``path`` (and parents) owned by the server account, mode 0700."""
        uid, gid = self._server_ids(create=True)
        self._ensure_server_dir(path, uid, gid)

    def write_server_file(self, path: Path, text: str) -> None:
        """Write a file owned by the server account (mode 0600), e.g. a recovery setting."""
        uid, gid = self._server_ids(create=False) if self._root else (os.getuid(), os.getgid())
        _write_file(path, text, uid, gid, self._root)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """The cluster's lock: no start, stop or restore of this cluster runs meanwhile in any process."""
        return self._locked()

    def stop_locked(self) -> None:
        """:meth:`stop` for a caller that already holds :meth:`locked`."""
        self._stop_unlocked()

    def start_locked(self) -> None:
        """Start the server as it is (no initdb, no database creation) for a caller holding :meth:`locked`."""
        uid, gid = self._server_ids(create=False)
        self._start_server(self._binaries(require_postgis=False), uid, gid)

    def _start_server(self, bins: ServerBinaries, uid: int, gid: int) -> None:
        """Bring an existing data directory's configuration up to date and start it unless it runs."""
        self._ensure_include()
        self._ensure_replication_hba(uid, gid)
        if self.wal_archive:
            self._ensure_server_dir(self.wal_archive_dir, uid, gid)
        self._prepare_socket_dir(uid, gid)
        if not self._pg_ctl_running(bins):
            self._write_conf(uid, gid, wal_compression=_wal_compression(bins))
            self._rotate_log()
            self._pg_ctl_start(bins)

    def destroy(self) -> None:
        """Stop the server and delete the data directory and everything else this cluster created."""
        lock_path = self._lock_path()
        if not self.data_dir.exists() and not self.socket_dir.exists():
            return
        with self._locked():
            self._stop_unlocked()
            shutil.rmtree(self.data_dir, ignore_errors=True)
            if self.socket_dir.parent != self.data_dir:
                shutil.rmtree(self.socket_dir, ignore_errors=True)
            # Removed so tests leave nothing behind in /tmp. destroy() is meant for throwaway clusters:
            # a start() racing with it in another process is not supported.
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
        if self.data_dir.parent == self._fallback_base:
            with contextlib.suppress(OSError):
                self._fallback_base.rmdir()
        if self.data_dir.exists():
            raise DatabaseUnavailable(f"could not remove {self.data_dir}", data_dir=str(self.data_dir))

    # ------------------------------------------------------------------------------ where things live

    def _choose_data_dir(self) -> Path:
        """The data dir actually used: the configured one unless root's server account cannot reach it."""
        configured = self.configured_data_dir
        if not self._root:
            return configured
        fallback = self._fallback_base / "pgdata"
        # An existing cluster always wins, so a later chmod of some parent cannot silently switch clusters.
        if (configured / "PG_VERSION").exists():
            return configured
        if (fallback / "PG_VERSION").exists():
            return fallback
        return configured if self._server_can_traverse(configured.parent) else fallback

    def _server_can_traverse(self, path: Path) -> bool:
        """Whether the server account could search every existing directory on the way to ``path``."""
        try:
            pw = pwd.getpwnam(self.server_user)
            uid, gids = pw.pw_uid, set(os.getgrouplist(self.server_user, pw.pw_gid))
        except KeyError:
            # Not created yet: a fresh system account owns nothing and is only in its own new group, so
            # the "other" permission bits decide, exactly as they will once it exists.
            uid, gids = -1, set()
        current = Path("/")
        for part in path.parts[1:]:
            current = current / part
            try:
                st = current.stat()
            except FileNotFoundError:
                return True  # we create the rest ourselves, with mode 0755
            if st.st_uid == uid:
                bit = stat.S_IXUSR
            elif st.st_gid in gids:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                return False
        return True

    def _announce_fallback(self) -> None:
        if self.data_dir == self.configured_data_dir or self.configured_data_dir in _warned_fallback:
            return
        _warned_fallback.add(self.configured_data_dir)
        log.warning(
            "embedded PostgreSQL: %s is not reachable by the server account %r (a parent directory is "
            "not searchable by other users); using %s instead",
            self.configured_data_dir,
            self.server_user,
            self.data_dir,
        )

    def _lock_path(self) -> Path:
        return self.data_dir.parent / f".{self.data_dir.name}.smartcode-lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start/stop/destroy across processes so two of them never run initdb at once."""
        self._make_parents(self.data_dir.parent)
        # O_NOFOLLOW: the lock may live in a shared directory such as /tmp. Read-only is enough for flock
        # and lets another account lock a file that root created.
        flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self._lock_path(), flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _make_parents(self, path: Path) -> None:
        """Create ``path`` and missing parents; as root make them 0755 so the server account gets through."""
        missing: list[Path] = []
        current = path
        while not current.exists():
            missing.append(current)
            current = current.parent
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                directory.mkdir()
                if self._root:
                    directory.chmod(0o755)  # umask may be 077 for root

    # -------------------------------------------------------------------------------- server account

    def _server_account_name(self) -> str:
        if self._root:
            return self.server_user
        try:
            return pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            return str(os.geteuid())

    def _server_ids(self, *, create: bool) -> tuple[int, int]:
        """uid/gid that own the data dir and run the server; as root the system account (made if asked)."""
        if not self._root:
            return os.geteuid(), os.getegid()
        try:
            pw = pwd.getpwnam(self.server_user)
        except KeyError:
            if not create:
                raise
            pw = _create_system_user(self.server_user)
        return pw.pw_uid, pw.pw_gid

    def _as_server(self, cmd: Sequence[str]) -> list[str]:
        """Prefix ``cmd`` so it runs as the server account (PostgreSQL refuses to run as root)."""
        if not self._root:
            return list(cmd)
        uid, gid = self._server_ids(create=False)
        # setpriv is preferred over runuser: it opens no PAM session that could outlive or kill the server.
        setpriv = shutil.which("setpriv") or _existing("/usr/bin/setpriv")
        if setpriv:
            return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--", *cmd]
        runuser = shutil.which("runuser") or _existing("/usr/sbin/runuser", "/sbin/runuser")
        if runuser:
            return [runuser, "-u", self.server_user, "--", *cmd]
        raise DatabaseUnavailable(
            "running as root, but neither setpriv nor runuser (util-linux) is available to drop privileges "
            "for PostgreSQL; install util-linux or run smartcode as an ordinary user"
        )

    # ------------------------------------------------------------------------------------- binaries

    def _binaries(self, *, require_postgis: bool) -> ServerBinaries:
        if self._binaries_cache is None:
            self._binaries_cache = find_binaries(self._cluster_version())
        bins = self._binaries_cache
        if require_postgis:
            check_postgis(bins)
        return bins

    def _cluster_version(self) -> str | None:
        try:
            return (self.data_dir / "PG_VERSION").read_text().strip() or None
        except OSError:
            return None

    # ----------------------------------------------------------------------------------- data dir

    def _ensure_data_dir(self, uid: int, gid: int) -> None:
        with contextlib.suppress(FileExistsError):
            self.data_dir.mkdir(mode=0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            if any(self.data_dir.iterdir()):
                raise DatabaseUnavailable(
                    f"{self.data_dir} is not empty but holds no PostgreSQL cluster; move its contents away "
                    "or point SMARTCODE_DATA_DIR at an empty or missing directory",
                    data_dir=str(self.data_dir),
                )
            if self._root:
                os.chown(self.data_dir, uid, gid)
            self.data_dir.chmod(0o700)
            if self._root:
                self._check_server_can_write()

    def _ensure_server_dir(self, path: Path, uid: int, gid: int) -> None:
        for part in reversed([path, *path.parents]):
            if part.exists():
                continue
            part.mkdir(mode=0o700)
            if self._root:
                os.chown(part, uid, gid)

    def _ensure_replication_hba(self, uid: int, gid: int) -> bool:
        """Let the server account make base backups and standbys over the private socket; True if added."""
        hba = self.data_dir / "pg_hba.conf"
        line = "local replication all trust"
        text = hba.read_text()
        if line in text.split("\n"):
            return False
        _write_file(hba, text.rstrip("\n") + "\n" + line + "\n", uid, gid, self._root)
        return True

    def _check_server_can_write(self) -> None:
        """Ask the kernel (ACLs, LSMs included) whether the server account can really use the data dir."""
        proc = _run(self._as_server(["test", "-w", str(self.data_dir)]), check=False)
        if proc.returncode != 0:
            raise DatabaseUnavailable(
                f"the server account {self.server_user!r} cannot write to {self.data_dir}; make every parent "
                "directory searchable (chmod o+x) or set SMARTCODE_DATA_DIR to a directory it can reach",
                data_dir=str(self.data_dir),
            )

    def _initdb(self, bins: ServerBinaries, uid: int, gid: int) -> None:
        cmd = [
            bins.tool("initdb"),
            "--pgdata",
            str(self.data_dir),
            "--username",
            self.server_user,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            # C collation: deterministic everywhere, fastest, and needs no OS locale to be installed.
            "--locale",
            "C",
            "--data-checksums",
            "--no-instructions",
        ]
        if self.fast_unsafe:
            cmd.append("--no-sync")
        log.info("embedded PostgreSQL: initialising a new cluster in %s", self.data_dir)
        proc = _run(self._as_server(cmd), check=False, timeout=600)
        if proc.returncode != 0:
            raise DatabaseUnavailable(
                f"initdb failed for {self.data_dir}:\n{(proc.stderr or proc.stdout).strip()}",
                data_dir=str(self.data_dir),
            )
        # initdb's trust also covers TCP lines; keep only the socket so a later listen_addresses change
        # could never expose a password-less server on the network.
        _write_file(
            self.data_dir / "pg_hba.conf",
            "# Written by smartcode. The server listens only on a Unix socket in a private directory\n"
            "# (mode 0700, owned by the server account), so only that account and root can connect.\n"
            f"{HBA_LINES}",
            uid,
            gid,
            self._root,
        )

    def _ensure_include(self) -> None:
        """Make postgresql.conf read smartcode.conf, which is rewritten on every start."""
        main_conf = self.data_dir / "postgresql.conf"
        line = f"include_if_exists = '{CONF_NAME}'"
        if line not in main_conf.read_text():
            with main_conf.open("a") as fh:
                fh.write(f"\n# Settings managed by smartcode (registry/embedded.py)\n{line}\n")

    def _write_conf(self, uid: int, gid: int, *, wal_compression: str = "on") -> None:
        safety = "off" if self.fast_unsafe else "on"
        socket_dir = str(self.socket_dir).replace("'", "''")
        text = f"""\
# Written by smartcode on every start (registry/embedded.py); edits here are overwritten.
# Only a Unix socket in a private directory: no TCP port at all.
listen_addresses = ''
port = {self.port}
unix_socket_directories = '{socket_dir}'
unix_socket_permissions = 0700

# Sized for the machine it runs on, which also runs the API and importers: an eighth of the memory
# for shared buffers (128 MB to 4 GB). A million-asset import touches about 1 GB of table and index
# pages; with too few buffers the import writes out and rereads its own dirty pages.
max_connections = 100
shared_buffers = {_shared_buffers_mb()}MB
work_mem = 32MB
maintenance_work_mem = 512MB
effective_cache_size = 8GB
# SSD storage: random reads cost little more than sequential ones.
random_page_cost = 1.1
effective_io_concurrency = 200
# Bulk imports: a million new assets write about 0.9 GB of WAL, most of it full-page images of
# index pages; compressing them and a larger WAL buffer cut the import's write time (measured in
# docs/benchmarks.md), and a larger max_wal_size avoids a forced checkpoint half-way.
wal_compression = {wal_compression}
wal_buffers = 64MB
max_wal_size = 4GB
# JIT compilation costs more than it saves on this workload's short queries.
jit = off

# Streaming replication (`smartcode db replica`, registry/replica.py): the primary sends WAL to a
# standby through a replication slot; the standby answers read-only queries while it replays, and
# tells the primary which rows its queries still need so long lookups are not cancelled there.
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on

# Crash safety; only a throwaway test cluster (fast_unsafe) turns these off.
fsync = {safety}
synchronous_commit = {safety}
full_page_writes = {safety}

log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 2000
"""
        if self.wal_archive:
            text += _archive_conf(self.wal_archive_dir, self.archive_timeout_s)
        _write_file(self.data_dir / CONF_NAME, text, uid, gid, self._root)

    def _prepare_socket_dir(self, uid: int, gid: int) -> None:
        """Create the socket directory private to the server account (this is what makes trust safe)."""
        sock = self.socket_dir
        with contextlib.suppress(FileExistsError):
            sock.mkdir(mode=0o700)
        st = sock.lstat()
        # Under /tmp someone else could have planted the name first: accept only our own plain directory.
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (uid, os.geteuid()):
            raise DatabaseUnavailable(
                f"socket directory {sock} exists but is not a directory owned by the server account; "
                "remove it and start again",
                socket_dir=str(sock),
            )
        if self._root:
            os.chown(sock, uid, gid)
        sock.chmod(0o700)

    def _rotate_log(self) -> None:
        logfile = self.data_dir / LOG_NAME
        with contextlib.suppress(FileNotFoundError):
            if logfile.stat().st_size > LOG_ROTATE_BYTES:
                logfile.replace(logfile.with_name(LOG_NAME + ".1"))

    # --------------------------------------------------------------------------------- running state

    def _pg_ctl_running(self, bins: ServerBinaries) -> bool:
        # pg_ctl status: 0 running, 3 not running, 4 no accessible data directory.
        proc = _run(self._as_server([bins.tool("pg_ctl"), "status", "-D", str(self.data_dir)]), check=False)
        return proc.returncode == 0

    def _is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        try:
            bins = self._binaries(require_postgis=False)
            self._as_server(["true"])  # raises if the account or setpriv/runuser is missing
        except (DatabaseUnavailable, KeyError):
            # Cannot ask pg_ctl; fall back to the pid file and a signal-0 probe.
            pid = self._postmaster_pid()
            return pid is not None and _pid_alive(pid)
        return self._pg_ctl_running(bins)

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        except OSError:
            return None
        return int(first) if first.isdigit() else None

    def _log_tail(self) -> str:
        try:
            lines = (self.data_dir / LOG_NAME).read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def _pg_ctl_start(self, bins: ServerBinaries) -> None:
        log.info("embedded PostgreSQL: starting the server for %s", self.data_dir)
        cmd = [
            bins.tool("pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / LOG_NAME),
            "-w",
            "-t",
            str(PG_CTL_WAIT),
            "-s",
        ]
        proc = _run(self._as_server(cmd), check=False, timeout=PG_CTL_WAIT + 60)
        if proc.returncode != 0:
            raise DatabaseUnavailable(
                f"PostgreSQL did not start for {self.data_dir}: {(proc.stderr or proc.stdout).strip()}\n"
                f"last lines of {self.data_dir / LOG_NAME}:\n{self._log_tail()}",
                data_dir=str(self.data_dir),
            )

    def _stop_unlocked(self) -> None:
        if not self._is_running():
            return
        bins = self._binaries(require_postgis=False)
        cmd = [bins.tool("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-s"]
        proc = _run(self._as_server([*cmd, "-t", str(PG_CTL_WAIT)]), check=False, timeout=PG_CTL_WAIT + 60)
        if proc.returncode != 0 and self._pg_ctl_running(bins):
            raise DatabaseUnavailable(
                f"PostgreSQL did not stop for {self.data_dir}: {(proc.stderr or proc.stdout).strip()}\n"
                f"last lines of {self.data_dir / LOG_NAME}:\n{self._log_tail()}",
                data_dir=str(self.data_dir),
            )

    def _ensure_database(self) -> None:
        """Create the database and the PostGIS extension when missing (cheap when both exist)."""
        try:
            with psycopg.connect(self.conninfo("postgres"), autocommit=True, connect_timeout=30) as conn:
                query = "SELECT 1 FROM pg_database WHERE datname = %s"
                if conn.execute(query, (self.db_name,)).fetchone() is None:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.db_name)))
                # The service's role; its grants come with the migrations (alembic/versions/0011_app_role).
                # Only the server account reaches the socket, so trust is still the only login needed.
                role = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (APP_ROLE,))
                found = role.fetchone()
                if found is None:
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(APP_ROLE)))
                elif not found[0]:
                    conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(APP_ROLE)))
            with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=30) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"could not prepare database {self.db_name!r} with PostGIS in the embedded cluster: {exc}\n"
                f"last lines of {self.data_dir / LOG_NAME}:\n{self._log_tail()}",
                data_dir=str(self.data_dir),
            ) from exc


# ------------------------------------------------------------------------------------------- helpers


def ensure_database_url(settings: Settings) -> str:
    """``settings.database.url`` when set, else start the embedded cluster and return its URL."""
    if settings.database.url:
        return settings.database.url
    cluster = EmbeddedCluster.from_settings(settings)
    return cluster.start()


def ensure_service_url(settings: Settings) -> str:
    """The URL the service connects with: ``settings.database.url`` when set, else the embedded
    cluster's unprivileged role (started on demand; migrate with :func:`ensure_database_url` first)."""
    if settings.database.url:
        return settings.database.url
    cluster = EmbeddedCluster.from_settings(settings)
    cluster.start()
    return cluster.app_url()


def find_binaries(cluster_major: str | None = None, debian_root: Path = DEBIAN_PG_ROOT) -> ServerBinaries:
    """Locate the PostgreSQL server binaries (``pg_config --bindir``, else newest Debian install)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = _pg_config(pg_config, "--bindir")
        if bindir is not None and (bindir / "pg_ctl").is_file():
            candidates.append(bindir)
    debian = [p for p in debian_root.glob("*/bin") if (p / "pg_ctl").is_file()]
    candidates.extend(sorted(debian, key=lambda p: _version_key(p.parent.name), reverse=True))
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        candidates.append(Path(pg_ctl).resolve().parent)
    candidates = list(dict.fromkeys(c.resolve() for c in candidates))
    sudo = "" if os.geteuid() == 0 else "sudo "
    if not candidates:
        raise DatabaseUnavailable(
            "PostgreSQL server binaries not found (looked at `pg_config --bindir`, "
            f"{debian_root}/*/bin and PATH). Install them with:\n    {sudo}{_INSTALL_POSTGRES}\n"
            "(or run `make setup`), or set SMARTCODE_DATABASE_URL to an existing PostGIS database."
        )
    found: list[ServerBinaries] = []
    for bindir in candidates:
        major = _server_major(bindir)
        if major is None:
            continue
        bins = ServerBinaries(bindir=bindir, major=major, sharedir=_sharedir(bindir, major, pg_config))
        if cluster_major is None or major == cluster_major:
            return bins
        found.append(bins)
    if cluster_major is not None and found:
        have = ", ".join(sorted({b.major for b in found}))
        raise DatabaseUnavailable(
            f"the embedded cluster was created by PostgreSQL {cluster_major} but only {have} is installed; "
            f"install the matching server with:\n    {sudo}apt-get install postgresql-{cluster_major} "
            f"postgresql-{cluster_major}-postgis-3\n(or dump and re-create the cluster with the new version)"
        )
    raise DatabaseUnavailable(
        f"no working PostgreSQL server found in {', '.join(map(str, candidates))}; reinstall with:\n"
        f"    {sudo}{_INSTALL_POSTGRES}"
    )


def check_postgis(bins: ServerBinaries) -> None:
    """Raise DatabaseUnavailable naming the package to install when PostGIS is missing for ``bins``."""
    if (bins.sharedir / "extension" / "postgis.control").is_file():
        return
    sudo = "" if os.geteuid() == 0 else "sudo "
    raise DatabaseUnavailable(
        f"PostGIS is not installed for PostgreSQL {bins.major} "
        f"({bins.sharedir / 'extension' / 'postgis.control'} is missing). Install it with:\n"
        f"    {sudo}apt-get install postgresql-{bins.major}-postgis-3",
        postgres_bindir=str(bins.bindir),
    )


def _socket_dir_for(data_dir: Path, port: int = PORT) -> Path:
    """``<data_dir>/run`` (private by virtue of the 0700 data dir), or /tmp/smartcode-<hash> if too long."""
    preferred = data_dir / "run"
    socket_path = os.fsencode(preferred / f".s.PGSQL.{port}")
    # A comma or double quote would split/garble the unix_socket_directories list.
    if len(socket_path) <= MAX_SOCKET_PATH and not {",", '"'} & set(str(preferred)):
        return preferred
    return SOCKET_FALLBACK_ROOT / f"smartcode-{_short_hash(data_dir, 16)}"


def _short_hash(path: Path, length: int) -> str:
    return hashlib.sha256(os.fsencode(path)).hexdigest()[:length]


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name)) or (0,)


def _shared_buffers_mb() -> int:
    """An eighth of the machine's memory in MB, at least 128 MB and at most 4 GB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 512
    return max(128, min(4096, total // 8 // (1 << 20)))


def _wal_compression(bins: ServerBinaries) -> str:
    """lz4 when the server supports it (PostgreSQL 15+ built with lz4), else the built-in pglz."""
    own = bins.bindir / "pg_config"
    if _version_key(bins.major) < (15,) or not own.is_file():
        return "on"
    proc = _run([str(own), "--configure"], check=False)
    return "lz4" if proc.returncode == 0 and "--with-lz4" in proc.stdout else "on"


def _pg_config(pg_config: str, flag: str) -> Path | None:
    proc = _run([pg_config, flag], check=False)
    out = proc.stdout.strip()
    return Path(out) if proc.returncode == 0 and out else None


def _server_major(bindir: Path) -> str | None:
    """Major version of the server in ``bindir`` ("15"; "9.6" for pre-10 releases), from ``postgres -V``."""
    postgres = bindir / "postgres"
    if not postgres.is_file():
        return None
    try:
        proc = _run([str(postgres), "-V"], check=False)
    except OSError:
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", proc.stdout)
    if proc.returncode != 0 or match is None:
        return None
    first, second = match.group(1), match.group(2)
    return first if int(first) >= 10 or second is None else f"{first}.{second}"


def _sharedir(bindir: Path, major: str, path_pg_config: str | None) -> Path:
    """The server's share dir: its own pg_config, else PATH's pg_config if it is for the same bindir."""
    own = bindir / "pg_config"
    if own.is_file():
        found = _pg_config(str(own), "--sharedir")
        if found is not None:
            return found
    if path_pg_config and _pg_config(path_pg_config, "--bindir") == bindir:
        found = _pg_config(path_pg_config, "--sharedir")
        if found is not None:
            return found
    return Path("/usr/share/postgresql") / major


def _create_system_user(name: str) -> pwd.struct_passwd:
    """Create the unprivileged system account that runs the server (root only)."""
    useradd = shutil.which("useradd") or _existing("/usr/sbin/useradd", "/sbin/useradd")
    if useradd is None:
        raise DatabaseUnavailable(
            f"running as root and the account {name!r} does not exist, and useradd is not available to "
            f"create it; create a system user {name!r} or run smartcode as an ordinary user"
        )
    shell = _existing("/usr/sbin/nologin", "/sbin/nologin") or "/bin/false"
    cmd = [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", shell]
    proc = _run([*cmd, "--user-group", name], check=False)
    try:
        # Exit 9 ("already exists") means another process won the race, which is fine.
        return pwd.getpwnam(name)
    except KeyError:
        raise DatabaseUnavailable(
            f"could not create the system account {name!r} for PostgreSQL: {proc.stderr.strip()}"
        ) from None


def _existing(*paths: str) -> str | None:
    return next((p for p in paths if os.access(p, os.X_OK)), None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _run(cmd: Sequence[str], *, check: bool, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool with a predictable environment (no PG* variables, C messages) from /."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin")
    try:
        # cwd=/ because the server account may not be able to enter the caller's directory (e.g. /root).
        return subprocess.run(
            list(cmd), capture_output=True, text=True, env=env, cwd="/", timeout=timeout, check=check
        )
    except subprocess.TimeoutExpired as exc:
        command = " ".join(cmd)
        raise DatabaseUnavailable(f"{Path(cmd[0]).name} timed out after {timeout:.0f}s: {command}") from exc


def _archive_conf(wal_dir: Path, timeout_s: int) -> str:
    """The archive settings: each finished WAL segment gzipped into ``wal_dir``, never overwritten."""
    target = shlex.quote(str(wal_dir / "%f.gz"))
    partial = shlex.quote(str(wal_dir / "%f.gz.partial"))
    # Written under another name and renamed, so a crash never leaves a truncated segment that
    # looks complete; an existing segment is never overwritten (test ! -f).
    command = f"test ! -f {target} && gzip -c %p > {partial} && mv {partial} {target}"
    return f"""
# WAL archive for point-in-time restore (registry/backup.py, docs/operations.md). A segment is
# archived when full or after archive_timeout on a quiet server, which bounds what a lost disk costs.
archive_mode = on
archive_command = '{command.replace("'", "''")}'
archive_timeout = {int(timeout_s)}
"""


def _write_file(path: Path, text: str, uid: int, gid: int, chown: bool) -> None:
    """Atomically (re)write a file inside the data dir, owned by the server account, mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    if chown:
        os.chown(tmp, uid, gid)
    tmp.replace(path)
