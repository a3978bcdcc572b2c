"""Complaint status updates (签收 / 退件 / 办结): transitions, stale versions, who may, events, history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from common.errors import Conflict, Forbidden, InvalidInput, StaleVersion
from registry import complaint_status, tokens
from registry.db import Actor, transaction
from tests.conftest import ADMIN_TOKEN
from tests.helpers import make_asset, make_unit

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class World:
    """An asset owned by the power company and maintained by the water company; a token for each."""

    code: str
    owner: int
    maintainer: int
    other: int
    headers: dict[str, dict[str, str]]


@pytest.fixture
def world(db: Engine, admin: Actor) -> World:
    """Three units, one asset, unit tokens for each unit and a reader token (the case system)."""
    return build_world(db, admin)


def build_world(db: Engine, admin: Actor) -> World:
    """The :class:`World` of these tests, registered in ``db``."""
    owner = make_unit(db, "深圳供电局有限公司", admin, kind="utility").id
    maintainer = make_unit(db, "深圳市水务集团有限公司", admin, kind="utility").id
    other = make_unit(db, "深圳市燃气集团股份有限公司", admin, kind="utility").id
    asset = make_asset(db, admin, owner_id=owner, maintainer_id=maintainer)
    headers = {"admin": ADMIN, "anonymous": {}}
    with transaction(db) as session:
        for name, unit_id in (("owner", owner), ("maintainer", maintainer), ("other", other)):
            secret = tokens.create_token(session, name, "unit", admin, unit_id=unit_id)
            headers[name] = {"Authorization": f"Bearer {secret}"}
        secret = tokens.create_token(session, "12345-case-system", "reader", admin)
        headers["reader"] = {"Authorization": f"Bearer {secret}"}
    return World(asset.code, owner, maintainer, other, headers)


def file_complaint(client: TestClient, code: str) -> str:
    """A complaint about ``code`` posted by the case system through Open311; its reference."""
    form = {"api_key": ADMIN_TOKEN, "service_code": "路灯不亮", "attribute[asset_code]": code}
    answer = client.post("/open311/v2/requests.json", data=form)
    assert answer.status_code == 200, answer.text
    return str(answer.json()[0]["service_request_id"])


def _post(client: TestClient, reference: str, headers: dict[str, str], **body: Any) -> Any:
    return client.post(f"/api/v1/complaints/{reference}/status", headers=headers, json=body)


def _events(db: Engine, kind: str) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT subject, data FROM event_outbox WHERE type = :t ORDER BY id"), {"t": kind}
        ).all()
    return [{"subject": r[0], **r[1]} for r in rows]


def _move(db: Engine, reference: str, *statuses: str) -> None:
    admin = Actor("admin", admin=True)
    for status in statuses:
        with transaction(db) as session:
            complaint_status.change_status(
                session, reference, status, actor=admin, reason="原因" if status == "returned" else None
            )


ALL = ("received", "accepted", "returned", "closed")
PATHS = {"received": (), "accepted": ("accepted",), "returned": ("returned",), "closed": ("closed",)}


@pytest.mark.parametrize("start", ALL)
@pytest.mark.parametrize("target", ALL)
def test_every_transition_is_allowed_or_refused_as_the_table_says(
    client: TestClient, db: Engine, world: World, start: str, target: str
) -> None:
    reference = file_complaint(client, world.code)
    _move(db, reference, *PATHS[start])
    version = client.get(f"/api/v1/complaints/{reference}", headers=ADMIN).json()["version"]
    answer = _post(client, reference, ADMIN, status=target, version=version, reason="不属本单位")
    allowed = target in complaint_status.TRANSITIONS[start]
    if target == "received":
        assert answer.status_code == 422  # not a status anyone sets
    elif allowed:
        assert answer.status_code == 200, answer.text
        view = answer.json()
        assert view["status"] == target and view["version"] == version + 1
        assert view["history"][-1]["status"] == target and view["history"][-1]["actor"] == "admin"
        assert answer.headers["etag"] == f'"{version + 1}"'
    else:
        assert answer.status_code == 409, answer.text
        message = answer.json()["error"]["message"]
        assert message.startswith("诉求") and "不能" in message  # Chinese first, says what is wrong
    after = client.get(f"/api/v1/complaints/{reference}", headers=ADMIN).json()
    assert after["version"] == (version + 1 if allowed and target != "received" else version)


def test_a_return_needs_a_reason_and_records_it_with_the_unit(
    client: TestClient, db: Engine, world: World
) -> None:
    reference = file_complaint(client, world.code)
    refused = _post(client, reference, world.headers["maintainer"], status="returned", version=1)
    assert refused.status_code == 400 and "reason" in refused.json()["error"]["message"]
    reason = "该井盖属燃气公司"
    maintainer = world.headers["maintainer"]
    answer = _post(client, reference, maintainer, status="returned", version=1, reason=reason)
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert view["status"] == "returned" and view["status_label"] == "已退件"
    assert view["status_reason"] == "该井盖属燃气公司" and view["status_unit_id"] == world.maintainer
    last = view["history"][-1]
    assert last["reason"] == "该井盖属燃气公司" and last["unit_id"] == world.maintainer
    assert last["actor"] == "token:maintainer"
    assert [h["status"] for h in view["history"]] == ["received", "returned"]


def test_a_stale_version_is_refused_not_merged(client: TestClient, db: Engine, world: World) -> None:
    reference = file_complaint(client, world.code)
    assert _post(client, reference, ADMIN, status="accepted", version=1).status_code == 200
    stale = _post(client, reference, ADMIN, status="closed", version=1)
    assert stale.status_code == 409
    error = stale.json()["error"]
    assert error["type"] == "StaleVersion" and error["details"]["current_version"] == 2
    assert "第 2 版" in error["message"]
    # If-Match, the ETag of the last read: a stale one is 412.
    etag = client.get(f"/api/v1/complaints/{reference}", headers=ADMIN).headers["etag"]
    assert etag == '"2"'
    precondition = _post(client, reference, {**ADMIN, "If-Match": '"1"'}, status="closed")
    assert precondition.status_code == 412
    assert precondition.json()["error"]["details"]["current_version"] == 2
    # Without any version the update is refused: it might overwrite what it never saw.
    assert _post(client, reference, ADMIN, status="closed").status_code == 400
    mixed = _post(client, reference, {**ADMIN, "If-Match": '"2"'}, status="closed", version=1)
    assert mixed.status_code == 400
    assert client.get(f"/api/v1/complaints/{reference}", headers=ADMIN).json()["status"] == "accepted"
    done = _post(client, reference, {**ADMIN, "If-Match": etag}, status="closed")
    assert done.status_code == 200 and done.json()["status_label"] == "已办结"


@pytest.mark.parametrize(
    ("who", "status", "expected"),
    [
        ("owner", "accepted", 200),
        ("maintainer", "accepted", 200),
        ("maintainer", "returned", 200),
        ("other", "accepted", 403),
        ("other", "returned", 403),
        ("owner", "closed", 403),  # units accept or return; closing is the case system's word
        ("reader", "closed", 200),  # the case system's token
        ("reader", "returned", 200),
        ("anonymous", "accepted", 401),
        ("admin", "closed", 200),
    ],
)
def test_who_may_change_a_complaint(
    client: TestClient, db: Engine, world: World, who: str, status: str, expected: int
) -> None:
    reference = file_complaint(client, world.code)
    answer = _post(client, reference, world.headers[who], status=status, version=1, reason="不属本单位")
    assert answer.status_code == expected, answer.text
    current = client.get(f"/api/v1/complaints/{reference}", headers=ADMIN).json()
    assert current["status"] == (status if expected == 200 else "received")
    changed = _events(db, "complaint.status_changed")
    assert len(changed) == (1 if expected == 200 else 0)  # nothing announced for a refused change


def test_another_unit_is_refused_in_the_service_too(db: Engine, client: TestClient, world: World) -> None:
    reference = file_complaint(client, world.code)
    with pytest.raises(Forbidden, match=reference), transaction(db) as session:
        complaint_status.change_status(
            session, reference, "accepted", actor=Actor("token:other", unit_id=world.other)
        )
    with pytest.raises(InvalidInput, match="not routed"), transaction(db) as session:
        complaint_status.change_status(
            session, reference, "returned", actor=Actor("cs"), reason="x", unit_id=world.other
        )


def test_events_are_written_with_the_change_and_not_on_a_refused_or_rolled_back_one(
    client: TestClient, db: Engine, world: World
) -> None:
    reference = file_complaint(client, world.code)
    created, resolved = _events(db, "complaint.created"), _events(db, "complaint.resolved")
    assert [e["reference"] for e in created] == [reference] and created[0]["subject"] == world.code
    assert created[0]["source"] == "open311" and created[0]["asset_code"] == world.code
    assert resolved[0]["owner"]["id"] == world.owner and resolved[0]["maintainer"]["id"] == world.maintainer
    assert resolved[0]["rule"] and resolved[0]["subject"] == world.code

    # A change rolled back with its transaction leaves no event (and no change).
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction(db) as session:
        complaint_status.change_status(
            session, reference, "accepted", actor=Actor("admin", admin=True), expected_version=1
        )
        raise Boom
    assert _events(db, "complaint.status_changed") == []

    answer = _post(client, reference, world.headers["owner"], status="accepted", version=1)
    assert answer.status_code == 200
    (event,) = _events(db, "complaint.status_changed")
    assert event["subject"] == world.code
    assert event["reference"] == reference and event["source"] == "open311"
    assert (event["status"], event["previous_status"], event["version"]) == ("accepted", "received", 2)
    assert event["actor"] == "token:owner" and event["unit_id"] == world.owner
    assert (event["owner_id"], event["maintainer_id"]) == (world.owner, world.maintainer)
    assert event["asset_code"] == world.code

    refused = _post(client, reference, ADMIN, status="accepted", version=1)  # stale
    assert refused.status_code == 409
    assert len(_events(db, "complaint.status_changed")) == 1


def test_the_service_works_in_the_callers_transaction(db: Engine, client: TestClient, world: World) -> None:
    reference = file_complaint(client, world.code)
    admin = Actor("admin", admin=True)
    with transaction(db) as session:
        view = complaint_status.change_status(session, reference, "accepted", actor=admin, expected_version=1)
        assert view["version"] == 2
        # Not committed yet: another connection still sees the old state.
        with db.connect() as conn:
            assert (
                conn.execute(
                    text("SELECT status FROM complaints WHERE reference = :r"), {"r": reference}
                ).scalar()
                == "received"
            )
        with pytest.raises(StaleVersion):
            complaint_status.change_status(session, reference, "closed", actor=admin, expected_version=1)
    with pytest.raises(Conflict, match="最终状态"), transaction(db) as session:
        complaint_status.change_status(session, reference, "returned", actor=admin, reason="x")
        complaint_status.change_status(session, reference, "closed", actor=admin)


def test_an_assets_complaints_show_their_status_and_history(
    client: TestClient, db: Engine, world: World
) -> None:
    first = file_complaint(client, world.code)
    second = file_complaint(client, world.code)
    assert _post(client, first, ADMIN, status="accepted", version=1).status_code == 200
    assert _post(client, first, ADMIN, status="closed", version=2).status_code == 200
    items = client.get(f"/api/v1/assets/{world.code}/complaints", headers=ADMIN).json()["items"]
    assert [i["reference"] for i in items] == [second, first]
    assert items[0]["status"] == "received" and [h["status"] for h in items[0]["history"]] == ["received"]
    assert items[1]["status_label"] == "已办结"
    assert [h["status"] for h in items[1]["history"]] == ["received", "accepted", "closed"]
    assert client.get(f"/api/v1/assets/{world.code}/complaints").status_code == 401


def test_staff_signed_in_on_the_map_see_the_assets_complaints_on_the_scan_page(
    client: TestClient, world: World
) -> None:
    from api.deps import SESSION_COOKIE
    from tests.test_map import login

    reference = file_complaint(client, world.code)
    returned = _post(client, reference, ADMIN, status="returned", version=1, reason="该灯杆属小区物业")
    assert returned.status_code == 200

    public = client.get(f"/c/{world.code}")
    assert public.status_code == 200 and 'id="staff-complaints"' not in public.text
    assert reference not in public.text and "该灯杆属小区物业" not in public.text

    # A forged session cookie is a passer-by.
    client.cookies.set(SESSION_COOKIE, "admin.9999999999.nonce.forged")
    assert reference not in client.get(f"/c/{world.code}").text
    client.cookies.clear()

    login(client, world.headers["reader"]["Authorization"].removeprefix("Bearer "))
    staff = client.get(f"/c/{world.code}")
    assert staff.status_code == 200 and 'id="staff-complaints"' in staff.text
    assert f'data-reference="{reference}" data-status="returned"' in staff.text
    assert "已退件" in staff.text and "该灯杆属小区物业" in staff.text
    assert staff.headers["cache-control"] == "private, no-store"  # never kept for the next visitor
    assert "report-form" in staff.text  # the public part is all still there

    client.cookies.clear()
    assert reference not in client.get(f"/c/{world.code}").text


def test_two_updates_racing_on_one_version_one_wins_the_other_is_refused(
    client: TestClient, db: Engine, world: World
) -> None:
    import threading

    reference = file_complaint(client, world.code)
    admin = Actor("admin", admin=True)
    outcome: list[BaseException | dict[str, Any]] = []

    def second() -> None:
        try:
            with transaction(db) as session:
                outcome.append(
                    complaint_status.change_status(
                        session, reference, "returned", actor=admin, reason="不属本单位", expected_version=1
                    )
                )
        except BaseException as exc:
            outcome.append(exc)

    with transaction(db) as session:
        complaint_status.change_status(session, reference, "accepted", actor=admin, expected_version=1)
        racer = threading.Thread(target=second)
        racer.start()
        racer.join(0.5)
        assert racer.is_alive()  # waits on the first update's row lock instead of reading version 1
    racer.join(10)
    (result,) = outcome
    assert isinstance(result, StaleVersion) and result.details["current_version"] == 2
    view = client.get(f"/api/v1/complaints/{reference}", headers=ADMIN).json()
    assert view["status"] == "accepted" and [h["status"] for h in view["history"]] == ["received", "accepted"]


def test_a_return_as_not_ours_opens_a_dispute_for_the_returning_unit(
    client: TestClient, db: Engine, world: World
) -> None:
    # The case system relays the maintainer's 退件 through FixMyStreet's update extension.
    reference = file_complaint(client, world.code)
    relayed = client.post(
        "/open311/v2/servicerequestupdates.json",
        data={
            "api_key": world.headers["reader"]["Authorization"].removeprefix("Bearer "),
            "service_request_id": reference,
            "update_id": "fms-1",
            "status": "NOT_COUNCILS_RESPONSIBILITY",
            "description": "该井盖属燃气公司",
        },
    )
    assert relayed.status_code == 200, relayed.text
    items = client.get("/api/v1/disputes", headers=ADMIN, params={"subject_kind": "complaint"}).json()[
        "items"
    ]
    assert len(items) == 1
    dispute = items[0]
    assert dispute["subject"]["kind"] == "complaint" and dispute["subject"]["complaint"] == reference
    assert dispute["state"] == "open" and "该井盖属燃气公司" in dispute["reason"]
    # The case system named no unit: the dispute is the maintainer's, the unit that acts on the case.
    assert dispute["unit"]["id"] == world.maintainer
    assert [e["reference"] for e in _events(db, "complaint.status_changed")] == [reference]
    assert len(_events(db, "dispute.opened")) == 1


def test_a_return_by_the_unit_itself_is_its_dispute_and_a_failed_return_opens_none(
    client: TestClient, db: Engine, world: World
) -> None:
    reference = file_complaint(client, world.code)
    no_reason = _post(client, reference, world.headers["maintainer"], status="returned", version=1)
    assert no_reason.status_code == 400
    assert _events(db, "dispute.opened") == []
    answer = _post(
        client, reference, world.headers["maintainer"], status="returned", version=1, reason="不归我们养护"
    )
    assert answer.status_code == 200, answer.text
    answer = _post(
        client,
        file_complaint(client, world.code),
        world.headers["owner"],
        status="returned",
        version=1,
        reason="非本单位资产",
    )
    assert answer.status_code == 200, answer.text
    items = client.get("/api/v1/disputes", headers=ADMIN).json()["items"]
    assert {(d["unit"]["id"], d["reason"].split(": ")[-1]) for d in items} == {
        (world.maintainer, "不归我们养护"),
        (world.owner, "非本单位资产"),
    }


def test_a_complaint_placed_by_its_location_moves_through_its_statuses(
    client: TestClient, db: Engine, world: World
) -> None:
    # A located complaint carries geom_m, a generated column (migration 0020) that a BEFORE trigger
    # sees as NULL in NEW: the guard took every status change of such a complaint for an edit of what
    # arrived and answered 500. Scan-page reports always have a location, so none could be accepted.
    from tests.test_resolve import at_m

    lon, lat = at_m(1, 0)
    form = {"api_key": ADMIN_TOKEN, "service_code": "路灯不亮", "lat": str(lat), "long": str(lon)}
    posted = client.post("/open311/v2/requests.json", data=form)
    assert posted.status_code == 200, posted.text
    reference = posted.json()[0]["service_request_id"]
    for version, status in ((1, "accepted"), (2, "closed")):
        answer = _post(client, reference, ADMIN, status=status, version=version)
        assert answer.status_code == 200, answer.text
    with db.connect() as conn:
        assert conn.execute(
            text("SELECT geom_m IS NOT NULL FROM complaints WHERE reference = :r"), {"r": reference}
        ).scalar()
    # What arrived is still guarded: the location cannot be edited.
    with pytest.raises(Exception, match="kept as it arrived"), db.begin() as conn:
        conn.execute(
            text("UPDATE complaints SET geom = ST_Translate(geom, 0.001, 0) WHERE reference = :r"),
            {"r": reference},
        )
