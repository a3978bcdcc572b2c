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
