"""JSON values for async psycopg statements, encoded with orjson (the hot write paths send several)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from psycopg.types.json import Jsonb


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # orjson refuses integers beyond 64 bits, which the standard library writes; anything neither
        # can encode (a Decimal, a set) raises here as it did before. Unlike json, orjson writes NaN as
        # null and datetimes as ISO 8601; the callers pass neither.
        return json.dumps(value, ensure_ascii=False).encode()


def jsonb(value: Any) -> Jsonb:
    """``value`` as a ``jsonb`` parameter, encoded by orjson (about ten times faster than ``json``)."""
    return Jsonb(value, dumps=_dumps)
