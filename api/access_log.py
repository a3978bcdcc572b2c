"""Keeping complaint locations out of the access log.

uvicorn's access log prints each request's path with its query string; for ``/resolve`` the query
holds the coordinates of a citizen's complaint (and the code scanned). The filter below cuts the
query string of those requests before the line is written.
"""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"
_PRIVATE_PATHS = ("/api/v1/resolve", "/api/v1/resolutions")


class StripResolveQuery(logging.Filter):
    """Removes the query string of ``/resolve`` (and ``/resolutions``) paths from access log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's path argument; never drops a record."""
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_strip(a) if isinstance(a, str) else a for a in args)
        if isinstance(record.msg, str):
            record.msg = _strip(record.msg)
        return True


def _strip(text: str) -> str:
    path, sep, _ = text.partition("?")
    if sep and path.rstrip("/").endswith(_PRIVATE_PATHS):
        return path + "?…"
    for private in _PRIVATE_PATHS:
        # A whole line that contains such a path with its query ("GET /api/v1/resolve?lon=... HTTP/1.1").
        start = text.find(private + "?")
        if start >= 0:
            end = text.find(" ", start)
            return text[: start + len(private)] + "?…" + (text[end:] if end >= 0 else "")
    return text


def install() -> None:
    """Attach the filter to uvicorn's access logger once (the filter survives uvicorn's logging setup)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, StripResolveQuery) for f in logger.filters):
        logger.addFilter(StripResolveQuery())
