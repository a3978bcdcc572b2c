"""The event outbox: an event is written with its change, or not at all."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from common.errors import InvalidInput
from registry.events import emit

CODE = "44031001180000014"


def _events(db: Engine) -> list[tuple[str, str, dict[str, object]]]:
    with db.connect() as conn:
        return [
            tuple(r) for r in conn.execute(text("SELECT type, subject, data FROM event_outbox ORDER BY id"))
        ]


def test_an_event_commits_with_its_change_and_a_rolled_back_change_never_emits(db: Engine) -> None:
    with Session(db) as session, session.begin():
        emit(
            session,
            "asset.handed_over",
            {"code": "44031001180000014", "到": "供电局"},
            subject="44031001180000014",
        )
    with pytest.raises(RuntimeError), Session(db) as session, session.begin():
        emit(session, "asset.decommissioned", {"code": CODE}, subject=CODE)
        raise RuntimeError("the change failed after its event was written")
    assert _events(db) == [("asset.handed_over", CODE, {"code": CODE, "到": "供电局"})]


def test_a_commit_wakes_a_listener_and_a_rollback_does_not(db: Engine, migrated_url: str) -> None:
    import psycopg

    with psycopg.connect(
        migrated_url.replace("postgresql+psycopg", "postgresql"), autocommit=True
    ) as listener:
        listener.execute("LISTEN smartcode_events")
        with pytest.raises(RuntimeError), Session(db) as session, session.begin():
            emit(session, "complaint.created", {}, subject="SC-1")
            raise RuntimeError("rolled back")
        with Session(db) as session, session.begin():
            event_id = emit(session, "complaint.created", {}, subject="SC-2")
        # Returns at the first notification; the limit only ends a wait for one that never comes.
        notes = list(listener.notifies(timeout=30, stop_after=1))
    assert [n.payload for n in notes] == [str(event_id)]


def test_an_unknown_event_type_is_refused(db: Engine) -> None:
    with Session(db) as session, session.begin(), pytest.raises(InvalidInput, match="unknown event type"):
        emit(session, "asset.renamed", {}, subject="x")


def _lock_waiters(db: Engine) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar_one()
        )


def test_events_of_one_subject_take_their_ids_in_commit_order(db: Engine) -> None:
    import threading
    import time

    # T1 emits for the asset and stays open; T2 emits for the same asset meanwhile. T2 must wait for T1
    # and only then draw its id. Had it drawn at once, it could commit first, and the worker would send
    # its event before T1's (with the smaller id) was even visible.
    t1 = Session(db)
    t1.begin()
    first = emit(t1, "complaint.created", {}, subject=CODE)
    second: list[int] = []

    def other_post() -> None:
        with Session(db) as session, session.begin():
            second.append(emit(session, "complaint.created", {}, subject=CODE))

    waiter = threading.Thread(target=other_post)
    waiter.start()
    deadline = time.monotonic() + 30
    while _lock_waiters(db) == 0:
        assert waiter.is_alive() and time.monotonic() < deadline, "the second emit did not wait"
        time.sleep(0.02)
    # Another subject is not held up, and draws its id while the second is still waiting.
    with Session(db) as session, session.begin():
        unrelated = emit(session, "complaint.created", {}, subject="44031001180000021")
    assert not second
    t1.commit()
    t1.close()
    waiter.join(timeout=30)
    assert second and first < unrelated < second[0]
