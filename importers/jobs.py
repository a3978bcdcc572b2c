"""Import jobs of the API server: an uploaded file imported in the background, with progress.

A job is a row of ``import_jobs`` (migration 0009), so a queued upload and a finished job's report
survive a restart of the server. The server's worker (:class:`registry.work_queue.TableWorker`)
runs them one at a time (an import keeps a database core busy; two at once would only slow each
other down). A job that was running when its server died is marked ``interrupted`` when a server
starts again, and its upload removed: its import was one transaction, so nothing of it was written.

The upload's place on the server (``upload_path``) is never shown to callers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from common.errors import SmartcodeError
from common.settings import Settings
from gis.area import ServiceArea
from importers.pipeline import ImportOptions, ImportRefused, run_import
from registry import tiles
from registry.db import Actor, transaction
from registry.messages import both
from registry.work_queue import TableWorker, WorkTable

log = logging.getLogger("smartcode.imports")

IMPORT_JOBS = WorkTable("import_jobs", lock_key=0x494A4F42)  # "IJOB"
# Progress is written at most this often (a chunk is read every few milliseconds on small files).
_PROGRESS_EVERY_S = 0.5
INTERRUPTED = (
    "导入在运行中被中断（服务器或数据库停止），未写入任何数据，请重新上传 / the import was cut off while "
    "running (its server or the database stopped): nothing of it was written; upload the file again"
)

_COLUMNS = (
    "id, state, outcome, file_name, actor_name, unit_id, progress, batch_id, report, error, "
    "created_at, started_at, finished_at"
)


def _json(value: Any) -> str:
    # An actor's role may be an enum: stored by its value.
    return json.dumps(value, ensure_ascii=False, default=lambda o: getattr(o, "value", str(o)))


def actor_to_json(actor: Actor) -> dict[str, Any]:
    """The actor as stored with its job."""
    data: dict[str, Any] = json.loads(_json(dataclasses.asdict(actor)))
    return data


def actor_from_json(data: dict[str, Any]) -> Actor:
    """The actor a job was queued by, as it was then."""
    names = {f.name for f in dataclasses.fields(Actor)}
    return Actor(**{k: v for k, v in data.items() if k in names})


def _options_from_json(data: dict[str, Any]) -> ImportOptions:
    names = {f.name for f in dataclasses.fields(ImportOptions)}
    return ImportOptions(**{k: v for k, v in data.items() if k in names})


def _error(exc: SmartcodeError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": exc.message, "details": exc.details}


def job_view(row: Any) -> dict[str, Any]:
    """The JSON form of a job, as GET /imports/{id} returns it (never the upload's path)."""
    progress = row.progress or {}
    rows, total = progress.get("rows", 0), progress.get("total")
    finished = row.state not in ("queued", "running")
    return {
        "id": row.id,
        "state": row.state,
        "status": row.outcome if finished and row.outcome else row.state,
        "file": row.file_name,
        "batch_id": row.batch_id,
        "progress": {
            "phase": progress.get("phase", row.state),
            "rows": rows,
            "total": total,
            "fraction": round(rows / total, 4) if total else None,
        },
        "submitted_at": row.created_at.isoformat() if row.created_at else None,
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "done": finished,
        "report": row.report,
        "error": row.error,
    }


class ImportJobs:
    """The import jobs of one server: queued in the table, run by its worker."""

    def __init__(self, engine: Engine, settings: Settings, area: ServiceArea) -> None:
        self.engine = engine
        self.settings = settings
        self.area = area
        self._compacted_at: float | None = None
        self.worker = TableWorker(
            engine,
            IMPORT_JOBS,
            self._run,
            on_interrupted=self._interrupted,
            on_idle=self._housekeeping,
            poll_seconds=settings.imports.worker_poll_seconds,
            name="smartcode-import",
        )

    @property
    def upload_root(self) -> Path:
        """Where uploads wait for their job (under the deployment's var directory)."""
        return self.settings.embedded.var_dir / "uploads"

    def start(self) -> None:
        """Start the worker (with the app)."""
        self.worker.start()

    def shutdown(self) -> None:
        """Stop taking jobs and wait for the running one (with the app)."""
        self.worker.stop()

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and a private folder for its upload."""
        job_id = uuid.uuid4().hex
        folder = self.upload_root / job_id
        folder.mkdir(parents=True, mode=0o700)
        return job_id, folder

    def submit(
        self, job_id: str, path: Path, file_name: str, actor: Actor, options: ImportOptions
    ) -> dict[str, Any]:
        """Queue the import of ``path`` (inside the job's folder); returns the job at once."""
        options.file_name = file_name
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "INSERT INTO import_jobs (id, file_name, upload_path, options, actor, actor_name, "
                    "unit_id, progress) VALUES (:id, :f, :p, CAST(:o AS jsonb), CAST(:a AS jsonb), :an, "
                    f":u, CAST(:g AS jsonb)) RETURNING {_COLUMNS}"
                ),
                {
                    "id": job_id,
                    "f": file_name,
                    "p": str(path),
                    "o": _json(dataclasses.asdict(options)),
                    "a": _json(actor_to_json(actor)),
                    "an": actor.name,
                    "u": actor.unit_id,
                    "g": _json({"phase": "queued", "rows": 0, "total": None}),
                },
            ).one()
        self.worker.wake()
        return job_view(row)

    def get(self, job_id: str) -> tuple[dict[str, Any], str, int | None] | None:
        """The job's view, the name of the actor who queued it and their unit; None if unknown."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(f"SELECT {_COLUMNS} FROM import_jobs WHERE id = :id"), {"id": job_id}
            ).first()
        return None if row is None else (job_view(row), row.actor_name, row.unit_id)

    def recent(self, actor: Actor, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """The newest jobs ``actor`` may see (an administrator: all), newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT {_COLUMNS} FROM import_jobs WHERE :all OR actor_name = :name "
                    "ORDER BY seq DESC LIMIT :limit OFFSET :offset"
                ),
                {"all": actor.admin, "name": actor.name, "limit": limit, "offset": offset},
            ).all()
        return [job_view(r) for r in rows]

    # -- run by the worker --------------------------------------------------------------------

    def _run(self, seq: int) -> None:
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT id, upload_path, options, actor FROM import_jobs WHERE seq = :s"), {"s": seq}
            ).one()
        path = Path(row.upload_path)
        try:
            self._import(row.id, path, actor_from_json(row.actor), _options_from_json(row.options))
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)

    def _import(self, job_id: str, path: Path, actor: Actor, options: ImportOptions) -> None:
        lock = threading.Lock()
        last = [0.0]

        def progress(phase: str, rows: int, total: int | None) -> None:
            now = time.monotonic()
            with lock:
                if now - last[0] < _PROGRESS_EVERY_S and phase == "reading":
                    return
                last[0] = now
            self._update(job_id, progress={"phase": phase, "rows": rows, "total": total})

        self._update(job_id, progress={"phase": "running", "rows": 0, "total": None})
        try:
            report = run_import(
                self.engine, path, actor, self.settings, options, area=self.area, progress=progress
            )
        except ImportRefused as exc:
            refused = exc.report or {}
            self._finish(
                job_id,
                "done",
                exc.status,  # refused (--strict) or rejected (every row)
                report=exc.report,
                batch_id=refused.get("batch_id"),
                error=_error(exc),
                rows=refused.get("counts", {}).get("read", 0),
            )
        except SmartcodeError as exc:
            self._finish(job_id, "failed", "failed", error=_error(exc))
        except Exception:  # a job must end with a status, whatever went wrong; its cause stays in the log
            log.exception("import job %s failed", job_id)
            internal = {
                "type": "InternalError",
                "message": str(both("job.internal")),
            }
            self._finish(job_id, "failed", "failed", error=internal)
        else:
            outcome, done = report.status, report.as_dict()
            self._finish(job_id, "done", outcome, report=done, batch_id=report.batch_id, rows=report.read)

    def _update(self, job_id: str, *, progress: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text("UPDATE import_jobs SET progress = CAST(:g AS jsonb) WHERE id = :id"),
                {"g": _json(progress), "id": job_id},
            )

    def _finish(
        self,
        job_id: str,
        state: str,
        outcome: str,
        *,
        report: dict[str, Any] | None = None,
        batch_id: int | None = None,
        error: dict[str, Any] | None = None,
        rows: int | None = None,
    ) -> None:
        progress: dict[str, Any] = {"phase": "done" if state == "done" else "failed"}
        if rows is not None:
            progress["rows"] = rows
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE import_jobs SET state = :st, outcome = :o, finished_at = now(), "
                    "report = CAST(:r AS jsonb), batch_id = :b, error = CAST(:e AS jsonb), "
                    "progress = progress || CAST(:g AS jsonb) WHERE id = :id"
                ),
                {
                    "st": state,
                    "o": outcome,
                    "r": None if report is None else _json(report),
                    "b": batch_id,
                    "e": None if error is None else _json(error),
                    "g": _json(progress),
                    "id": job_id,
                },
            )

    def _housekeeping(self) -> None:
        """Between jobs, every ``tiles.compact_every_s``: fold old rows of the tiles' change log."""
        every = self.settings.tiles.compact_every_s
        now = time.monotonic()
        if every <= 0 or (self._compacted_at is not None and now - self._compacted_at < every):
            return
        self._compacted_at = now
        try:
            with transaction(self.engine) as session:
                removed, written = tiles.compact_changes(session, self.settings.tiles.compact_after_s)
        except SQLAlchemyError as exc:  # the database may be down: the next period tries again
            log.warning("tile_changes not compacted: %s", exc)
            return
        if removed:
            log.info("tile_changes: %s old rows folded into %s", removed, written)

    def _interrupted(self, conn: Connection, seq: int) -> None:
        """A job whose server died: its upload is removed and the job says what happened."""
        row = conn.execute(text("SELECT upload_path FROM import_jobs WHERE seq = :s"), {"s": seq}).one()
        shutil.rmtree(Path(row.upload_path).parent, ignore_errors=True)
        conn.execute(
            text(
                "UPDATE import_jobs SET outcome = 'interrupted', error = CAST(:e AS jsonb), "
                "progress = progress || CAST(:g AS jsonb) WHERE seq = :s"
            ),
            {
                "e": _json({"type": "Interrupted", "message": INTERRUPTED}),
                "g": _json({"phase": "interrupted"}),
                "s": seq,
            },
        )
