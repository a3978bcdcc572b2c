"""The resolution log by month: rows land in their month, coming months are made ahead, old ones dropped."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from registry.access import Actor
from registry.log_partitions import drop_expired, ensure_ahead, expiry_cutoff, list_partitions

OWNER = Actor("运维", admin=True)


def _log_row(conn: object, at: dt.datetime) -> int:
    """Append one log row at ``at`` the way the writer does (through the parent table); its id."""
    return int(
        conn.execute(  # type: ignore[attr-defined]
            text(
                "INSERT INTO resolution_log (at, actor, channel, query, status, answer) "
                "VALUES (:at, 'test', 'api', CAST(:q AS jsonb), 'resolved', '{}') RETURNING id"
            ),
            {"at": at, "q": json.dumps({"code": "x"})},
        ).scalar_one()
    )


def _where(conn: object, log_id: int) -> str:
    return str(
        conn.execute(  # type: ignore[attr-defined]
            text("SELECT tableoid::regclass::text FROM resolution_log WHERE id = :id"), {"id": log_id}
        ).scalar_one()
    )


def _month_name(at: dt.datetime) -> str:
    return f"resolution_log_y{at.year:04d}m{at.month:02d}"


def _months_later(months: int) -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    index = now.year * 12 + now.month - 1 + months
    return dt.datetime(index // 12, index % 12 + 1, 15, 12, tzinfo=dt.UTC)


def test_a_row_for_a_month_without_partition_waits_in_the_default_and_moves_when_the_month_is_made(
    db: Engine,
) -> None:
    later = _months_later(7)
    with db.begin() as conn:  # the service role
        log_id = _log_row(conn, later)
        assert _where(conn, log_id) == "resolution_log_default"
        assert ensure_ahead(conn, 7) >= 1
        assert _where(conn, log_id) == _month_name(later)
        assert ensure_ahead(conn, 7) == 0, "a second round creates nothing"
    with db.connect() as conn:
        names = [p.name for p in list_partitions(conn)]
    assert _month_name(later) in names and names[-1] == "resolution_log_default"


def test_the_service_role_can_neither_delete_from_a_partition_nor_drop_one(db: Engine) -> None:
    with db.begin() as conn:
        ensure_ahead(conn, 1)
    for statement in (
        "DELETE FROM resolution_log",
        "DELETE FROM resolution_log_default",
        f"DELETE FROM {_month_name(_months_later(1))}",
        f"DROP TABLE {_month_name(_months_later(1))}",
    ):
        with pytest.raises(DBAPIError, match=r"permission denied|must be owner"), db.begin() as conn:
            conn.execute(text(statement))
    with pytest.raises(DBAPIError, match=r"permission denied|must be owner"), Session(db) as session:
        drop_expired(session, OWNER, 1, _months_later(40))


def test_retention_drops_whole_months_past_the_cutoff_and_audits_them(
    db: Engine, owner_engine: Engine
) -> None:
    with db.begin() as conn:
        ensure_ahead(conn, 3)
        current = _log_row(conn, dt.datetime.now(dt.UTC))
        in_three = _log_row(conn, _months_later(3))
    # Seen from two months after the month in three: keeping 2 months drops everything before it.
    later_now = _months_later(5)
    with Session(owner_engine) as session, session.begin():
        dropped = drop_expired(session, OWNER, 2, later_now)
    assert dropped and all(p.upper is not None and p.upper <= expiry_cutoff(later_now, 2) for p in dropped)
    with db.connect() as conn:
        kept = {
            r[0]
            for r in conn.execute(
                text("SELECT id FROM resolution_log WHERE id IN (:a, :b)"), {"a": current, "b": in_three}
            )
        }
        audit = conn.execute(
            text("SELECT entity_id, details FROM audit_log WHERE action = 'drop_log_partition'")
        ).all()
    assert kept == {in_three}
    assert {name for name, _ in audit} == {p.name for p in dropped}
    assert sum(details["rows"] for _, details in audit) >= 1
    # Keeping 0 months means keeping everything.
    with Session(owner_engine) as session, session.begin():
        assert drop_expired(session, OWNER, 0, _months_later(100)) == []
    # The service puts the current months back (their rows would wait in the default otherwise).
    with db.begin() as conn:
        ensure_ahead(conn, 2)
        assert _where(conn, _log_row(conn, dt.datetime.now(dt.UTC))) == _month_name(dt.datetime.now(dt.UTC))


def test_the_cutoff_is_the_start_of_a_month() -> None:
    now = dt.datetime(2026, 3, 10, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert expiry_cutoff(now, 2) == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert expiry_cutoff(now, 14) == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def test_the_cli_lists_the_partitions_in_chinese_and_as_json(db: Engine, owner_url: str) -> None:
    from tests.test_cli import run

    env = {**os.environ, "SMARTCODE_DATABASE_URL": owner_url, "SMARTCODE_RESOLVE_LOG_MONTHS_AHEAD": "4"}
    listed = run("db", "log", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    names = [p["name"] for p in data["partitions"]]
    assert _month_name(_months_later(4)) in names, "the command makes the coming months first"
    assert data["keep_months"] == 24 and data["dropped"] == []
    human = run("db", "log", env=env)
    assert human.returncode == 0, human.stderr
    assert "分区" in human.stdout and "保留最近 24 个月" in human.stdout
    assert "--drop-expired" in human.stderr
