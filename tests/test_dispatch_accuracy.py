"""分拨准确性: per unit, complaints routed, returned as not ours, disputed, upheld against the registry."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from registry.db import Actor
from tests.test_complaint_status import ADMIN, World, _post, build_world, file_complaint


def _rule(client: TestClient, dispute_id: int, outcome: str, **extra: Any) -> None:
    reviewed = client.post(f"/api/v1/disputes/{dispute_id}/review", headers=ADMIN, json={"version": 1})
    assert reviewed.status_code == 200, reviewed.text
    body = {"version": 2, "outcome": outcome, "reason": "核查结论", **extra}
    decided = client.post(f"/api/v1/disputes/{dispute_id}/decision", headers=ADMIN, json=body)
    assert decided.status_code == 200, decided.text


def test_accuracy_counts_only_returns_whose_dispute_was_upheld_against_the_dispatch(
    client: TestClient, db: Engine, admin: Actor
) -> None:
    world: World = build_world(db, admin)
    first, second, _third = (file_complaint(client, world.code) for _ in range(3))
    # The maintainer returns the first (and is right: upheld); the owner returns the second (wrongly).
    for reference, who in ((first, "maintainer"), (second, "owner")):
        answer = _post(client, reference, world.headers[who], status="returned", version=1, reason="非本单位")
        assert answer.status_code == 200, answer.text
    disputes = {
        d["unit"]["id"]: d["id"] for d in client.get("/api/v1/disputes", headers=ADMIN).json()["items"]
    }
    _rule(client, disputes[world.maintainer], "upheld", new_unit_id=world.other)
    _rule(client, disputes[world.owner], "rejected")

    report = client.get("/api/v1/dispatch-accuracy", headers=world.headers["reader"])
    assert report.status_code == 200, report.text
    by_unit = {u["unit"]["id"]: u for u in report.json()["units"]}
    maintainer, owner = by_unit[world.maintainer], by_unit[world.owner]
    assert (maintainer["routed"], maintainer["returned"], maintainer["disputed"], maintainer["upheld"]) == (
        3,
        1,
        1,
        1,
    )
    assert maintainer["accuracy"] == round(2 / 3, 4) and maintainer["return_rate"] == round(1 / 3, 4)
    assert (owner["routed"], owner["returned"], owner["upheld"], owner["accuracy"]) == (3, 1, 0, 1.0)
    assert world.other not in by_unit, "the unit that took over was routed nothing in the period"
    assert report.json()["totals"]["routed"] == 6  # each complaint counts for both units it was routed to

    one = client.get("/api/v1/dispatch-accuracy", headers=ADMIN, params={"unit": world.owner}).json()
    assert [u["unit"]["id"] for u in one["units"]] == [world.owner]
    past = client.get(
        "/api/v1/dispatch-accuracy", headers=ADMIN, params={"from": "2020-01-01", "to": "2020-12-31"}
    )
    assert past.json()["units"] == []
    assert client.get("/api/v1/dispatch-accuracy").status_code == 401
    bad = client.get(
        "/api/v1/dispatch-accuracy", headers=ADMIN, params={"from": "2026-12-31", "to": "2026-01-01"}
    )
    assert bad.status_code == 400


def test_dates_out_of_any_sensible_range_are_input_errors(client: TestClient) -> None:
    for params in ({"to": "0001-01-01"}, {"from": "9999-12-31"}):
        answer = client.get("/api/v1/dispatch-accuracy", headers=ADMIN, params=params)
        assert answer.status_code == 400, answer.text
