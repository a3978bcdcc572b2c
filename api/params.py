"""Typed request parameters shared by the routes, so every route bounds its input the same way."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Path, Query

from common.errors import InvalidInput

# Row ids are PostgreSQL bigint: a larger number can name no row, and is refused before any query.
BIGINT_MAX = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="row id (1 to 2^63-1)")]
UnitFilter = Annotated[
    int | None,
    Query(ge=1, le=BIGINT_MAX, description="unit id as owner, maintainer or supervisor"),
]


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``min_lon,min_lat,max_lon,max_lat`` as four finite numbers, or ``InvalidInput`` naming the problem."""
    if not text:
        return None
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError as exc:
        raise InvalidInput(f"bbox {text!r} is not four numbers", field="bbox") from exc
    if len(parts) != 4:
        raise InvalidInput(f"bbox {text!r} must be min_lon,min_lat,max_lon,max_lat", field="bbox")
    if not all(math.isfinite(p) for p in parts):
        # float() accepts nan and inf, which no envelope can be built from.
        raise InvalidInput(f"bbox {text!r}: every coordinate must be a finite number", field="bbox")
    return parts[0], parts[1], parts[2], parts[3]


def optional_number(text: str, name: str, message: str) -> float | None:
    """A form field as a finite number, None when blank; ``InvalidInput(message)`` for anything else."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidInput(message, field=name)
    return value
