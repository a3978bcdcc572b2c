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


# Inside an import batch (its id is in the transaction's change context), the first change of a class's
# counter records the value it had, so rolling the batch back can put it back (importers.batches).
_REMEMBER = text(
    """
    INSERT INTO import_batch_serials (batch_id, county_code, class_code, next_serial_before)
    SELECT CAST(b AS bigint), CAST(:county AS varchar), CAST(:class_code AS varchar),
           coalesce((SELECT next_serial FROM code_serials WHERE county_code = CAST(:county AS varchar)
                     AND class_code = CAST(:class_code AS varchar)), 1)
    FROM nullif(current_setting('smartcode.batch_id', true), '') AS b
    WHERE b IS NOT NULL
    ON CONFLICT DO NOTHING
    """
)
# Whether a serial of [first, stop) is already taken: a range probe of the unique index on code.
_TAKEN = text("SELECT EXISTS (SELECT 1 FROM assets WHERE code >= :low AND code < :high)")
# The first serial at or above :first that no asset holds (the end of the taken run starting there).
_FIRST_FREE = text(
    """
    SELECT coalesce(min(serial) + 1, CAST(:first AS integer)) FROM (
      SELECT serial, lead(serial) OVER (ORDER BY code) AS following FROM assets
      WHERE code >= :low AND code < :high
    ) t WHERE following IS NULL OR following > serial + 1
    """
)
_SET = text(
    "UPDATE code_serials SET next_serial = :n WHERE county_code = :county AND class_code = :class_code"
)


def _code_bound(county: str, class_code: str, serial: int) -> str:
    return f"{county}{class_code}{serial:06d}"


def _remember(session: Session, county: str, class_code: str) -> None:
    session.execute(_REMEMBER, {"county": county, "class_code": class_code})


def allocate_serials(session: Session, county: str, class_code: str, count: int = 1) -> range:
    """Reserve ``count`` consecutive fresh serials; ``SerialExhausted`` when the range would overflow.

    Serials some asset already holds are stepped over: after a rolled-back batch put the counter
    back, the assets it created (decommissioned, never deleted) still hold theirs.
    """
    if count < 1:
        raise ValueError("count must be positive")
    _remember(session, county, class_code)
    keys = {"county": county, "class_code": class_code}
    while True:
        after = session.execute(_ALLOCATE, {**keys, "n": count}).scalar_one()
        first = after - count
        if after - 1 > SERIAL_MAX:
            free = max(0, SERIAL_MAX + 1 - first)
            raise SerialExhausted(
                f"顺序码已满: county {county} class {class_code} has {free} serials left, {count} requested",
                county=county,
                class_code=class_code,
            )
        low, high = _code_bound(county, class_code, first), _code_bound(county, class_code, after)
        if not session.execute(_TAKEN, {"low": low, "high": high}).scalar_one():
            return range(first, after)
        top = _code_bound(county, class_code, SERIAL_MAX + 1)
        free = session.execute(_FIRST_FREE, {"first": first, "low": low, "high": top}).scalar_one()
        session.execute(_SET, {**keys, "n": max(free, first + 1)})


def reserve_serial(session: Session, county: str, class_code: str, serial: int) -> None:
    """Record that an explicit serial (from an inventory) is taken, so allocation never reuses it."""
    _remember(session, county, class_code)
    session.execute(_RESERVE, {"county": county, "class_code": class_code, "serial": serial})


def restore_serials(session: Session, batch_id: int) -> int:
    """Put back the counters a batch moved (at its rollback); returns how many classes."""
    return int(
        session.execute(
            text(
                "UPDATE code_serials s SET next_serial = b.next_serial_before FROM import_batch_serials b "
                "WHERE b.batch_id = :b AND s.county_code = b.county_code AND s.class_code = b.class_code"
            ),
            {"b": batch_id},
        ).rowcount  # type: ignore[attr-defined]
    )
