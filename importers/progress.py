"""A progress line on the terminal for long imports: rows read (of the total when known), phase, rate."""

from __future__ import annotations

import sys
import time
import unicodedata
from typing import TextIO

from registry.messages import all_keys, text


class TerminalProgress:
    """Callable progress reporter; draws on ``stream`` (stderr) only when it is a terminal."""

    def __init__(self, stream: TextIO | None = None, min_interval: float = 0.2, lang: str = "zh") -> None:
        """Draw on ``stream`` (default stderr) in ``lang`` (the CLI's ``--lang``)."""
        self.stream = stream or sys.stderr
        self.lang = lang
        self.enabled = self.stream.isatty()
        self.min_interval = min_interval
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._width = 0

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        """Redraw the line (at most every ``min_interval`` seconds unless the phase changes)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if phase == "reading" and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        if total:
            filled = int(30 * min(done, total) / total)
            rows = text(self.lang, "progress.rows_of", done=done, total=total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {rows}"
        else:
            bar = text(self.lang, "progress.rows", done=done)
        shown = text(self.lang, f"progress.{phase}") if f"progress.{phase}" in _PHASES else phase
        shown += " " * max(0, 8 - _columns(shown))
        line = f"{shown} {bar}  {text(self.lang, 'progress.rate', rate=rate, elapsed=elapsed)}"
        self.stream.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self.stream.flush()

    def close(self) -> None:
        """End the line so later output starts on a fresh one."""
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()


_PHASES = frozenset(key for key in all_keys() if key.startswith("progress."))


def _columns(label: str) -> int:
    # A Chinese phase name takes two terminal columns a character.
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in label)
