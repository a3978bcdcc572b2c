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


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(errors.SmartcodeError)
    async def _domain(_: Request, exc: errors.SmartcodeError) -> OrjsonResponse:
        return OrjsonResponse(
            error_body(type(exc).__name__, exc.message, exc.details),
            status_code=status_for(exc),
            headers=error_headers(exc) or None,
        )

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
