"""Retention of the outbox and the delivery log: old delivered events go, anything still owed stays."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from common.settings import WebhookSettings
from registry import outbox_retention
from registry.access import Actor
from registry.outbox_retention import prune
from registry.resolution import conninfo_from_url
from registry.webhook_worker import WebhookWorker

OPS = Actor("运维", admin=True)


def _subscription(conn: Connection, *, enabled: bool = True, deleted: bool = False) -> int:
    return int(
        conn.execute(
            text(
                "INSERT INTO webhook_subscriptions (url, events, secret, created_by, enabled, deleted_at) "
                "VALUES ('http://127.0.0.1:9/hook', '{*}', 'whsec_test', 'test', :enabled, "
                "CASE WHEN :deleted THEN now() END) RETURNING id"
            ),
            {"enabled": enabled and not deleted, "deleted": deleted},
        ).scalar_one()
    )


def _event(conn: Connection, days_ago: float, *, fanned_out: bool = True) -> int:
    """An outbox event that happened ``days_ago`` days ago (fanned out then, unless told otherwise)."""
    return int(
        conn.execute(
            text(
                "INSERT INTO event_outbox (type, subject, data, occurred_at, fanned_out_at) "
                "VALUES ('asset.created', 'S1', '{}', now() - make_interval(days => :d), "
                "CASE WHEN :f THEN now() - make_interval(days => :d) END) RETURNING id"
            ),
            {"d": days_ago, "f": fanned_out},
        ).scalar_one()
    )


def _delivery(conn: Connection, sub: int, event: int, state: str, days_ago: float, attempts: int = 1) -> int:
    """A delivery of ``event`` to ``sub`` last touched ``days_ago`` days ago, with its attempts."""
    delivery = int(
        conn.execute(
            text(
                "INSERT INTO webhook_deliveries "
                "(subscription_id, event_id, subject, state, attempts, created_at, delivered_at, dead_at) "
                "VALUES (:s, :e, 'S1', CAST(:state AS varchar), :n, now() - make_interval(days => :d), "
                "CASE WHEN :state = 'delivered' THEN now() - make_interval(days => :d) END, "
                "CASE WHEN :state = 'dead' THEN now() - make_interval(days => :d) END) RETURNING id"
            ),
            {"s": sub, "e": event, "state": state, "n": attempts, "d": days_ago},
        ).scalar_one()
    )
    conn.execute(
        text(
            "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, latency_ms, status_code) "
            "SELECT :id, g, now() - make_interval(days => :d), 5, 500 FROM generate_series(1, :n) g"
        ),
        {"id": delivery, "d": days_ago, "n": attempts},
    )
    return delivery


def _ids(db: Engine, table: str) -> set[int]:
    with db.connect() as conn:
        return set(conn.execute(text(f"SELECT id FROM {table}")).scalars())


def _waits_for(db: Engine, pid: int) -> bool:
    """Whether some session is waiting for a lock that the backend ``pid`` holds."""
    with db.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE :pid = ANY (pg_blocking_pids(pid)))"),
                {"pid": pid},
            ).scalar_one()
        )


def _audit(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return conn.execute(
            text("SELECT actor, reason, details FROM audit_log WHERE action = 'prune' ORDER BY id")
        ).all()


def test_old_delivered_events_go_with_their_log_and_whatever_is_still_owed_stays(db: Engine) -> None:
    with db.begin() as conn:  # the service role: it may delete from the outbox and the log
        live, gone = _subscription(conn), _subscription(conn, deleted=True)
        paused = _subscription(conn, enabled=False)
        delivered = _event(conn, 40)
        d_delivered = _delivery(conn, live, delivered, "delivered", 40, attempts=3)
        dead = _event(conn, 39)
        d_dead = _delivery(conn, live, dead, "dead", 38, attempts=2)
        matched_nothing = _event(conn, 45)
        owed = _event(conn, 41)  # delivered to one subscription, still retrying for another
        d_owed_done = _delivery(conn, gone, owed, "delivered", 41)
        d_owed = _delivery(conn, live, owed, "pending", 41, attempts=4)
        waiting_for_enable = _event(conn, 42)
        d_waiting = _delivery(conn, paused, waiting_for_enable, "pending", 42)
        for_deleted = _event(conn, 43)
        d_for_deleted = _delivery(conn, gone, for_deleted, "pending", 43)
        not_fanned_out = _event(conn, 44, fanned_out=False)  # no worker ran for six weeks
        redelivered = _event(conn, 50)
        d_redelivered = _delivery(conn, live, redelivered, "dead", 1)  # redelivered and dead again yesterday
        recent = _event(conn, 2)
        d_recent = _delivery(conn, live, recent, "delivered", 2)

    done = prune(db, OPS, 30)

    assert (done.events, done.deliveries, done.attempts) == (4, 3, 3 + 2 + 1)
    assert done.kept == 4  # owed, waiting_for_enable, not_fanned_out, redelivered
    assert _ids(db, "event_outbox") == {owed, waiting_for_enable, not_fanned_out, redelivered, recent}
    assert {delivered, dead, matched_nothing, for_deleted}.isdisjoint(_ids(db, "event_outbox"))
    assert _ids(db, "webhook_deliveries") == {d_owed_done, d_owed, d_waiting, d_redelivered, d_recent}
    assert {d_delivered, d_dead, d_for_deleted}.isdisjoint(_ids(db, "webhook_deliveries"))
    with db.connect() as conn:
        kept_attempts = conn.execute(text("SELECT count(*) FROM webhook_attempts")).scalar_one()
    assert kept_attempts == 1 + 4 + 1 + 1 + 1, "the retrying delivery keeps its whole log"
    [(actor, reason, details)] = _audit(db)
    assert actor == "运维" and "30 days" in reason
    assert details | {"cutoff": None} == {
        "keep_days": 30,
        "cutoff": None,
        "events": 4,
        "deliveries": 3,
        "attempts": 6,
        "kept": 4,
    }

    again = prune(db, OPS, 30)
    assert (again.events, again.deliveries, again.attempts) == (0, 0, 0)
    assert len(_audit(db)) == 1, "a prune that removed nothing writes no audit entry"
    assert prune(db, OPS, 0).events == 0 and len(_ids(db, "event_outbox")) == 5, "0 keeps everything"


def test_the_walk_goes_on_past_held_events_in_small_batches_and_stops_at_the_first_recent_one(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_retention, "BATCH", 3)
    with db.begin() as conn:
        live = _subscription(conn)
        held, old = [], []
        for i in range(12):
            event = _event(conn, 60)
            if i % 4 == 0:
                held.append(event)
                _delivery(conn, live, event, "pending", 60)
            else:
                old.append(event)
                _delivery(conn, live, event, "delivered", 60)
        young = _event(conn, 1)
        # Written by a transaction that began long ago, committed after the young one: it waits a run.
        late = _event(conn, 60)

    done = prune(db, OPS, 30)

    assert done.events == len(old) == 9 and done.kept == len(held) == 3
    assert _ids(db, "event_outbox") == {*held, young, late}


def test_the_worker_prunes_as_the_service_role_when_it_starts(db: Engine, migrated_url: str) -> None:
    with db.begin() as conn:
        old = _event(conn, 31)
        recent = _event(conn, 29)
    settings = WebhookSettings(poll_s=0.5, keep_days=30)
    worker = WebhookWorker(conninfo_from_url(migrated_url), settings)
    worker.start()
    try:
        deadline = time.monotonic() + 15
        while old in _ids(db, "event_outbox") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert _ids(db, "event_outbox") == {recent}
    [(actor, _, details)] = _audit(db)
    assert actor == worker.worker_id and details["events"] == 1


def test_the_cli_prunes_and_reports_the_counts_in_chinese_and_as_json(db: Engine, owner_url: str) -> None:
    from tests.test_cli import run

    with db.begin() as conn:
        live = _subscription(conn)
        for _ in range(2):
            _delivery(conn, live, _event(conn, 40), "delivered", 40, attempts=2)
        _delivery(conn, live, _event(conn, 40), "pending", 40)
        _event(conn, 1)
    env = {**os.environ, "SMARTCODE_DATABASE_URL": owner_url, "SMARTCODE_WEBHOOKS_KEEP_DAYS": "30"}

    listed = run("db", "events", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "保留最近 30 天" in listed.stdout and "待投递 1 条" in listed.stdout
    assert "--prune" in listed.stderr
    assert len(_ids(db, "event_outbox")) == 4, "without --prune nothing is deleted"

    human = run("db", "events", "--prune", env=env)
    assert human.returncode == 0, human.stderr
    assert "事件 2 条、投递记录 2 条、投递尝试 4 条" in human.stdout
    assert "1 条事件已过保留期但仍保留" in human.stdout

    again = run("db", "events", "--prune", "--json", env=env)
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["keep_days"] == 30 and data["pending_deliveries"] == 1
    assert {k: data["pruned"][k] for k in ("events", "deliveries", "attempts", "kept")} == {
        "events": 0,
        "deliveries": 0,
        "attempts": 0,
        "kept": 1,
    }
    assert set(data["rows_estimated"]) == {"event_outbox", "webhook_deliveries", "webhook_attempts"}


def test_a_redelivery_committed_while_a_prune_waits_keeps_its_event(db: Engine) -> None:
    # An administrator sends an old dead delivery again at the moment the worker prunes: the prune must
    # see the delivery pending again, not delete the row it just waited for.
    with db.begin() as conn:
        sub = _subscription(conn)
        event = _event(conn, 40)
        delivery = _delivery(conn, sub, event, "dead", 40)
    redeliver = db.connect()
    pending = redeliver.begin()
    redeliver.execute(
        text("UPDATE webhook_deliveries SET state = 'pending', dead_at = NULL WHERE id = :d"), {"d": delivery}
    )
    blocked_by = redeliver.execute(text("SELECT pg_backend_pid()")).scalar_one()
    done: dict[str, Any] = {}
    pruner = threading.Thread(target=lambda: done.update(pruned=prune(db, OPS, 30)))
    pruner.start()
    # Commit only once the prune is blocked on the delivery's row: after a fixed sleep, a slow machine
    # could commit first and the test would pass without the race it is about ever happening.
    deadline = time.monotonic() + 20
    try:
        while not _waits_for(db, blocked_by):
            assert pruner.is_alive() and time.monotonic() < deadline, "the prune never waited for the row"
            time.sleep(0.02)
    finally:
        pending.commit()
        redeliver.close()
    pruner.join(timeout=20)
    assert not pruner.is_alive()
    assert done["pruned"].events == 0 and done["pruned"].kept == 1
    with db.connect() as conn:
        state = conn.execute(text("SELECT state FROM webhook_deliveries WHERE id = :d"), {"d": delivery})
        assert state.scalar_one() == "pending"
    assert event in _ids(db, "event_outbox")
