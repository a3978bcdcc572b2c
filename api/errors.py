"""The one place where domain errors become HTTP responses: ``{"error": {type, message, details}}``."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.responses import OrjsonResponse
from common import errors

log = logging.getLogger("smartcode.api")

# Most specific first: the first matching class decides the status.
STATUS_BY_ERROR: list[tuple[type[errors.SmartcodeError], int]] = [
    (errors.PreconditionFailed, 412),
    (errors.StaleVersion, 409),
    (errors.SerialExhausted, 409),
    (errors.Conflict, 409),
    (errors.NotFound, 404),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.InvalidInput, 400),
    (errors.RateLimited, 429),
    (errors.DatabaseUnavailable, 503),
]


def status_for(exc: errors.SmartcodeError) -> int:
    """The HTTP status for a domain error."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


def error_headers(exc: errors.SmartcodeError) -> dict[str, str]:
    """Headers an error answer carries: the auth scheme on 401, the wait on 429."""
    if isinstance(exc, errors.Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, errors.RateLimited):
        return {"Retry-After": str(exc.details.get("retry_after", 60))}
    return {}


def error_body(kind: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON error envelope every endpoint uses."""
    return {"error": {"type": kind, "message": message, "details": details or {}}}


# What callers read while the database is away; the cause (socket path, host, server message) is only
# logged: it tells an anonymous caller about the server's internals and helps them nothing.
UNAVAILABLE_MESSAGE = "数据库暂时不可用，请稍后重试 (the database is unavailable; try again in a few seconds)"
RETRY_AFTER_S = 5


def error_response(exc: errors.SmartcodeError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers for a domain error (the exception handler and the fast path share it)."""
    status = status_for(exc)
    if isinstance(exc, errors.DatabaseUnavailable):
        log.warning("database unavailable: %s", exc.message)
        return (
            status,
            error_body("DatabaseUnavailable", UNAVAILABLE_MESSAGE),
            {"Retry-After": str(RETRY_AFTER_S)},
        )
    return status, error_body(type(exc).__name__, exc.message, exc.details), error_headers(exc)


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(errors.SmartcodeError)
    async def _domain(_: Request, exc: errors.SmartcodeError) -> OrjsonResponse:
        status, body, headers = error_response(exc)
        return OrjsonResponse(body, status_code=status, headers=headers or None)

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    @app.exception_handler(psycopg.OperationalError)
    async def _database_down(request: Request, exc: Exception) -> OrjsonResponse:
        # Raised outside a transaction() (which already turns it into DatabaseUnavailable): a lost
        # connection, a refused one, a pool that had none to give.
        return await _domain(request, errors.DatabaseUnavailable(f"{type(exc).__name__}: {exc}"))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> OrjsonResponse:
        problems = [
            {"field": ".".join(str(part) for part in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return OrjsonResponse(
            error_body("InvalidInput", f"invalid request: {summary}", {"problems": problems}), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        return OrjsonResponse(
            error_body("HTTPError", str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(sqlalchemy.exc.DataError)
    @app.exception_handler(psycopg.DataError)
    async def _unstorable(_: Request, exc: Exception) -> OrjsonResponse:
        # Values the database cannot hold (ids beyond bigint, NUL in text...) are the caller's input.
        cause = getattr(exc, "orig", None) or exc
        first_line = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        return OrjsonResponse(
            error_body("InvalidInput", f"a value in the request cannot be stored: {first_line}"),
            status_code=400,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> OrjsonResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return OrjsonResponse(
            error_body("InternalError", "internal error: the failure was logged on the server"),
            status_code=500,
        )
