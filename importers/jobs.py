"""Import jobs of the API server: an uploaded file imported in a background thread, with progress.

Jobs run one at a time on a single worker thread (an import keeps a database core busy; two at
once would only slow each other down) and are kept in memory: the durable record of an import is
its ``import_batches`` row, which outlives the server process.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from common.errors import SmartcodeError
from common.settings import Settings
from gis.area import ServiceArea
from importers.pipeline import ImportOptions, ImportRefused, run_import
from registry.db import Actor

# Finished jobs kept for polling; older ones are forgotten (their batches stay in the database).
_KEEP_FINISHED = 200


@dataclass
class ImportJob:
    """One queued, running or finished import."""

    id: str
    file: str
    actor: Actor
    options: ImportOptions
    folder: Path  # the upload's private folder, removed when the job ends
    status: str = "queued"  # queued | running | committed | dry_run | refused | failed
    phase: str = "queued"
    rows: int = 0
    total: int | None = None
    batch_id: int | None = None
    report: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None

    def view(self) -> dict[str, Any]:
        """The JSON form of the job, as GET /imports/{id} returns it."""
        done = self.status not in ("queued", "running")
        return {
            "id": self.id,
            "status": self.status,
            "file": self.file,
            "batch_id": self.batch_id,
            "progress": {
                "phase": self.phase,
                "rows": self.rows,
                "total": self.total,
                "fraction": round(self.rows / self.total, 4) if self.total else None,
            },
            "submitted_at": _iso(self.submitted_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "done": done,
            "report": self.report,
            "error": self.error,
        }


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat()


class ImportJobs:
    """Queue of import jobs on one worker thread."""

    def __init__(self, engine: Engine, settings: Settings, area: ServiceArea) -> None:
        self.engine = engine
        self.settings = settings
        self.area = area
        self._jobs: OrderedDict[str, ImportJob] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smartcode-import")

    @property
    def upload_root(self) -> Path:
        """Where uploads wait for their job (under the deployment's var directory)."""
        return self.settings.embedded.var_dir / "uploads"

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and a private folder for its upload."""
        job_id = uuid.uuid4().hex
        folder = self.upload_root / job_id
        folder.mkdir(parents=True, mode=0o700)
        return job_id, folder

    def submit(
        self, job_id: str, folder: Path, path: Path, file_name: str, actor: Actor, options: ImportOptions
    ) -> ImportJob:
        """Queue the import of ``path`` (inside ``folder``); returns the job at once."""
        options.file_name = file_name
        job = ImportJob(id=job_id, file=file_name, actor=actor, options=options, folder=folder)
        with self._lock:
            self._jobs[job_id] = job
            self._forget_old()
        self._pool.submit(self._run, job, path)
        return job

    def get(self, job_id: str) -> ImportJob | None:
        """The job with this id, if this server still remembers it."""
        with self._lock:
            return self._jobs.get(job_id)

    def find_by_batch(self, batch_id: int) -> ImportJob | None:
        """The job that made this batch, if remembered."""
        with self._lock:
            return next((j for j in self._jobs.values() if j.batch_id == batch_id), None)

    def shutdown(self) -> None:
        """Stop taking jobs and wait for the running one."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.finished_at is not None]
        for key in finished[: max(0, len(finished) - _KEEP_FINISHED)]:
            del self._jobs[key]

    def _run(self, job: ImportJob, path: Path) -> None:
        job.status = job.phase = "running"
        job.started_at = time.time()

        def progress(phase: str, rows: int, total: int | None) -> None:
            job.phase, job.rows, job.total = phase, rows, total

        try:
            report = run_import(
                self.engine, path, job.actor, self.settings, job.options, area=self.area, progress=progress
            )
            job.report = report.as_dict()
            job.batch_id = report.batch_id
            job.status = report.status
            job.phase = "done"
        except ImportRefused as exc:
            job.status, job.phase = "refused", "done"
            job.report = exc.report
            job.batch_id = (exc.report or {}).get("batch_id")
            job.error = {"type": type(exc).__name__, "message": exc.message, "details": exc.details}
        except SmartcodeError as exc:
            job.status, job.phase = "failed", "failed"
            job.error = {"type": type(exc).__name__, "message": exc.message, "details": exc.details}
        except Exception as exc:  # a job must end with a status, whatever went wrong
            job.status, job.phase = "failed", "failed"
            job.error = {"type": "InternalError", "message": f"{type(exc).__name__}: {exc}"}
        finally:
            job.finished_at = time.time()
            shutil.rmtree(job.folder, ignore_errors=True)
