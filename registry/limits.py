"""Upper bounds on what one asset may carry, the same for the API, the CLI and the importers.

A registry row is read on every lookup and copied into its history at every change: a 50 MB
attribute bag or a 200,000-point geometry would be stored (and then served) as readily as a lamp.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_ATTRIBUTES_BYTES = 64 * 1024  # the attribute bag, as compact JSON
MAX_VERTICES = 10_000  # coordinates of one asset's geometry (a kilometre-long cable: a few hundred)
MAX_NOTE_CHARS = 2000  # notes and reasons
MAX_TEXT_CHARS = 200  # names, sources, addresses' parts, identifiers
MAX_LIST_ITEMS = 50  # aliases


def attributes_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (non-JSON values as their text)."""
    return len(orjson.dumps(value, default=str))


def check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """``value`` when its JSON fits ``MAX_ATTRIBUTES_BYTES``, else ValueError saying how big it is."""
    if value is not None:
        try:
            size = attributes_size(value)
        except orjson.JSONEncodeError as exc:
            # e.g. an integer beyond 64 bits: no client of the registry could read it back as a number.
            raise ValueError(
                f"attributes hold a value JSON cannot carry here ({exc}) (属性值无法存储)"
            ) from None
        if size > MAX_ATTRIBUTES_BYTES:
            raise ValueError(
                f"attributes are {size:,} bytes as JSON; at most {MAX_ATTRIBUTES_BYTES // 1024} KiB "
                "(属性过大)"
            )
    return value
