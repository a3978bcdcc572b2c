"""The error answers in the OpenAPI document, derived once for every operation rather than per route.

Each operation lists the 4xx (and 503) answers it can give, all in the one envelope of
``api/errors.py``: 400 and 503 everywhere, 422 where there are parameters or a body, 404 where the
path names something, 401 wherever a token is read, 403, 404 and 409 for writes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

# Reads that never look at a token: public reference data and the health check.
TOKENLESS_READS = frozenset(
    {
        "/api/v1/health",
        "/api/v1/classes",
        "/api/v1/classes/{code}",
        "/api/v1/categories",
        "/api/v1/categories/{name}",
    }
)
_WRITES = {"post", "put", "patch", "delete"}

DESCRIPTIONS = {
    400: "InvalidInput: a value is malformed or out of range (the message says which and where)",
    401: "Unauthorized: a bearer token is needed, or the one sent is unknown or revoked",
    403: "Forbidden: the token is valid but may not do this",
    404: "NotFound: nothing with this code, id or name",
    409: "Conflict: the request collides with the current state (stale version, duplicate, no serial left)",
    422: "InvalidInput: the request does not have the declared shape (the problems are listed)",
    503: "DatabaseUnavailable: the database cannot be reached; retry after the Retry-After seconds",
}


class ErrorDetail(BaseModel):
    """What went wrong: the error class, a message for people, and machine-readable details."""

    type: str = Field(examples=["InvalidInput"])
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorEnvelope(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


def statuses_for(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses an operation can answer, from its path, method and declared inputs."""
    statuses = {400, 503}
    parameters = operation.get("parameters", [])
    if parameters or "requestBody" in operation:
        statuses.add(422)
    if any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    if method in _WRITES:
        # A write may name other records (an owner unit, a zone, a class) that do not exist: 404.
        statuses |= {401, 403, 404, 409}
    elif path not in TOKENLESS_READS:
        statuses.add(401)
    return sorted(statuses)


def add_error_responses(document: dict[str, Any]) -> None:
    """Add the envelope schema and every operation's error answers to an OpenAPI document, in place."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(envelope.pop("$defs", {}))
    schemas["ErrorEnvelope"] = envelope
    # FastAPI's own 422 model describes a body this API never sends.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _WRITES | {"get"}:
                continue
            responses = operation.setdefault("responses", {})
            if method == "put":
                # PUT creates what does not exist yet (201) and replaces what does (200).
                responses.setdefault("201", {"description": "Created"})
            for status in statuses_for(path, method, operation):
                responses[str(status)] = {"description": DESCRIPTIONS[status], "content": reference}
            # Answers a route declares itself (413 of an upload, 429 of a rate limit) have the same body.
            for status, answer in responses.items():
                if status.isdigit() and int(status) >= 400:
                    answer.setdefault("content", reference)


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the document with the error answers added (built once)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            add_error_responses(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
