"""Ownership disputes (异议) on a real PostGIS: who may object, each state change, what a ruling changes,
deadlines in working days, events, evidence checks, the ledger export and the analysis."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, text

from common.errors import Conflict, Forbidden, InvalidInput, StaleVersion, Unauthorized
from common.settings import DisputeSettings, Settings
from registry import assets, complaints, disputes
from registry.access import ANONYMOUS
from registry.db import Actor, transaction
from registry.disputes import Decision, DisputeFilter, Evidence
from tests.helpers import PINGSHAN, make_asset, make_unit
from tests.test_complaints import _create
from tests.test_resolve import add_rule, add_zone, box, locate, pt

CST = dt.timezone(dt.timedelta(hours=8))
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
GIF = b"GIF89a" + b"\x00" * 32


@pytest.fixture
def world(db: Engine, admin: Actor) -> dict[str, Any]:
    """Power owns a lamp maintained by water; gas and the city are other units."""
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility").id
    water = make_unit(db, "深圳市水务（集团）有限公司", admin, kind="utility").id
    gas = make_unit(db, "深圳市燃气集团股份有限公司", admin, kind="utility").id
    lamp = make_asset(db, admin, owner_id=power, maintainer_id=water)
    return {
        "power": power,
        "water": water,
        "gas": gas,
        "code": lamp.code,
        "as_power": Actor("token:power", unit_id=power),
        "as_water": Actor("token:water", unit_id=water),
        "as_gas": Actor("token:gas", unit_id=gas),
    }


def _open(db: Engine, actor: Actor, settings: Settings, **fields: Any) -> dict[str, Any]:
    with transaction(db) as session:
        return disputes.open_dispute(session, actor, settings=settings, **fields)


def _review(db: Engine, admin: Actor, settings: Settings, view: dict[str, Any]) -> dict[str, Any]:
    with transaction(db) as session:
        return disputes.start_review(session, admin, view["id"], version=view["version"], settings=settings)


def _decide(
    db: Engine, admin: Actor, settings: Settings, view: dict[str, Any], decision: Decision
) -> dict[str, Any]:
    with transaction(db) as session:
        return disputes.decide(
            session, admin, view["id"], decision, version=view["version"], settings=settings
        )


def _events(db: Engine) -> list[tuple[str, str, dict[str, Any]]]:
    """The dispute events in the outbox (other changes emit their own, e.g. asset.created)."""
    with db.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT type, subject, data FROM event_outbox WHERE type LIKE 'dispute.%' ORDER BY id")
            )
        ]  # type: ignore[misc]


def _registry(db: Engine) -> str:
    """What a ruling may change: assets, their periods and history, rules."""
    with db.connect() as conn:
        return str(
            conn.execute(
                text(
                    "SELECT concat_ws('|', (SELECT string_agg(concat_ws(',', code, version, owner_id, "
                    "maintainer_id), ';' ORDER BY id) FROM assets), "
                    "(SELECT count(*) FROM asset_responsibility), "
                    "(SELECT count(*) FROM asset_history), (SELECT string_agg(concat_ws(',', id, unit_id, "
                    "valid_to), ';' ORDER BY id) FROM responsibility_rules))"
                )
            ).scalar_one()
        )


def _naming_disputes(db: Engine) -> tuple[int, ...]:
    """How many asset versions (current, replaced) and rule versions (made, ended) name a dispute."""
    with db.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM assets WHERE change_dispute_id IS NOT NULL), "
                    "(SELECT count(*) FROM asset_history WHERE dispute_id IS NOT NULL), "
                    "(SELECT count(*) FROM responsibility_rules WHERE dispute_id IS NOT NULL), "
                    "(SELECT count(*) FROM responsibility_rules WHERE ended_by_dispute_id IS NOT NULL)"
                )
            ).one()
        )


# --- deadlines -----------------------------------------------------------------------------------------


def test_the_review_deadline_counts_working_days_across_a_weekend_and_holidays() -> None:
    friday = dt.datetime(2026, 12, 4, 10, 0, tzinfo=CST)
    # Mon 7, Tue 8, Wed 9: the third working day after a Friday is the next Wednesday.
    assert disputes.due_on(friday, 3, "Asia/Shanghai", frozenset()) == dt.date(2026, 12, 9)
    # A holiday on the Tuesday pushes it to Thursday.
    assert disputes.due_on(friday, 3, "Asia/Shanghai", frozenset({dt.date(2026, 12, 8)})) == dt.date(
        2026, 12, 10
    )
    # Opened on Saturday: counting starts on Monday.
    saturday = dt.datetime(2026, 12, 5, 23, 0, tzinfo=CST)
    assert disputes.due_on(saturday, 1, "Asia/Shanghai", frozenset()) == dt.date(2026, 12, 7)
    # The local day decides: Friday 20:00 UTC is already Saturday in Shanghai.
    late_friday_utc = dt.datetime(2026, 12, 4, 20, 0, tzinfo=dt.UTC)
    assert disputes.due_on(late_friday_utc, 1, "Asia/Shanghai", frozenset()) == dt.date(2026, 12, 7)
    assert disputes.due_on(late_friday_utc, 1, "UTC", frozenset()) == dt.date(2026, 12, 7)
    thursday_utc = dt.datetime(2026, 12, 3, 20, 0, tzinfo=dt.UTC)  # Friday 04:00 in Shanghai
    assert disputes.due_on(thursday_utc, 1, "UTC", frozenset()) == dt.date(2026, 12, 4)
    assert disputes.due_on(thursday_utc, 1, "Asia/Shanghai", frozenset()) == dt.date(2026, 12, 7)


def test_the_deadline_skips_a_spring_festival_week_and_counts_its_weekend_working_day() -> None:
    # 调休: the holiday week Mon 8 - Fri 12 Feb 2027 is off, Saturday 20 Feb is worked in its place.
    holidays = frozenset(dt.date(2027, 2, d) for d in range(8, 13))
    workdays = frozenset({dt.date(2027, 2, 20)})
    friday = dt.datetime(2027, 2, 5, 10, 0, tzinfo=CST)
    # Mon 15, Tue 16, ..., Fri 19 are days 1-5; Saturday 20 is the sixth, not the next Monday.
    assert disputes.due_on(friday, 6, "Asia/Shanghai", holidays, workdays) == dt.date(2027, 2, 20)
    assert disputes.due_on(friday, 6, "Asia/Shanghai", holidays) == dt.date(2027, 2, 22)
    settings = DisputeSettings(holidays="2027-02-08, 2027-02-09", workdays="2027-02-20")
    assert settings.workday_dates == workdays and dt.date(2027, 2, 9) in settings.holiday_dates
    with pytest.raises(ValueError, match="2027-02-30"):
        DisputeSettings(workdays="2027-02-30")


def test_a_dispute_is_overdue_once_its_last_review_day_has_ended(
    db: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    view = _open(
        db, world["as_power"], settings, subject_kind="asset", subject_id=world["code"], reason="非我单位资产"
    )
    opened = dt.datetime.fromisoformat(view["opened_at"])
    due = dt.date.fromisoformat(view["due_on"])
    assert due == disputes.due_on(opened, 3, "Asia/Shanghai", frozenset())
    assert due.weekday() < 5 and (due - opened.astimezone(CST).date()).days >= 3
    end_of_due_day = dt.datetime.combine(due + dt.timedelta(days=1), dt.time(0), tzinfo=CST)
    with transaction(db) as session:
        assert (
            disputes.overdue(session, settings=settings, now=end_of_due_day - dt.timedelta(seconds=1)) == []
        )
        late = disputes.overdue(session, settings=settings, now=end_of_due_day + dt.timedelta(seconds=1))
        assert [d["id"] for d in late] == [view["id"]] and late[0]["overdue"]
        listed, _ = disputes.list_disputes(
            session, DisputeFilter(overdue=True), settings=settings, now=end_of_due_day
        )
        assert [d["id"] for d in listed] == [view["id"]]
    # A decided dispute is never overdue.
    view = _review(db, admin, settings, view)
    _decide(db, admin, settings, view, Decision("rejected", "登记资料表明为该单位资产"))
    with transaction(db) as session:
        assert disputes.overdue(session, settings=settings, now=end_of_due_day + dt.timedelta(days=30)) == []


# --- who may object ------------------------------------------------------------------------------------


def test_only_a_unit_the_subject_names_may_object(
    db: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    code = world["code"]
    with pytest.raises(Forbidden, match="only a unit the registry names"):
        _open(db, world["as_gas"], settings, subject_kind="asset", subject_id=code, reason="不是我们的")
    with pytest.raises(Forbidden):
        _open(db, Actor("reader"), settings, subject_kind="asset", subject_id=code, reason="x")
    with pytest.raises(Unauthorized):
        _open(db, ANONYMOUS, settings, subject_kind="asset", subject_id=code, reason="x")
    # An administrator acts for a named unit only.
    with pytest.raises(InvalidInput, match="not named"):
        _open(db, admin, settings, subject_kind="asset", subject_id=code, reason="x", unit_id=world["gas"])
    with pytest.raises(InvalidInput, match="unit_id"):
        _open(db, admin, settings, subject_kind="asset", subject_id=code, reason="x")
    # A unit token cannot speak for another unit, even a named one.
    with pytest.raises(Forbidden):
        _open(
            db,
            world["as_water"],
            settings,
            subject_kind="asset",
            subject_id=code,
            reason="x",
            unit_id=world["power"],
        )
    with pytest.raises(InvalidInput, match="reason"):
        _open(db, world["as_power"], settings, subject_kind="asset", subject_id=code, reason="  ")
    assert _events(db) == []
    mine = _open(
        db, world["as_water"], settings, subject_kind="asset", subject_id=code, reason="养护合同已到期"
    )
    assert mine["roles"] == ["maintainer"] and mine["unit"]["id"] == world["water"]
    for_power = _open(
        db, admin, settings, subject_kind="asset", subject_id=code, reason="代为提出", unit_id=world["power"]
    )
    assert for_power["roles"] == ["owner"] and for_power["opened_by"] == admin.name
    # One pending objection per unit and subject.
    with pytest.raises(Conflict, match="already has dispute"):
        _open(db, world["as_power"], settings, subject_kind="asset", subject_id=code, reason="再次提出")


# --- the asset ruling ----------------------------------------------------------------------------------


def test_an_upheld_asset_dispute_hands_the_role_over_from_the_date_with_the_dispute_in_the_history(
    db: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    code = world["code"]
    evidence = [Evidence("移交协议.pdf", PDF), Evidence("现场.png", PNG)]
    view = _open(
        db,
        world["as_power"],
        settings,
        subject_kind="asset",
        subject_id=code,
        reason="该路灯已移交燃气集团",
        evidence=evidence,
    )
    assert view["state"] == "open" and view["version"] == 1 and view["roles"] == ["owner"]
    assert [(e["seq"], e["content_type"]) for e in view["evidence"]] == [
        (1, "application/pdf"),
        (2, "image/png"),
    ]
    assert view["subject"] == {
        "kind": "asset",
        "id": code,
        "asset_code": code,
        "rule_id": None,
        "complaint": None,
    }
    assert view["class"]["code"] == "0118"
    with transaction(db) as session:
        assert disputes.get_evidence(session, view["id"], 2) == (PNG, "image/png", "现场.png")
    view = _review(db, admin, settings, view)
    assert view["state"] == "under_review" and view["version"] == 2
    effective = dt.datetime.now(CST).replace(microsecond=0) - dt.timedelta(days=2)
    view = _decide(db, admin, settings, view, Decision("upheld", "移交协议有效", world["gas"], effective))
    assert (
        view["state"] == "upheld"
        and view["decided_by"] == admin.name
        and view["state_reason"] == "移交协议有效"
    )
    assert (
        view["decision"]["change"]["roles"] == ["owner"]
        and view["decision"]["change"]["to_unit_id"] == world["gas"]
    )
    assert [(h["state"], h["actor"]) for h in view["history"]] == [
        ("open", "token:power"),
        ("under_review", admin.name),
        ("upheld", admin.name),
    ]
    assert view["history"][0]["reason"] == "该路灯已移交燃气集团"
    assert view["history"][2]["decision"]["outcome"] == "upheld"
    with transaction(db) as session:
        asset = assets.get_by_code(session, code)
        assert asset.owner_id == world["gas"] and asset.maintainer_id == world["water"]
        periods = assets.responsibility_periods(session, code)
        assert periods[-1]["owner"]["id"] == world["gas"]
        assert dt.datetime.fromisoformat(periods[-1]["valid_from"]) == effective
        assert periods[-2]["owner"]["id"] == world["power"]
        assert f"#{view['id']}" in (periods[-1]["reason"] or "")
        history = assets.history(session, code)
        assert history[-1]["action"] == "change_units" and f"dispute #{view['id']}" in history[-1]["reason"]
        # The hand-over's version names the dispute in a field, the registration before it none.
        assert [h["dispute_id"] for h in history] == [None, view["id"]]
        assert view["decision"]["change"]["asset_version"] == history[-1]["version"]
        audit = (
            session.execute(
                text("SELECT action FROM audit_log WHERE entity = 'dispute' AND entity_id = :id ORDER BY id"),
                {"id": str(view["id"])},
            )
            .scalars()
            .all()
        )
        assert audit == ["open", "review", "upheld"]
    kinds = [(t, s, d["state"]) for t, s, d in _events(db)]
    assert kinds == [
        ("dispute.opened", code, "open"),
        ("dispute.under_review", code, "under_review"),
        ("dispute.upheld", code, "upheld"),
    ]
    upheld = _events(db)[-1][2]
    assert (
        upheld["id"] == view["id"]
        and upheld["decided_by"] == admin.name
        and upheld["unit"]["id"] == world["power"]
    )
    assert upheld["due_on"] == view["due_on"] and upheld["decision"]["change"]["kind"] == "asset"


def _upheld_hand_over(db: Engine, admin: Actor, settings: Settings, world: dict[str, Any]) -> dict[str, Any]:
    """Power's objection to owning the lamp, upheld: gas owns it now."""
    view = _open(
        db, world["as_power"], settings, subject_kind="asset", subject_id=world["code"], reason="已移交"
    )
    view = _review(db, admin, settings, view)
    return _decide(db, admin, settings, view, Decision("upheld", "移交协议有效", world["gas"]))


