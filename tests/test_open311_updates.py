"""FixMyStreet's Open311 update extension at /open311/v2/servicerequestupdates: status changes in and out.

JSON answers are validated against the schemas in tests/schemas/georeport-v2/ (the two for the
extension were written for this project from the fields FixMyStreet's client reads and sends).
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from registry.db import Actor
from tests.conftest import ADMIN_TOKEN
from tests.test_complaint_status import World, build_world, file_complaint
from tests.test_open311 import conforms

BASE = "/open311/v2"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def world(db: Engine, admin: Actor) -> World:
    """An asset owned by one unit and maintained by another, a third unit, and everyone's tokens."""
    return build_world(db, admin)


def _key(world: World, who: str) -> str:
    return world.headers[who].get("Authorization", "").removeprefix("Bearer ")


def _update(client: TestClient, fmt: str = "json", **fields: str) -> Any:
    fields.setdefault("updated_datetime", "2026-12-06T10:00:00+08:00")
    return client.post(f"{BASE}/servicerequestupdates.{fmt}", data=fields)


def _complaint(client: TestClient, reference: str) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/complaints/{reference}", headers=ADMIN).json())


def test_not_councils_responsibility_is_a_return_and_shows_as_closed(
    client: TestClient, db: Engine, world: World
) -> None:
    reference = file_complaint(client, world.code)
    posted = _update(
        client,
        api_key=_key(world, "maintainer"),
        service_request_id=reference,
        update_id="fms-1001",
        status="NOT_COUNCILS_RESPONSIBILITY",
        description="该路灯属于小区物业",
        email="officer@example.cn",
        first_name="王",
        last_name="工",
    )
    assert posted.status_code == 200, posted.text
    update_id = conforms(posted.json(), "update-posted")[0]["update_id"]
    view = _complaint(client, reference)
    assert view["status"] == "returned" and view["status_reason"] == "该路灯属于小区物业"
    assert view["status_unit_id"] == world.maintainer
    assert view["history"][-1]["update_id"] == update_id and view["history"][-1]["update_ref"] == "fms-1001"
    with db.connect() as conn:
        events = conn.execute(
            text("SELECT data FROM event_outbox WHERE type = 'complaint.status_changed'")
        ).scalars()
        assert [e["status"] for e in events] == ["returned"]

    # GeoReport: a returned request is closed, and status_notes says why.
    one = conforms(client.get(f"{BASE}/requests/{reference}.json").json(), "requests")[0]
    assert one["status"] == "closed" and one["status_notes"] == "已退件：该路灯属于小区物业"
    closed = client.get(f"{BASE}/requests.json", params={"status": "closed"}).json()
    assert [r["service_request_id"] for r in closed] == [reference]

    # The same update posted again (a client retrying) is answered, not applied twice.
    again = _update(
        client,
        api_key=_key(world, "maintainer"),
        service_request_id=reference,
        update_id="fms-1001",
        status="NOT_COUNCILS_RESPONSIBILITY",
        description="该路灯属于小区物业",
    )
    assert again.status_code == 200 and again.json()[0]["update_id"] == update_id
    assert _complaint(client, reference)["version"] == view["version"]

    # Returned is final: a later update is refused the GeoReport way.
    late = _update(
        client, api_key=ADMIN_TOKEN, service_request_id=reference, status="FIXED", description="已修复"
    )
    assert late.status_code == 400
    error = conforms(late.json(), "errors")[0]
    assert error["code"] == 400 and "最终状态" in error["description"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("OPEN", "accepted"),
        ("INVESTIGATING", "accepted"),
        ("IN_PROGRESS", "accepted"),
        ("ACTION_SCHEDULED", "accepted"),
        ("FIXED", "closed"),
        ("CLOSED", "closed"),
        ("closed", "closed"),  # GeoReport's plain statuses, any case
        ("NO_FURTHER_ACTION", "closed"),
        ("UNABLE_TO_FIX", "closed"),
        ("DUPLICATE", "closed"),
        ("INTERNAL_REFERRAL", "returned"),
        ("not councils responsibility", "returned"),
    ],
)
def test_extended_statuses_map_to_complaint_statuses(
    client: TestClient, world: World, status: str, expected: str
) -> None:
    reference = file_complaint(client, world.code)
    posted = _update(
        client, api_key=_key(world, "reader"), service_request_id=reference, status=status, description="说明"
    )
    assert posted.status_code == 200, posted.text
    assert _complaint(client, reference)["status"] == expected


