"""Serial allocation per county and class: no duplicates even under concurrent registration."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from common.errors import SerialExhausted
from registry.codes import SERIAL_MAX

# The upsert takes a row lock on (county, class) that is held to the end of the transaction, so two
# concurrent registrations of the same class queue here instead of reading the same counter.
_ALLOCATE = text(
    """
    INSERT INTO code_serials AS s (county_code, class_code, next_serial)
    VALUES (:county, :class_code, 1 + :n)
    ON CONFLICT (county_code, class_code)
    DO UPDATE SET next_serial = s.next_serial + :n
    RETURNING next_serial
    """
)
_RESERVE = text(
    """
    INSERT INTO code_serials AS s (county_code, class_code, next_serial)
    VALUES (:county, :class_code, :serial + 1)
    ON CONFLICT (county_code, class_code)
    DO UPDATE SET next_serial = greatest(s.next_serial, :serial + 1)
    """
)


def allocate_serials(session: Session, county: str, class_code: str, count: int = 1) -> range:
    """Reserve ``count`` consecutive fresh serials; ``SerialExhausted`` when the range would overflow."""
    if count < 1:
        raise ValueError("count must be positive")
    after = session.execute(_ALLOCATE, {"county": county, "class_code": class_code, "n": count}).scalar_one()
    first = after - count
    if after - 1 > SERIAL_MAX:
        free = max(0, SERIAL_MAX + 1 - first)
        raise SerialExhausted(
            f"顺序码已满: county {county} class {class_code} has {free} serials left, {count} requested",
            county=county,
            class_code=class_code,
        )
    return range(first, after)


def reserve_serial(session: Session, county: str, class_code: str, serial: int) -> None:
    """Record that an explicit serial (from an inventory) is taken, so allocation never reuses it."""
    session.execute(_RESERVE, {"county": county, "class_code": class_code, "serial": serial})