def test_the_asset_history_names_the_upheld_dispute_in_the_api_and_the_cli_and_ordinary_edits_none(
    db: Engine,
    admin: Actor,
    settings: Settings,
    migrated_url: str,
    client: Any,
    auth: dict[str, str],
    world: dict[str, Any],
) -> None:
    import os

    from tests.conftest import ADMIN_TOKEN
    from tests.test_cli import run

    code = world["code"]
    view = _upheld_hand_over(db, admin, settings, world)
    # Ordinary edits after the ruling: a note, then a hand-over back; the ruling's version is now
    # a replaced one, kept by the update trigger in the append-only history.
    edited = client.patch(f"/api/v1/assets/{code}", json={"version": 2, "note": "巡查"}, headers=auth)
    assert edited.status_code == 200, edited.text
    back = client.post(
        f"/api/v1/assets/{code}/units",
        json={"version": 3, "maintainer_id": world["power"], "reason": "养护合同到期"},
        headers=auth,
    )
    assert back.status_code == 200, back.text
    answer = client.get(f"/api/v1/assets/{code}/history", headers=auth)
    assert answer.status_code == 200, answer.text
    versions = answer.json()["versions"]
    assert [(v["version"], v["action"], v["dispute_id"]) for v in versions] == [
        (1, "create", None),
        (2, "change_units", view["id"]),
        (3, "update", None),
        (4, "change_units", None),
    ]
    url = versions[1]["dispute_url"]
    assert url == f"/api/v1/disputes/{view['id']}"
    assert [v["dispute_url"] for v in versions if v["version"] != 2] == [None, None, None]
    linked = client.get(url, headers=auth)
    assert linked.status_code == 200 and linked.json()["decision"]["change"]["asset_version"] == 2
    # The column is the database's, written with the change: "which changes came from dispute n".
    with db.connect() as conn:
        found = conn.execute(
            text(
                "SELECT a.code, h.version FROM asset_history h JOIN assets a ON a.id = h.asset_id "
                "WHERE h.dispute_id = :d"
            ),
            {"d": view["id"]},
        ).all()
    assert [tuple(r) for r in found] == [(code, 2)]

    env = {k: v for k, v in os.environ.items() if k not in ("SMARTCODE_LANG", "SMARTCODE_TIMEZONE")}
    env.update(SMARTCODE_DATABASE_URL=migrated_url, SMARTCODE_API_TOKEN=ADMIN_TOKEN)
    shown = run("show", code, "--history", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "异议编号" in shown.stdout
    rows = [line.split() for line in shown.stdout.splitlines() if line.strip()[:1].isdigit()]
    by_version = {row[0]: row for row in rows}
    # The dispute's number stands in its own column of the ruling's row only.
    assert str(view["id"]) in by_version["2"][1:]
    assert all(str(view["id"]) not in by_version[v][1:] for v in ("1", "3", "4"))
    as_json = run("show", code, "--history", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    assert [v["dispute_id"] for v in json.loads(as_json.stdout)] == [None, view["id"], None, None]


def test_the_history_keeps_its_guards_with_the_dispute_column(
    db: Engine, owner_engine: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    from sqlalchemy.exc import DBAPIError, ProgrammingError

    view = _upheld_hand_over(db, admin, settings, world)
    with transaction(db) as session:
        assets.apply_units_change(
            session,
            assets.get_by_code(session, world["code"]),
            2,
            {"maintainer_id": world["power"]},
            None,
            "ordinary",
            admin,
        )
    # The service's role still only appends to the history: it cannot relink nor unlink a version.
    with pytest.raises(ProgrammingError, match="permission denied"), db.begin() as conn:
        conn.execute(
            text("UPDATE asset_history SET dispute_id = NULL WHERE dispute_id = :d"), {"d": view["id"]}
        )
    # A change naming a dispute that does not exist is refused, as a foreign key would refuse it.
    with pytest.raises(DBAPIError, match="there is no dispute"), transaction(db) as session:
        assets.apply_units_change(
            session,
            assets.get_by_code(session, world["code"]),
            3,
            {"owner_id": world["power"]},
            None,
            "x",
            admin,
            dispute_id=view["id"] + 1000,
        )
    # Only the trigger sets the current version's dispute: a direct write of the column is overwritten.
    with owner_engine.begin() as conn:
        conn.execute(
            text("UPDATE assets SET change_dispute_id = :d, note = 'x' WHERE code = :c"),
            {"d": view["id"], "c": world["code"]},
        )
        assert conn.execute(text("SELECT change_dispute_id FROM assets")).scalar_one() is None


def test_a_rejected_dispute_leaves_the_registry_as_it_was(
    db: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    view = _open(
        db, world["as_power"], settings, subject_kind="asset", subject_id=world["code"], reason="非我单位"
    )
    view = _review(db, admin, settings, view)
    before = _registry(db)
    with pytest.raises(InvalidInput, match="reason"):
        _decide(db, admin, settings, view, Decision("rejected", ""))
    view = _decide(db, admin, settings, view, Decision("rejected", "竣工资料显示权属为供电局"))
    assert view["state"] == "rejected" and view["state_reason"] == "竣工资料显示权属为供电局"
    assert view["decision"] == {"outcome": "rejected"}
    assert _registry(db) == before
    assert _naming_disputes(db) == (0, 0, 0, 0)
    assert [t for t, _, _ in _events(db)][-1] == "dispute.rejected"


def test_each_transition_is_allowed_only_from_its_states_and_with_the_current_version(
    db: Engine, owner_engine: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    view = _open(
        db, world["as_power"], settings, subject_kind="asset", subject_id=world["code"], reason="非我单位"
    )
    events_before = len(_events(db))

    def refused(error: type[Exception], call: Any, match: str | None = None) -> None:
        with pytest.raises(error, match=match), transaction(db) as session:
            call(session)

    # A decision needs a review first; only administrators review.
    refused(
        Conflict,
        lambda s: disputes.decide(s, admin, view["id"], Decision("rejected", "x"), version=1),
        "open",
    )
    refused(Forbidden, lambda s: disputes.start_review(s, world["as_power"], view["id"], version=1))
    refused(
        Forbidden,
        lambda s: disputes.decide(s, world["as_power"], view["id"], Decision("upheld", "x"), version=1),
    )
    # Only the objecting unit withdraws.
    refused(Forbidden, lambda s: disputes.withdraw(s, world["as_water"], view["id"], version=1))
    refused(Forbidden, lambda s: disputes.withdraw(s, Actor("reader"), view["id"], version=1))
    # Stale: the caller read version 0.
    refused(
        StaleVersion, lambda s: disputes.start_review(s, admin, view["id"], version=0), "version 1, not 0"
    )
    assert len(_events(db)) == events_before
    view = _review(db, admin, settings, view)
    refused(
        Conflict,
        lambda s: disputes.start_review(s, admin, view["id"], version=view["version"]),
        "under_review",
    )
    refused(StaleVersion, lambda s: disputes.withdraw(s, world["as_power"], view["id"], version=1))
    # Upholding an asset dispute needs the unit that takes the role.
    refused(
        InvalidInput,
        lambda s: disputes.decide(s, admin, view["id"], Decision("upheld", "成立"), version=2),
        "new_unit_id",
    )
    refused(InvalidInput, lambda s: disputes.decide(s, admin, view["id"], Decision("maybe", "x"), version=2))
    assert len(_events(db)) == events_before + 1
    view = _decide(db, admin, settings, view, Decision("rejected", "资料不足"))
    for call in (
        lambda s: disputes.withdraw(s, world["as_power"], view["id"], version=view["version"]),
        lambda s: disputes.decide(
            s, admin, view["id"], Decision("upheld", "x", world["gas"]), version=view["version"]
        ),
        lambda s: disputes.start_review(s, admin, view["id"], version=view["version"]),
    ):
        refused(Conflict, call, "rejected")
    assert len(_events(db)) == events_before + 2
    # The history is append-only, and what the dispute is about never changes (even for the owner,
    # whom the grants do not stop).
    with pytest.raises(Exception, match="permission denied"), db.begin() as conn:
        conn.execute(text("UPDATE dispute_history SET actor = 'x'"))
    with pytest.raises(Exception, match="append-only"), owner_engine.begin() as conn:
        conn.execute(text("UPDATE dispute_history SET actor = 'x'"))
    with pytest.raises(Exception, match="kept as it was opened"), owner_engine.begin() as conn:
        conn.execute(text("UPDATE disputes SET reason = 'x', version = version + 1"))


def test_the_objecting_unit_withdraws_before_a_decision(
    db: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    view = _open(
        db, world["as_water"], settings, subject_kind="asset", subject_id=world["code"], reason="养护范围有误"
    )
    view = _review(db, admin, settings, view)
    before = _registry(db)
    with transaction(db) as session:
        view = disputes.withdraw(
            session, world["as_water"], view["id"], version=view["version"], reason="已核实，撤回"
        )
    assert (
        view["state"] == "withdrawn" and view["state_reason"] == "已核实，撤回" and view["decided_at"] is None
    )
    assert _registry(db) == before
    assert _events(db)[-1][0] == "dispute.withdrawn" and _events(db)[-1][1] == world["code"]
    # Withdrawn, the unit may object again.
    again = _open(
        db,
        world["as_water"],
        settings,
        subject_kind="asset",
        subject_id=world["code"],
        reason="补充证据后再提",
    )
    assert again["state"] == "open"


def test_a_note_or_reason_too_long_is_refused_not_cut_short(
    db: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    view = _open(
        db, world["as_water"], settings, subject_kind="asset", subject_id=world["code"], reason="养护范围有误"
    )
    long = "说" * (disputes.REASON_MAX + 1)
    with pytest.raises(InvalidInput, match="note") as review_error, transaction(db) as session:
        disputes.start_review(session, admin, view["id"], version=view["version"], note=long)
    assert review_error.value.details["field"] == "note"
    with pytest.raises(InvalidInput, match="reason"), transaction(db) as session:
        disputes.withdraw(session, world["as_water"], view["id"], version=view["version"], reason=long)
    with pytest.raises(InvalidInput, match="note"), transaction(db) as session:
        disputes.add_evidence(
            session,
            world["as_water"],
            view["id"],
            [Evidence("p.gif", GIF)],
            version=view["version"],
            note=long,
        )
    # Nothing moved: still open at the version the unit read, with no evidence added.
    with transaction(db) as session:
        after = disputes.get_dispute(session, view["id"])
    assert after["state"] == "open" and after["version"] == view["version"] and not after["evidence"]


# --- the rule ruling -----------------------------------------------------------------------------------


@pytest.fixture
def ruled(db: Engine, admin: Actor) -> dict[str, Any]:
    """A community zone around PINGSHAN whose street lamps are the lamp office's by rule; no asset."""
    lamps = make_unit(db, "坪山区路灯管理所", admin, kind="government").id
    roads = make_unit(db, "坪山区交通运输局", admin, kind="government").id
    add_zone(db, admin, "community", "六联社区", box(-300, -300, 300, 300))
    rule = add_rule(db, admin, zone="六联社区", level="community", class_="0118", unit_id=lamps)
    return {
        "lamps": lamps,
        "roads": roads,
        "rule": rule["id"],
        "as_lamps": Actor("token:lamps", unit_id=lamps),
    }


def test_an_upheld_rule_dispute_replaces_the_rule_and_the_next_resolution_names_the_new_unit(
    db: Engine, admin: Actor, settings: Settings, migrated_url: str, ruled: dict[str, Any]
) -> None:
    from registry.resolution import Resolver, conninfo_from_url

    conninfo, resolver = conninfo_from_url(migrated_url), Resolver(settings)
    assert locate(conninfo, resolver, *PINGSHAN, classes=["0118"])["owner"]["id"] == ruled["lamps"]
    with pytest.raises(Forbidden):
        _open(
            db,
            Actor("x", unit_id=ruled["roads"]),
            settings,
            subject_kind="rule",
            subject_id=str(ruled["rule"]),
            reason="x",
        )
    view = _open(
        db,
        ruled["as_lamps"],
        settings,
        subject_kind="rule",
        subject_id=str(ruled["rule"]),
        reason="道路照明归交通局",
    )
    assert view["roles"] == ["unit"] and view["zone"] == {"level": "community", "name": "六联社区"}
    assert view["class"]["code"] == "0118"
    view = _review(db, admin, settings, view)
    effective = dt.datetime.now(CST) - dt.timedelta(minutes=1)
    view = _decide(db, admin, settings, view, Decision("upheld", "经核实属交通局", ruled["roads"], effective))
    change = view["decision"]["change"]
    assert change["action"] == "replaced" and change["rule_id"] == ruled["rule"]
    with transaction(db) as session:
        from registry import rules

        old, new = rules.get_rule(session, ruled["rule"]), rules.get_rule(session, change["new_rule_id"])
    assert old["valid_to"] is not None and new["unit"]["id"] == ruled["roads"]
    assert f"dispute #{view['id']}" in new["reason"]
    # The replacing version names the dispute that made it, the replaced one the dispute that ended it.
    assert (old["dispute_id"], old["ended_by_dispute_id"]) == (None, view["id"])
    assert (new["dispute_id"], new["ended_by_dispute_id"]) == (view["id"], None)
    answer = locate(conninfo, resolver, *PINGSHAN, classes=["0118"])
    assert (
        answer["owner"]["id"] == ruled["roads"] and answer["matched_rule"]["rule_id"] == change["new_rule_id"]
    )
    # Before the ruling's date, the old rule still answers.
    earlier = locate(conninfo, resolver, *PINGSHAN, classes=["0118"], at=effective - dt.timedelta(minutes=5))
    assert earlier["owner"]["id"] == ruled["lamps"]
    # Events about a subject without an asset go under the dispute.
    assert {s for _, s, _ in _events(db)} == {f"dispute:{view['id']}"}


def test_the_rule_versions_name_the_dispute_that_made_and_ended_them_in_the_api(
    db: Engine, admin: Actor, settings: Settings, client: Any, auth: dict[str, str], ruled: dict[str, Any]
) -> None:
    view = _open(
        db, ruled["as_lamps"], settings, subject_kind="rule", subject_id=str(ruled["rule"]), reason="归交通局"
    )
    view = _review(db, admin, settings, view)
    view = _decide(db, admin, settings, view, Decision("upheld", "经核实属交通局", ruled["roads"]))
    new_id = view["decision"]["change"]["new_rule_id"]
    # An ordinary rule saved by an administrator names no dispute.
    plain = client.post(
        "/api/v1/rules", json={"class": "0118", "unit_id": ruled["lamps"], "reason": "新增"}, headers=auth
    )
    assert plain.status_code == 201, plain.text
    answer = client.get("/api/v1/rules", params={"all_versions": "true"}, headers=auth)
    assert answer.status_code == 200, answer.text
    url = f"/api/v1/disputes/{view['id']}"
    found = {
        item["id"]: (
            item["dispute_id"],
            item["dispute_url"],
            item["ended_by_dispute_id"],
            item["ended_by_dispute_url"],
        )
        for item in answer.json()["items"]
    }
    assert found == {
        ruled["rule"]: (None, None, view["id"], url),
        new_id: (view["id"], url, None, None),
        plain.json()["id"]: (None, None, None, None),
    }


def test_an_upheld_rule_dispute_without_a_new_unit_closes_the_rule(
    db: Engine, admin: Actor, settings: Settings, migrated_url: str, ruled: dict[str, Any]
) -> None:
    from registry.resolution import Resolver, conninfo_from_url

    view = _open(
        db,
        ruled["as_lamps"],
        settings,
        subject_kind="rule",
        subject_id=str(ruled["rule"]),
        reason="规则已过时",
    )
    view = _review(db, admin, settings, view)
    view = _decide(db, admin, settings, view, Decision("upheld", "规则停用"))
    assert view["decision"]["change"]["action"] == "closed"
    with transaction(db) as session:
        from registry import rules

        closed = rules.get_rule(session, ruled["rule"])
    assert closed["valid_to"] is not None
    assert (closed["dispute_id"], closed["ended_by_dispute_id"]) == (None, view["id"])
    assert _naming_disputes(db) == (0, 0, 0, 1)
    answer = locate(conninfo_from_url(migrated_url), Resolver(settings), *PINGSHAN, classes=["0118"])
    assert answer["rule"] != "responsibility_rule"


# --- the complaint ruling ------------------------------------------------------------------------------


def test_a_returned_complaint_becomes_a_dispute_in_the_callers_transaction_and_its_ruling_fixes_the_asset(
    db: Engine, admin: Actor, settings: Settings, migrated_url: str, world: dict[str, Any]
) -> None:
    complaint = _create(
        migrated_url,
        settings,
        complaints.ComplaintIn(source="case_system", code=world["code"], description="路灯不亮"),
    )
    reference = complaint["reference"]
    # open_dispute never commits: the caller's rollback takes it back.
    with db.connect() as conn:
        from sqlalchemy.orm import Session

        with Session(bind=conn) as session:
            disputes.open_dispute(
                session,
                world["as_power"],
                subject_kind="complaint",
                subject_id=reference,
                reason="退件：非我单位",
                settings=settings,
            )
            session.rollback()
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM disputes")).scalar_one() == 0
        dispute_events = text("SELECT count(*) FROM event_outbox WHERE type LIKE 'dispute.%'")
        assert conn.execute(dispute_events).scalar_one() == 0
    with pytest.raises(Forbidden):
        _open(db, world["as_gas"], settings, subject_kind="complaint", subject_id=reference, reason="x")
    view = _open(
        db,
        world["as_power"],
        settings,
        subject_kind="complaint",
        subject_id=reference.lower(),
        reason="退件：非我单位",
    )
    assert view["subject"]["complaint"] == reference and view["subject"]["asset_code"] == world["code"]
    assert view["roles"] == ["owner"]
    view = _review(db, admin, settings, view)
    view = _decide(db, admin, settings, view, Decision("upheld", "应由燃气集团负责", world["gas"]))
    with transaction(db) as session:
        assert assets.get_by_code(session, world["code"]).owner_id == world["gas"]
    dispute_events = [(t, s) for t, s, _ in _events(db) if t.startswith("dispute.")]
    assert dispute_events == [
        ("dispute.opened", world["code"]),
        ("dispute.under_review", world["code"]),
        ("dispute.upheld", world["code"]),
    ]


# --- evidence ------------------------------------------------------------------------------------------


def test_evidence_is_checked_by_its_bytes_and_capped(
    db: Engine, settings: Settings, world: dict[str, Any]
) -> None:
    small = settings.model_copy(
        update={"disputes": DisputeSettings(evidence_max_mib=1, evidence_max_files=2)}
    )

    def attempt(*files: Evidence) -> None:
        _open(
            db,
            world["as_power"],
            small,
            subject_kind="asset",
            subject_id=world["code"],
            reason="x",
            evidence=files,
        )

    with pytest.raises(InvalidInput, match="JPEG, PNG or WebP photo or a PDF"):
        attempt(Evidence("photo.jpg", GIF))
    with pytest.raises(InvalidInput, match="larger than 1 MiB"):
        attempt(Evidence("big.pdf", PDF + b"\x00" * (1024 * 1024)))
    with pytest.raises(InvalidInput, match="empty"):
        attempt(Evidence("empty.png", b""))
    with pytest.raises(InvalidInput, match="at most 2"):
        attempt(Evidence("a.png", PNG), Evidence("b.png", PNG), Evidence("c.png", PNG))
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM disputes")).scalar_one() == 0
    assert _events(db) == []
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8
    view = _open(
        db,
        world["as_power"],
        small,
        subject_kind="asset",
        subject_id=world["code"],
        reason="x",
        evidence=[Evidence("a.webp", webp), Evidence("b.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 16)],
    )
    assert [e["content_type"] for e in view["evidence"]] == ["image/webp", "image/jpeg"]


# --- the API, the ledger, the analysis -----------------------------------------------------------------


def _unit_token(db: Engine, admin: Actor, name: str, unit_id: int) -> dict[str, str]:
    from registry import tokens

    with transaction(db) as session:
        return {
            "Authorization": f"Bearer {tokens.create_token(session, name, 'unit', admin, unit_id=unit_id)}"
        }


def test_the_api_opens_with_evidence_reviews_decides_and_serves_the_files(
    client: Any, db: Engine, admin: Actor, auth: dict[str, str], world: dict[str, Any]
) -> None:
    power = _unit_token(db, admin, "power", world["power"])
    response = client.post(
        "/api/v1/disputes",
        headers=power,
        data={"subject_kind": "asset", "subject_id": world["code"], "reason": "已移交"},
        files={
            "evidence_1": ("协议.pdf", PDF, "application/pdf"),
            "evidence_2": ("现场.png", PNG, "image/png"),
        },
    )
    assert response.status_code == 201, response.text
    view = response.json()
    assert response.headers["location"] == f"/api/v1/disputes/{view['id']}"
    assert [e["url"] for e in view["evidence"]] == [
        f"/api/v1/disputes/{view['id']}/evidence/1",
        f"/api/v1/disputes/{view['id']}/evidence/2",
    ]
    file = client.get(view["evidence"][1]["url"], headers=power)
    assert file.status_code == 200 and file.content == PNG and file.headers["content-type"] == "image/png"
    assert client.get(view["evidence"][1]["url"]).status_code == 401
    bad = client.post(
        "/api/v1/disputes",
        headers=power,
        data={"subject_kind": "asset", "subject_id": world["code"], "reason": "x"},
        files={"evidence_1": ("x.pdf", GIF, "application/pdf")},
    )
    assert bad.status_code == 400 and "PDF" in bad.json()["error"]["message"]
    water = _unit_token(db, admin, "water", world["water"])
    as_json = client.post(
        "/api/v1/disputes",
        headers=water,
        json={"subject_kind": "asset", "subject_id": world["code"], "reason": "非养护范围"},
    )
    assert as_json.status_code == 201 and as_json.json()["evidence"] == []
    gas = _unit_token(db, admin, "gas", world["gas"])
    assert (
        client.post(
            "/api/v1/disputes",
            headers=gas,
            json={"subject_kind": "asset", "subject_id": world["code"], "reason": "x"},
        ).status_code
        == 403
    )
    assert (
        client.post(f"/api/v1/disputes/{view['id']}/review", headers=power, json={"version": 1}).status_code
        == 403
    )
    reviewed = client.post(f"/api/v1/disputes/{view['id']}/review", headers=auth, json={"version": 1})
    assert reviewed.status_code == 200 and reviewed.json()["state"] == "under_review"
    stale = client.post(f"/api/v1/disputes/{view['id']}/review", headers=auth, json={"version": 1})
    assert stale.status_code == 409
    decided = client.post(
        f"/api/v1/disputes/{view['id']}/decision",
        headers=auth,
        json={"version": 2, "outcome": "upheld", "reason": "协议有效", "new_unit_id": world["gas"]},
    )
    assert decided.status_code == 200, decided.text
    assert client.get(f"/api/v1/assets/{world['code']}", headers=auth).json()["owner"]["id"] == world["gas"]
    withdrawn = client.post(
        f"/api/v1/disputes/{as_json.json()['id']}/withdraw", headers=water, json={"version": 1}
    )
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "withdrawn"
    one = client.get(f"/api/v1/disputes/{view['id']}", headers=water).json()
    assert [h["state"] for h in one["history"]] == ["open", "under_review", "upheld"]
    listed = client.get("/api/v1/disputes", headers=auth, params={"state": "upheld"}).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == view["id"]
    by_unit = client.get("/api/v1/disputes", headers=auth, params={"unit": world["water"]}).json()
    assert [d["state"] for d in by_unit["items"]] == ["withdrawn"]
    assert client.get("/api/v1/disputes", headers=auth, params={"overdue": "true"}).json()["total"] == 0
    assert (
        client.get(
            "/api/v1/disputes", headers=auth, params={"class": "0118", "subject_kind": "asset"}
        ).json()["total"]
        == 2
    )
    assert client.get("/api/v1/disputes", headers=auth, params={"subject_kind": "rule"}).json()["total"] == 0
    future = (dt.datetime.now(CST) + dt.timedelta(days=1)).isoformat()
    assert client.get("/api/v1/disputes", headers=auth, params={"opened_from": future}).json()["total"] == 0
    assert client.get("/api/v1/disputes", headers=auth, params={"opened_to": future}).json()["total"] == 2
    assert client.get("/api/v1/disputes").status_code == 401


def test_the_ledger_exports_as_csv_and_xlsx_with_chinese_headers_and_local_times(
    client: Any, db: Engine, admin: Actor, settings: Settings, auth: dict[str, str], world: dict[str, Any]
) -> None:
    first = _open(
        db, world["as_power"], settings, subject_kind="asset", subject_id=world["code"], reason="已移交燃气"
    )
    first = _review(db, admin, settings, first)
    _decide(db, admin, settings, first, Decision("upheld", "协议有效", world["gas"]))
    _open(
        db, world["as_water"], settings, subject_kind="asset", subject_id=world["code"], reason="养护合同到期"
    )
    response = client.get("/api/v1/disputes/export", headers=auth, params={"format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [r["状态"] for r in rows] == ["异议成立", "已提出"]
    assert rows[0]["提出单位"] == "深圳供电局有限公司" and rows[0]["异议角色"] == "权属单位"
    assert (
        rows[0]["变更内容"] == "权属单位移交给 深圳市燃气集团股份有限公司"
        and rows[0]["裁决理由"] == "协议有效"
    )
    opened_local = dt.datetime.fromisoformat(first["opened_at"]).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
    assert rows[0]["提出时间"] == opened_local and rows[0]["智慧码"] == world["code"]
    assert rows[1]["是否逾期"] == "否" and rows[1]["裁决时间"] == ""
    only_open = client.get("/api/v1/disputes/export", headers=auth, params={"format": "csv", "state": "open"})
    assert len(list(csv.DictReader(io.StringIO(only_open.content.decode("utf-8-sig"))))) == 1
    xlsx = client.get("/api/v1/disputes/export", headers=auth, params={"format": "xlsx"})
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content), read_only=True)["异议台账"]
    table = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert table[0] == list(disputes.LEDGER_COLUMNS)
    assert [r[1] for r in table[1:]] == ["异议成立", "已提出"] and table[1][12] == opened_local
    assert client.get("/api/v1/disputes/export", headers=auth, params={"format": "pdf"}).status_code == 422


def test_the_analysis_groups_by_class_unit_zone_and_outcome(
    client: Any, db: Engine, admin: Actor, settings: Settings, auth: dict[str, str], world: dict[str, Any]
) -> None:
    add_zone(db, admin, "community", "六联社区", box(-300, -300, 300, 300))
    other = make_asset(db, admin, owner_id=world["power"], geometry=pt(1000))  # outside the zone
    upheld = _open(
        db, world["as_power"], settings, subject_kind="asset", subject_id=world["code"], reason="a"
    )
    rejected = _open(
        db, world["as_water"], settings, subject_kind="asset", subject_id=world["code"], reason="b"
    )
    _open(db, world["as_power"], settings, subject_kind="asset", subject_id=other.code, reason="c")
    _decide(
        db, admin, settings, _review(db, admin, settings, upheld), Decision("upheld", "成立", world["gas"])
    )
    _decide(db, admin, settings, _review(db, admin, settings, rejected), Decision("rejected", "驳回"))
    stats = client.get("/api/v1/disputes/stats", headers=auth).json()
    assert stats["total"] == 3 and stats["upheld_rate"] == 0.5
    assert {o["state"]: o["count"] for o in stats["by_outcome"]} == {
        "open": 1,
        "under_review": 0,
        "upheld": 1,
        "rejected": 1,
        "withdrawn": 0,
    }
    (lamps,) = stats["by_class"]
    assert lamps["class"]["code"] == "0118" and lamps["total"] == 3 and lamps["decided"] == 2
    assert lamps["upheld_rate"] == 0.5 and 0 <= lamps["median_days_to_decision"] < 0.01
    units = {g["unit"]["id"]: g for g in stats["by_unit"]}
    assert units[world["power"]]["total"] == 2 and units[world["power"]]["upheld_rate"] == 1.0
    assert units[world["water"]]["rejected"] == 1 and units[world["water"]]["upheld_rate"] == 0.0
    zones = {(g["zone"] or {}).get("name"): g["total"] for g in stats["by_zone"]}
    assert zones == {"六联社区": 2, None: 1}
    filtered = client.get("/api/v1/disputes/stats", headers=auth, params={"zone": "六联社区"}).json()
    assert filtered["total"] == 2


def test_the_cli_lists_and_exports_the_ledger_in_chinese(
    db: Engine, settings: Settings, migrated_url: str, tmp_path: Any, world: dict[str, Any]
) -> None:
    import os

    from tests.conftest import ADMIN_TOKEN
    from tests.test_cli import run

    env = {k: v for k, v in os.environ.items() if k not in ("SMARTCODE_LANG", "SMARTCODE_TIMEZONE")}
    env.update(SMARTCODE_DATABASE_URL=migrated_url, SMARTCODE_API_TOKEN=ADMIN_TOKEN)
    view = _open(
        db, world["as_power"], settings, subject_kind="asset", subject_id=world["code"], reason="非我单位"
    )
    listed = run("disputes", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "提出单位" in listed.stdout and "已提出" in listed.stdout and "深圳供电局有限公司" in listed.stdout
    assert view["due_on"] in listed.stdout
    overdue = run("disputes", "overdue", env=env)
    assert overdue.returncode == 0 and "没有符合条件的异议" in overdue.stdout
    target = tmp_path / "台账.xlsx"
    exported = run("disputes", "export", "--output", str(target), "--state", "open", env=env)
    assert exported.returncode == 0, exported.stderr
    assert "已导出 1 条异议" in exported.stderr
    rows = list(load_workbook(target, read_only=True)["异议台账"].iter_rows(values_only=True))
    assert rows[0][0] == "异议编号" and rows[1][0] == view["id"]
    bad = run("disputes", "list", "--state", "closed", env=env)
    assert bad.returncode != 0 and "unknown state" in bad.stderr


def test_a_complaint_routed_by_a_rule_is_corrected_on_the_rule(
    db: Engine, admin: Actor, settings: Settings, migrated_url: str, ruled: dict[str, Any]
) -> None:
    lon, lat = PINGSHAN
    complaint = _create(
        migrated_url,
        settings,
        complaints.ComplaintIn(
            source="case_system", x=lon, y=lat, category="路灯不亮", description="路灯不亮"
        ),
    )
    view = _open(
        db,
        ruled["as_lamps"],
        settings,
        subject_kind="complaint",
        subject_id=complaint["reference"],
        reason="退件",
    )
    assert view["subject"]["rule_id"] == ruled["rule"] and view["subject"]["asset_code"] is None
    assert view["zone"]["name"] == "六联社区"
    view = _review(db, admin, settings, view)
    view = _decide(db, admin, settings, view, Decision("upheld", "应由交通局负责", ruled["roads"]))
    assert view["decision"]["change"]["action"] == "replaced"
    with transaction(db) as session:
        from registry import rules

        assert (
            rules.get_rule(session, view["decision"]["change"]["new_rule_id"])["unit"]["id"] == ruled["roads"]
        )


def test_a_unit_holding_both_roles_disputes_both_or_names_one(
    db: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    both = make_asset(db, admin, owner_id=world["power"], maintainer_id=world["power"])
    view = _open(
        db, world["as_power"], settings, subject_kind="asset", subject_id=both.code, reason="整体移交"
    )
    assert view["roles"] == ["owner", "maintainer"]
    with pytest.raises(InvalidInput, match="not owner"):
        _open(
            db,
            world["as_water"],
            settings,
            subject_kind="asset",
            subject_id=world["code"],
            reason="x",
            role="owner",
        )
    view = _review(db, admin, settings, view)
    _decide(db, admin, settings, view, Decision("upheld", "整体移交燃气", world["gas"]))
    with transaction(db) as session:
        asset = assets.get_by_code(session, both.code)
        assert (asset.owner_id, asset.maintainer_id) == (world["gas"], world["gas"])
    only = _open(
        db,
        world["as_water"],
        settings,
        subject_kind="asset",
        subject_id=world["code"],
        reason="x",
        role="maintainer",
    )
    assert only["roles"] == ["maintainer"]


# --- evidence added while the dispute waits (补充证据) ----------------------------------------------------


def _stored(db: Engine) -> tuple[Any, ...]:
    """What an addition writes: the files, the disputes' versions, the history, the audit, the events."""
    with db.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM dispute_evidence), "
                    "(SELECT string_agg(concat_ws(',', id, state, version), ';' ORDER BY id) FROM disputes), "
                    "(SELECT count(*) FROM dispute_history), "
                    "(SELECT count(*) FROM audit_log WHERE entity = 'dispute'), "
                    "(SELECT count(*) FROM event_outbox WHERE type LIKE 'dispute.%')"
                )
            ).one()
        )


def _add(client: Any, headers: dict[str, str], dispute: int, version: Any, *files: Any, **fields: Any) -> Any:
    return client.post(
        f"/api/v1/disputes/{dispute}/evidence",
        headers=headers,
        data={"version": str(version), **fields},
        files={f"evidence_{n}": f for n, f in enumerate(files, start=1)},
    )


def test_evidence_added_after_opening_is_listed_served_and_in_the_history_until_the_decision(
    client: Any, db: Engine, admin: Actor, settings: Settings, auth: dict[str, str], world: dict[str, Any]
) -> None:
    power = _unit_token(db, admin, "power", world["power"])
    view = _open(
        db,
        world["as_power"],
        settings,
        subject_kind="asset",
        subject_id=world["code"],
        reason="已移交燃气",
        evidence=[Evidence("现场.png", PNG)],
    )
    url = f"/api/v1/disputes/{view['id']}"
    # A day later the objecting unit finds the hand-over contract.
    added = _add(client, power, view["id"], 1, ("移交合同.pdf", PDF, "application/pdf"), note="补充移交合同")
    assert added.status_code == 200, added.text
    view = added.json()
    assert view["state"] == "open" and view["version"] == 2 and view["evidence_count"] == 2
    assert [(e["seq"], e["file_name"], e["added_by"], e["url"]) for e in view["evidence"]] == [
        (1, "现场.png", "token:power", f"{url}/evidence/1"),
        (2, "移交合同.pdf", "token:power", f"{url}/evidence/2"),
    ]
    file = client.get(view["evidence"][1]["url"], headers=auth)
    assert (
        file.status_code == 200 and file.content == PDF and file.headers["content-type"] == "application/pdf"
    )
    entry = view["history"][-1]
    assert (
        entry["event"] == "evidence" and entry["actor"] == "token:power" and entry["reason"] == "补充移交合同"
    )
    assert entry["state"] == "open" and entry["version"] == 2 and entry["at"]
    assert [(f["seq"], f["file_name"], f["content_type"]) for f in entry["evidence"]] == [
        (2, "移交合同.pdf", "application/pdf")
    ]
    assert view["history"][0]["event"] == "state" and view["history"][0]["evidence"] is None
    # The reviewer read version 1: the new evidence moved it, so a decision on what they saw is refused.
    assert client.post(f"{url}/review", headers=auth, json={"version": 1}).status_code == 409
    reviewed = client.post(f"{url}/review", headers=auth, json={"version": 2}).json()
    # Under review, the reviewer (an administrator) adds the site photo they asked for.
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8
    photo = _add(client, auth, view["id"], reviewed["version"], ("复核照片.webp", webp, "image/webp"))
    assert photo.status_code == 200, photo.text
    assert [e["seq"] for e in photo.json()["evidence"]] == [1, 2, 3]
    assert client.get(f"{url}/evidence/3", headers=power).content == webp
    with db.connect() as conn:
        audited = conn.execute(
            text(
                "SELECT actor, reason, details FROM audit_log WHERE entity = 'dispute' "
                "AND action = 'add_evidence' ORDER BY id"
            )
        ).all()
    assert [(a.actor, a.reason, [f["seq"] for f in a.details["files"]]) for a in audited] == [
        ("token:power", "补充移交合同", [2]),
        ("admin", None, [3]),
    ]
    added_events = [(s, d) for t, s, d in _events(db) if t == "dispute.evidence_added"]
    assert [(s, d["version"], [f["seq"] for f in d["evidence"]]) for s, d in added_events] == [
        (world["code"], 2, [2]),
        (world["code"], 4, [3]),
    ]
    decided = client.post(
        f"{url}/decision", headers=auth, json={"version": 4, "outcome": "rejected", "reason": "合同未生效"}
    )
    assert decided.status_code == 200, decided.text
    # Decided: no more evidence, said in both languages, and nothing is stored.
    before = _stored(db)
    late = _add(client, power, view["id"], 5, ("迟到.png", PNG, "image/png"))
    assert late.status_code == 409
    message = late.json()["error"]["message"]
    assert "不能再补充证据" in message and "only while it is open or under review" in message
    assert _stored(db) == before
    history = client.get(url, headers=power).json()["history"]
    assert [(h["version"], h["event"], h["state"]) for h in history] == [
        (1, "state", "open"),
        (2, "evidence", "open"),
        (3, "state", "under_review"),
        (4, "evidence", "under_review"),
        (5, "state", "rejected"),
    ]


def test_only_the_objecting_unit_or_an_administrator_adds_evidence(
    client: Any, db: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    view = _open(
        db, world["as_power"], settings, subject_kind="asset", subject_id=world["code"], reason="非我单位"
    )
    before = _stored(db)
    png = ("现场.png", PNG, "image/png")
    # The maintainer is named by the asset but is not a party to power's dispute.
    for name, unit in (("water", world["water"]), ("gas", world["gas"])):
        refused = _add(client, _unit_token(db, admin, name, unit), view["id"], 1, png)
        assert refused.status_code == 403 and "only the unit that raised the dispute" in refused.text
    reader = _reader_token(db, admin)
    assert _add(client, reader, view["id"], 1, png).status_code == 403
    assert _add(client, {}, view["id"], 1, png).status_code == 401
    assert _stored(db) == before
    with pytest.raises(Forbidden), transaction(db) as session:
        disputes.add_evidence(session, world["as_water"], view["id"], [Evidence("a.png", PNG)], version=1)


def _reader_token(db: Engine, admin: Actor) -> dict[str, str]:
    from registry import tokens

    with transaction(db) as session:
        return {"Authorization": f"Bearer {tokens.create_token(session, 'reader', 'reader', admin)}"}


def test_added_evidence_is_checked_like_the_opening_and_capped_with_what_is_attached(
    client: Any, db: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    small = settings.model_copy(
        update={"disputes": DisputeSettings(evidence_max_mib=1, evidence_max_files=2)}
    )
    view = _open(
        db,
        world["as_power"],
        small,
        subject_kind="asset",
        subject_id=world["code"],
        reason="x",
        evidence=[Evidence("a.png", PNG)],
    )
    before = _stored(db)

    def attempt(*files: Evidence, version: int = 1) -> None:
        with transaction(db) as session:
            disputes.add_evidence(
                session, world["as_power"], view["id"], files, version=version, settings=small
            )

    # One file is attached: two more would be three.
    with pytest.raises(InvalidInput, match="at most 2 evidence files per dispute; it has 1 already"):
        attempt(Evidence("b.png", PNG), Evidence("c.pdf", PDF))
    with pytest.raises(InvalidInput, match="JPEG, PNG or WebP photo or a PDF"):
        attempt(Evidence("fake.pdf", GIF))
    with pytest.raises(InvalidInput, match="larger than 1 MiB"):
        attempt(Evidence("big.pdf", PDF + b"\x00" * (1024 * 1024)))
    with pytest.raises(InvalidInput, match="at least one"):
        attempt()
    with pytest.raises(StaleVersion, match="version 1, not 7"):
        attempt(Evidence("b.png", PNG), version=7)
    assert _stored(db) == before
    # Over the API with the deployment's defaults: a GIF named .pdf is refused, nothing stored.
    power = _unit_token(db, admin, "power", world["power"])
    bad = _add(client, power, view["id"], 1, ("合同.pdf", GIF, "application/pdf"))
    assert bad.status_code == 400 and "PDF" in bad.json()["error"]["message"]
    assert _add(client, power, view["id"], "一", ("b.png", PNG, "image/png")).status_code == 400
    as_form = client.post(f"/api/v1/disputes/{view['id']}/evidence", headers=power, data={"version": "1"})
    assert as_form.status_code == 400 and "multipart/form-data" in as_form.json()["error"]["message"]
    no_file = client.post(
        f"/api/v1/disputes/{view['id']}/evidence",
        headers=power,
        files={"version": (None, "1"), "note": (None, "x")},
    )
    assert no_file.status_code == 400 and "at least one evidence file" in no_file.json()["error"]["message"]
    assert _stored(db) == before
    attempt(Evidence("b.pdf", PDF))
    with pytest.raises(InvalidInput, match="it has 2 already"):
        attempt(Evidence("c.png", PNG), version=2)


def test_the_database_keeps_evidence_to_pending_disputes_and_every_version_in_the_history(
    db: Engine, owner_engine: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    view = _open(db, world["as_power"], settings, subject_kind="asset", subject_id=world["code"], reason="x")
    # A version moved without saying who changed what is refused at commit.
    with pytest.raises(Exception, match="has no history entry"), db.begin() as conn:
        conn.execute(text("UPDATE disputes SET version = version + 1"))
    with transaction(db) as session:
        disputes.withdraw(session, world["as_power"], view["id"], version=1)
    # A withdrawn dispute takes no evidence, even from the owner role writing directly.
    with (
        pytest.raises(Exception, match="evidence is added only before its decision"),
        owner_engine.begin() as conn,
    ):
        conn.execute(
            text(
                "INSERT INTO dispute_evidence (dispute_id, seq, file_name, content_type, size_bytes, sha256, "
                "data, added_by) VALUES (:d, 1, 'a.png', 'image/png', 1, 'x', '\\x00', 'owner')"
            ),
            {"d": view["id"]},
        )
    with pytest.raises(Conflict, match="withdrawn"), transaction(db) as session:
        disputes.add_evidence(session, world["as_power"], view["id"], [Evidence("a.png", PNG)], version=2)


def test_the_cli_adds_evidence_as_the_administrator(
    db: Engine, settings: Settings, migrated_url: str, tmp_path: Any, world: dict[str, Any]
) -> None:
    import os

    from tests.conftest import ADMIN_TOKEN
    from tests.test_cli import run

    env = {k: v for k, v in os.environ.items() if k not in ("SMARTCODE_LANG", "SMARTCODE_TIMEZONE")}
    env.update(SMARTCODE_DATABASE_URL=migrated_url, SMARTCODE_API_TOKEN=ADMIN_TOKEN)
    view = _open(
        db, world["as_power"], settings, subject_kind="asset", subject_id=world["code"], reason="非我单位"
    )
    contract, fake = tmp_path / "移交合同.pdf", tmp_path / "photo.png"
    contract.write_bytes(PDF)
    fake.write_bytes(GIF)
    refused = run("disputes", "evidence", str(view["id"]), str(fake), "--version", "1", env=env)
    assert refused.returncode == 1 and "PDF" in refused.stderr
    added = run(
        "disputes",
        "evidence",
        str(view["id"]),
        str(contract),
        "--version",
        "1",
        "--note",
        "移交合同",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert "已为异议" in added.stdout and "版本 2" in added.stdout
    with transaction(db) as session:
        shown = disputes.get_dispute(session, view["id"], settings=settings)
    assert [(e["file_name"], e["added_by"].startswith("cli:")) for e in shown["evidence"]] == [
        ("移交合同.pdf", True)
    ]
    assert shown["history"][-1]["event"] == "evidence" and shown["history"][-1]["reason"] == "移交合同"
    stale = run("disputes", "evidence", str(view["id"]), str(contract), "--version", "1", env=env)
    assert stale.returncode == 1 and "version 2, not 1" in stale.stderr


def test_evidence_added_later_may_be_as_large_as_the_evidence_cap_not_the_json_cap(
    client: Any, db: Engine, admin: Actor, settings: Settings, world: dict[str, Any]
) -> None:
    # The JSON body cap (SMARTCODE_MAX_BODY_KB, 4 MiB) stood in front of POST /disputes/{id}/evidence:
    # a 5 MiB site photo, well under the 10 MiB evidence cap, was refused with 413 "larger than 4096 KiB".
    power = _unit_token(db, admin, "power", world["power"])
    view = _open(db, world["as_power"], settings, subject_kind="asset", subject_id=world["code"], reason="x")
    photo = PNG + b"\x00" * (5 * 1024 * 1024)
    added = _add(client, power, view["id"], 1, ("现场.png", photo, "image/png"))
    assert added.status_code == 200, added.text
    assert [e["size"] for e in added.json()["evidence"]] == [len(photo)]
    # Over the evidence cap: refused by the service, naming the file; nothing stored.
    too_big = PDF + b"\x00" * (settings.disputes.evidence_max_mib * 1024 * 1024)
    refused = _add(client, power, view["id"], 2, ("合同.pdf", too_big, "application/pdf"))
    assert refused.status_code == 400 and "合同.pdf" in refused.json()["error"]["message"]
    assert client.get(f"/api/v1/disputes/{view['id']}", headers=power).json()["evidence_count"] == 1