def test_a_return_reason_sent_as_unescaped_utf8_is_kept_as_written(client: TestClient, world: World) -> None:
    # `curl -d 'description=该井盖属燃气公司'` sends UTF-8 unescaped; read as Latin-1 it was stored as
    # mojibake without a word, and the dispute it opened carried the garbled reason.
    reference = file_complaint(client, world.code)
    body = (
        f"api_key={_key(world, 'maintainer')}&service_request_id={reference}"
        "&status=NOT_COUNCILS_RESPONSIBILITY&description=该路灯属于小区物业"
    )
    posted = client.post(
        f"{BASE}/servicerequestupdates.json",
        content=body.encode(),
        headers={"content-type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert posted.status_code == 200, posted.text
    assert _complaint(client, reference)["status_reason"] == "该路灯属于小区物业"


def test_updates_are_listed_in_json_and_xml_between_dates(client: TestClient, world: World) -> None:
    first = file_complaint(client, world.code)
    second = file_complaint(client, world.code)
    key = _key(world, "reader")
    assert _update(client, api_key=key, service_request_id=first, status="IN_PROGRESS").status_code == 200
    assert (
        _update(
            client, api_key=key, service_request_id=first, status="FIXED", description="已更换灯泡"
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"/api/v1/complaints/{second}/status", headers=ADMIN, json={"status": "accepted", "version": 1}
        ).status_code
        == 200
    )

    updates = conforms(client.get(f"{BASE}/servicerequestupdates.json").json(), "service-request-updates")
    assert [(u["service_request_id"], u["status"]) for u in updates] == [
        (first, "IN_PROGRESS"),
        (first, "CLOSED"),
        (second, "IN_PROGRESS"),
    ]  # oldest first; a complaint's arrival is not an update
    closing = updates[1]
    assert closing["description"] == "已办结：已更换灯泡" and closing["external_status_code"] == "closed"
    assert closing["updated_datetime"].endswith("+08:00")

    now = dt.datetime.now(dt.UTC)
    window = {
        "start_date": (now - dt.timedelta(hours=1)).isoformat(),
        "end_date": (now + dt.timedelta(hours=1)).isoformat(),
    }
    assert len(client.get(f"{BASE}/servicerequestupdates.json", params=window).json()) == 3
    past = {"start_date": "2020-01-01T00:00:00+08:00", "end_date": "2020-01-02T00:00:00+08:00"}
    assert client.get(f"{BASE}/servicerequestupdates.json", params=past).json() == []
    only = client.get(f"{BASE}/servicerequestupdates.json", params={"service_request_id": second}).json()
    assert [u["service_request_id"] for u in only] == [second]

    root = ET.fromstring(client.get(f"{BASE}/servicerequestupdates.xml", params=window).content)
    assert root.tag == "service_requests_updates"
    rows = root.findall("request_update")
    assert [r.findtext("update_id") for r in rows] == [u["update_id"] for u in updates]
    assert rows[1].findtext("status") == "CLOSED" and rows[1].findtext("service_request_id") == first

    bad = client.get(f"{BASE}/servicerequestupdates.json", params={"start_date": "last week"})
    assert bad.status_code == 400 and "start_date" in conforms(bad.json(), "errors")[0]["description"]


def test_a_posted_update_answers_in_xml(client: TestClient, world: World) -> None:
    reference = file_complaint(client, world.code)
    posted = _update(
        client,
        "xml",
        api_key=_key(world, "owner"),
        service_request_id=reference,
        update_id="77",
        status="NOT_COUNCILS_RESPONSIBILITY",
        description="非本单位设施",
    )
    assert posted.status_code == 200, posted.text
    root = ET.fromstring(posted.content)
    assert root.tag == "service_request_updates"
    assert (
        root.findtext("request_update/update_id") == _complaint(client, reference)["history"][-1]["update_id"]
    )


@pytest.mark.parametrize(
    ("who", "fields", "status", "said"),
    [
        ("anonymous", {"status": "OPEN"}, 403, "api_key"),
        ("bad", {"status": "OPEN"}, 403, "api_key"),
        ("other", {"status": "OPEN"}, 403, ""),  # not routed to this unit
        ("owner", {"status": "FIXED"}, 403, ""),  # closing is the case system's
        ("reader", {}, 400, "status"),
        ("reader", {"status": "REOPEN"}, 400, "status"),
        ("reader", {"status": "NOT_COUNCILS_RESPONSIBILITY"}, 400, "reason"),  # no description
        ("reader", {"status": "OPEN", "updated_datetime": "soon"}, 400, "updated_datetime"),
        ("reader", {"status": "OPEN", "service_request_id": ""}, 400, "service_request_id"),
        ("reader", {"status": "OPEN", "service_request_id": "SC-20200101-999999"}, 404, ""),
    ],
)
def test_update_errors_follow_the_specification(
    client: TestClient, db: Engine, world: World, who: str, fields: dict[str, str], status: int, said: str
) -> None:
    reference = file_complaint(client, world.code)
    form = {"service_request_id": reference, **fields}
    if who == "bad":
        form["api_key"] = "not-a-token"
    elif who != "anonymous":
        form["api_key"] = _key(world, who)
    answer = _update(client, **form)
    assert answer.status_code == status, answer.text
    error = conforms(answer.json(), "errors")[0]
    assert error["code"] == status and said in error["description"]
    assert _complaint(client, reference)["status"] == "received"
    with db.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM event_outbox WHERE type = 'complaint.status_changed'")
            ).scalar()
            == 0
        )
    xml = _update(client, "xml", **form)
    root = ET.fromstring(xml.content)
    assert xml.status_code == status and root.tag == "errors" and root.findtext("error/code") == str(status)
