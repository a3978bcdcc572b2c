"""The staging writer: COPY of validated chunks on a background thread, overlapping the parsing.

Reading, mapping and validating a chunk is Python work; writing it to the staging table is the
database's. Handing each validated chunk to a thread that runs the COPY lets the server ingest
chunk n while Python parses chunk n+1 (the two run on different cores). The queue is bounded, so
at most ``depth`` chunks wait in memory and a slow server slows the reader down instead of
letting memory grow.

The thread uses the import's own psycopg connection (its transaction, so a failed import leaves
nothing behind). psycopg connections are thread-safe: a statement the main thread sends while a
COPY is running waits for it.

The writer needs the GIL for a moment each time the socket has taken the data it can: a few dozen
times per chunk. With CPython's default switch interval (5 ms) it often waited that long for the
parsing thread to let go, while the server sat idle with nothing left to read: a million points
were COPYed in 9.1 s where the server alone needs 6.8 s. While a writer runs, the interpreter hands
the GIL over every 0.1 ms instead (``sys.setswitchinterval``; it only matters when a thread asks).
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from importers.merge import copy_chunk

_DONE = None
_SWITCH_INTERVAL_S = 0.0001


class _PromptSwitching:
    """The short switch interval while any writer runs (imports may overlap in the API process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writers = 0
        self._saved = sys.getswitchinterval()

    def start(self) -> None:
        with self._lock:
            if self._writers == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, _SWITCH_INTERVAL_S))
            self._writers += 1

    def stop(self) -> None:
        with self._lock:
            self._writers -= 1
            if self._writers == 0:
                sys.setswitchinterval(self._saved)


_switching = _PromptSwitching()


class StageWriter:
    """Writes chunks in order on one background thread: validated chunks to ``import_stage``
    (``copy_chunk``), or whatever ``write`` writes (the direct load's finished asset rows)."""

    def __init__(
        self, connection: Any, depth: int = 2, write: Callable[[Any, Any], None] | None = None
    ) -> None:
        self._connection = connection
        self._write = write if write is not None else copy_chunk
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._work, name="import-stage-writer", daemon=True)
        _switching.start()
        self._prompt = True
        self._thread.start()

    def put(self, chunk: Any) -> None:
        """Queue a chunk (waits while ``depth`` chunks are pending); raises the writer's error if any."""
        self._raise_error()
        self._queue.put(chunk)

    @property
    def failed(self) -> bool:
        """True once a COPY has failed (the error is raised by the next ``put`` or ``finish``)."""
        return self._error is not None

    def finish(self) -> None:
        """Wait until every queued chunk is written; raises the writer's error if any."""
        self._stop()
        self._raise_error()

    def __enter__(self) -> StageWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A writer failure that happened before the caller's is the cause of the caller's error
        # ("current transaction is aborted"), so that one is reported; one that happens while
        # draining after the caller failed is a consequence, and the caller's error stands.
        failed_first = self._error is not None
        if kind is not None:
            self._abandoned = True  # the transaction is going away: write nothing more
        # Never leave the thread using the connection once the caller goes on (to roll back, say).
        self._stop()
        if kind is not None and failed_first:
            self._raise_error()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        if self._prompt:
            self._prompt = False
            _switching.stop()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is _DONE:
                return
            if self._error is not None or self._abandoned:
                continue  # after a failure, drain without writing until told to stop
            try:
                self._write(self._connection, chunk)
            except BaseException as exc:  # handed to the main thread, which re-raises it
                self._error = exc
