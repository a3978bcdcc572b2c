"""Regressions of the security review (issue 11 B): codes used up, units created, the passer-by view,
responsibility pushed on a unit, tokens that could not be listed or revoked, coordinates in logs."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from common.settings import Settings
from importers.batches import rollback_batch
from registry import tokens
from registry.db import Actor, transaction
from tests.conftest import ADMIN_TOKEN
from tests.helpers import make_asset, make_unit, point
from tests.test_cli import run as run_cli
from tests.test_import_pipeline import CITY, POWER, WATER, lamp, run, write_geojson

IMPORTS = "/api/v1/imports"


def _token(db: Engine, admin: Actor, name: str, role: str, unit_id: int | None = None) -> dict[str, str]:
    with transaction(db) as session:
        secret = tokens.create_token(session, name, role, admin, unit_id=unit_id)
    return {"Authorization": f"Bearer {secret}"}


def _wait(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    for _ in range(200):
        job = client.get(f"{IMPORTS}/{job_id}", headers=headers).json()
        if job.get("done"):
            return job
        time.sleep(0.05)
    raise AssertionError("import job did not finish")


def _upload(client: TestClient, headers: dict[str, str], path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        started = client.post(IMPORTS, headers=headers, files={"file": (path.name, handle)})
    assert started.status_code == 202, started.text
    return _wait(client, headers, started.json()["id"])


def _counter(db: Engine, class_code: str) -> int | None:
    with db.connect() as conn:
        return conn.execute(
            text("SELECT next_serial FROM code_serials WHERE class_code = :c"), {"c": class_code}
        ).scalar()


@pytest.fixture
def units(db: Engine, admin: Actor) -> dict[str, int]:
    """The power company, the water group and the supervising bureau."""
    return {
        "power": make_unit(db, POWER, admin, kind="utility", phone="95598").id,
        "water": make_unit(db, WATER, admin, kind="utility", phone="96868").id,
        "city": make_unit(db, CITY, admin, kind="government").id,
    }


# --- defect 1: a unit token used up a class's codes ---------------------------------------------------


def test_a_unit_import_cannot_adopt_a_code_and_use_up_the_class(
    client: TestClient, db: Engine, admin: Actor, units: dict[str, int], tmp_path: Path
) -> None:
    make_asset(db, admin, class_code="0122", owner_id=units["power"])
    before = _counter(db, "0122")
    power = _token(db, admin, "power", "unit", units["power"])
    booth = lamp(114.3470, 22.6960, OBJNAME="电话亭", OBJCODE="4403100122999999")
    job = _upload(client, power, write_geojson(tmp_path / "booth.geojson", [booth]))
    assert job["status"] == "rejected", job  # its only row was rejected: nothing written
    assert job["report"]["counts"]["created"] == 0 and job["report"]["counts"]["rejected"] == 1
    assert (
        "only administrators register assets under an existing code" in job["report"]["problems"][0]["reason"]
    )
    assert _counter(db, "0122") == before
    created = client.post(
        "/api/v1/assets",
        headers=power,
        json={"class_code": "0122", "geometry": point(114.3471, 22.6961), "owner_id": units["power"]},
    )
    assert created.status_code == 201, created.text


def test_rolling_a_batch_back_puts_the_serial_counters_back(
    db: Engine, settings: Settings, admin: Actor, units: dict[str, int], tmp_path: Path
) -> None:
    def booth(lon: float, **props: Any) -> dict[str, Any]:
        return lamp(lon, 22.6960, OBJNAME="电话亭", **props)

    def register() -> int:
        return make_asset(db, admin, class_code="0122", owner_id=units["power"]).serial

    assert register() == 1
    numbered = run(db, settings, write_geojson(tmp_path / "a.geojson", [booth(114.3470), booth(114.3471)]))
    assert numbered.created == 2 and _counter(db, "0122") == 4
    adopted = run(
        db, settings, write_geojson(tmp_path / "b.geojson", [booth(114.3472, OBJCODE="4403100122999999")])
    )
    assert adopted.created == 1 and _counter(db, "0122") == 1_000_000  # every later registration: 顺序码已满
    with transaction(db) as session:
        rollback_batch(session, adopted.batch_id or 0, admin)
    assert _counter(db, "0122") == 4
    assert register() == 4
    with transaction(db) as session:
        rollback_batch(session, numbered.batch_id or 0, admin)
    assert _counter(db, "0122") == 2
    # Serials 2 and 3 stay with the batch's decommissioned assets, 4 with the registration: next is 5.
    assert register() == 5


# --- defect 4: a unit's import created units ----------------------------------------------------------


def test_a_unit_import_naming_an_unknown_unit_is_rejected_with_suggestions(
    client: TestClient, db: Engine, admin: Actor, units: dict[str, int], tmp_path: Path
) -> None:
    power = _token(db, admin, "power", "unit", units["power"])
    typo = lamp(114.3470, 22.6960, DEPTNAME3="深圳市水务集团有限公")  # the water group, last character lost
    unknown = lamp(114.3480, 22.6970, DEPTNAME1="某某完全不同的单位")
    fine = lamp(114.3490, 22.6980)
    job = _upload(client, power, write_geojson(tmp_path / "units.geojson", [typo, unknown, fine]))
    counts = job["report"]["counts"]
    assert counts["created"] == 1 and counts["rejected"] == 2, job
    reasons = {p["row"]: p["reason"] for p in job["report"]["problems"]}
    assert "not a registered unit" in reasons[1] and WATER in reasons[1]
    assert "not a registered unit" in reasons[2]
    assert job["report"]["units_created"] == []
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM units")).scalar() == 3


# --- defect 6: the passer-by view ---------------------------------------------------------------------


@pytest.fixture
def decommissioned(client: TestClient, db: Engine, admin: Actor, units: dict[str, int]) -> str:
    """A lamp decommissioned with a free-text reason that is nobody's business."""
    asset = make_asset(
        db, admin, owner_id=units["power"], maintainer_id=units["power"], note="key under the mat"
    )
    done = client.post(
        f"/api/v1/assets/{asset.code}/decommission",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"version": asset.version, "reason": "vandalised by the neighbour at No. 12"},
    )
    assert done.status_code == 200, done.text
    return asset.code


def _leaks(body: Any) -> list[str]:
    text_body = str(body)
    return [
        s for s in ("neighbour", "key under", "114.34", "22.69", "position", "credit_code") if s in text_body
    ]


def test_anonymous_callers_get_no_coordinates_or_reasons(client: TestClient, decommissioned: str) -> None:
    asset = client.get(f"/api/v1/assets/{decommissioned}")
    resolved = client.get("/api/v1/resolve", params={"code": decommissioned})
    for response in (asset, resolved):
        assert response.status_code == 200, response.text
        assert _leaks(response.json()) == []
    assert asset.json()["owner"] == {"name": POWER, "phone": "95598"}
    assert resolved.json()["owner"] == {"name": POWER, "phone": "95598"}
    assert asset.json()["in_use"] is False and asset.json()["class"]["code"] == "0118"
    # With a token, the full record.
    full = client.get(f"/api/v1/assets/{decommissioned}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert "neighbour" in full.json()["decommission_reason"]


@pytest.fixture
def limited(db: Engine, settings: Settings, migrated_url: str) -> Iterator[TestClient]:
    """The app with 3 anonymous lookups a minute."""
    from api.app import create_app

    tight = settings.model_copy(
        update={"api": settings.api.model_copy(update={"anonymous_rate_per_minute": 3})}
    )
    with TestClient(create_app(tight, url=migrated_url)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/api/v1/assets/{code}", "/api/v1/resolve?code={code}"])
def test_anonymous_lookups_are_rate_limited(limited: TestClient, db: Engine, admin: Actor, path: str) -> None:
    code = make_asset(db, admin).code
    answers = [limited.get(path.format(code=code)).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    refused = limited.get(path.format(code=code))
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "RateLimited"
    # Callers with a token are not counted.
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert limited.get(path.format(code=code), headers=auth).status_code == 200


# --- defect 7: responsibility pushed on a unit ---------------------------------------------------------


def test_a_unit_hand_over_is_a_proposal_until_the_other_unit_accepts(
    client: TestClient, db: Engine, admin: Actor, units: dict[str, int]
) -> None:
    power = _token(db, admin, "power", "unit", units["power"])
    water = _token(db, admin, "water", "unit", units["water"])
    asset = make_asset(db, admin, owner_id=units["power"])
    handed = client.post(
        f"/api/v1/assets/{asset.code}/units",
        headers=power,
        json={"version": asset.version, "owner_id": units["water"], "reason": "sold with the street"},
    )
    assert handed.status_code == 202, handed.text
    assert handed.json()["owner"]["id"] == units["power"]  # nothing changed yet
    (proposal,) = handed.json()["proposals"]
    assert proposal["to_unit_id"] == units["water"] and proposal["status"] == "pending"
    # The proposing unit cannot accept its own proposal; the receiving unit sees and accepts it.
    assert client.post(f"/api/v1/proposals/{proposal['id']}/accept", headers=power).status_code == 403
    listed = client.get("/api/v1/proposals", headers=water).json()["items"]
    assert [p["id"] for p in listed] == [proposal["id"]]
    accepted = client.post(f"/api/v1/proposals/{proposal['id']}/accept", headers=water, json={"note": "ok"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    now = client.get(f"/api/v1/assets/{asset.code}", headers=water).json()
    assert now["owner"]["id"] == units["water"]
    again = client.post(f"/api/v1/proposals/{proposal['id']}/decline", headers=water)
    assert again.status_code == 409
    with db.connect() as conn:
        audited = (
            conn.execute(text("SELECT action FROM audit_log WHERE entity = 'proposal' ORDER BY id"))
            .scalars()
            .all()
        )
    assert audited == ["propose", "accept"]


def test_a_declined_proposal_changes_nothing_and_an_admin_hand_over_is_direct(
    client: TestClient, db: Engine, admin: Actor, units: dict[str, int]
) -> None:
    power = _token(db, admin, "power", "unit", units["power"])
    water = _token(db, admin, "water", "unit", units["water"])
    asset = make_asset(db, admin, owner_id=units["power"])
    handed = client.post(
        f"/api/v1/assets/{asset.code}/units",
        headers=power,
        json={"version": asset.version, "maintainer_id": units["water"], "reason": "you maintain it now"},
    )
    (proposal,) = handed.json()["proposals"]
    declined = client.post(f"/api/v1/proposals/{proposal['id']}/decline", headers=water)
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    assert client.get(f"/api/v1/assets/{asset.code}", headers=power).json()["maintainer"] is None
    direct = client.post(
        f"/api/v1/assets/{asset.code}/units",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"version": asset.version, "maintainer_id": units["water"], "reason": "contract 2026-17"},
    )
    assert direct.status_code == 200 and direct.json()["proposals"] == []
    assert direct.json()["maintainer"]["id"] == units["water"]


def test_a_unit_registering_with_another_maintainer_makes_a_proposal(
    client: TestClient, db: Engine, admin: Actor, units: dict[str, int]
) -> None:
    power = _token(db, admin, "power", "unit", units["power"])
    water = _token(db, admin, "water", "unit", units["water"])
    created = client.post(
        "/api/v1/assets",
        headers=power,
        json={
            "class_code": "0118",
            "geometry": point(),
            "owner_id": units["power"],
            "maintainer_id": units["water"],
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["maintainer"] is None
    (proposal,) = created.json()["proposals"]
    assert proposal["kind"] == "registration" and proposal["changes"] == {"maintainer_id": units["water"]}
    assert client.post(f"/api/v1/proposals/{proposal['id']}/accept", headers=water).status_code == 200
    code = created.json()["code"]
    assert client.get(f"/api/v1/assets/{code}", headers=water).json()["maintainer"]["id"] == units["water"]


# --- defect 11: tokens listed and revoked; no coordinates in access logs ------------------------------


def test_tokens_can_be_listed_and_revoked_by_an_administrator(
    client: TestClient, db: Engine, admin: Actor, units: dict[str, int]
) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    power = _token(db, admin, "power", "unit", units["power"])
    assert client.get("/api/v1/tokens", headers=power).status_code == 403
    listed = client.get("/api/v1/tokens", headers=auth).json()["items"]
    assert [(t["name"], t["role"], t["unit_id"]) for t in listed] == [("power", "unit", units["power"])]
    assert "token" not in listed[0] and "token_hash" not in listed[0]
    # Used once on /resolve (cached there), then revoked: it stops working at once, everywhere.
    code = make_asset(db, admin, owner_id=units["power"]).code
    assert client.get("/api/v1/resolve", params={"code": code}, headers=power).status_code == 200
    revoked = client.post("/api/v1/tokens/power/revoke", headers=auth, json={"reason": "laptop lost"})
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert client.get("/api/v1/resolve", params={"code": code}, headers=power).status_code == 401
    assert client.get(f"/api/v1/assets/{code}", headers=power).status_code == 401
    assert client.post("/api/v1/tokens/power/revoke", headers=auth).status_code == 409
    assert client.get("/api/v1/tokens", headers=auth).json()["items"] == []


def test_the_access_log_keeps_no_complaint_coordinates(client: TestClient) -> None:
    # uvicorn's access logger formats (client, method, path with query, version, status).
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/api/v1/resolve?lon=114.34661&lat=22.69532&category=x", "1.1", 200),
        None,
    )
    logger = logging.getLogger("uvicorn.access")
    assert all(f.filter(record) for f in logger.filters)
    line = record.getMessage()
    assert "114.34661" not in line and "22.69532" not in line and "/api/v1/resolve" in line
    other = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, "%s", ("/api/v1/assets?class=0118",), None
    )
    assert all(f.filter(other) for f in logger.filters) and other.getMessage() == "/api/v1/assets?class=0118"


def test_the_cli_lists_and_revokes_tokens(db: Engine, admin: Actor, migrated_url: str) -> None:
    _token(db, admin, "dispatcher", "reader")
    env = {**os.environ, "SMARTCODE_DATABASE_URL": migrated_url, "SMARTCODE_API_TOKEN": ADMIN_TOKEN}
    listed = run_cli("token", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)] == ["dispatcher"]
    assert run_cli("token", "revoke", "dispatcher", "--reason", "left", env=env).returncode == 0
    assert json.loads(run_cli("token", "list", "--json", env=env).stdout) == []
    again = run_cli("token", "revoke", "dispatcher", env=env)
    assert again.returncode == 1 and "already revoked" in again.stderr


def test_a_unit_import_cannot_make_another_unit_the_maintainer(
    client: TestClient, db: Engine, admin: Actor, units: dict[str, int], tmp_path: Path
) -> None:
    power = _token(db, admin, "power", "unit", units["power"])
    agreed = make_asset(db, admin, owner_id=units["power"], maintainer_id=units["water"])
    rows = [
        lamp(114.3470, 22.6960, DEPTNAME3=WATER),  # pushed on the water group: refused
        lamp(114.3480, 22.6970, DEPTNAME3=WATER, OBJCODE=agreed.code[:16]),  # already so: fine
        lamp(114.3490, 22.6980),  # maintained by power itself
    ]
    job = _upload(client, power, write_geojson(tmp_path / "maintainers.geojson", rows))
    counts = job["report"]["counts"]
    assert counts["rejected"] == 1 and counts["created"] == 1, job
    (refused,) = job["report"]["problems"]
    assert refused["row"] == 1 and "without its consent" in refused["reason"]
    with db.connect() as conn:
        pushed = conn.execute(
            text("SELECT count(*) FROM assets WHERE maintainer_id = :w"), {"w": units["water"]}
        ).scalar()
    assert pushed == 1


def test_the_same_hand_over_is_not_proposed_twice(
    client: TestClient, db: Engine, admin: Actor, units: dict[str, int]
) -> None:
    power = _token(db, admin, "power", "unit", units["power"])
    asset = make_asset(db, admin, owner_id=units["power"])
    body = {"version": asset.version, "owner_id": units["water"], "reason": "sold with the street"}
    assert client.post(f"/api/v1/assets/{asset.code}/units", headers=power, json=body).status_code == 202
    again = client.post(f"/api/v1/assets/{asset.code}/units", headers=power, json=body)
    assert again.status_code == 409 and "already proposed" in again.json()["error"]["message"]


def test_a_mixed_hand_over_applies_its_own_part_and_proposes_the_rest(
    client: TestClient, db: Engine, admin: Actor, units: dict[str, int]
) -> None:
    power = _token(db, admin, "power", "unit", units["power"])
    water = _token(db, admin, "water", "unit", units["water"])
    asset = make_asset(db, admin, owner_id=units["power"], maintainer_id=units["water"])
    handed = client.post(
        f"/api/v1/assets/{asset.code}/units",
        headers=power,
        json={
            "version": asset.version,
            "owner_id": units["water"],
            "maintainer_id": units["power"],
            "effective_at": "2026-01-01T00:00:00+08:00",
            "reason": "swap",
        },
    )
    assert handed.status_code == 202, handed.text
    assert (
        handed.json()["maintainer"]["id"] == units["power"] and handed.json()["owner"]["id"] == units["power"]
    )
    (proposal,) = handed.json()["proposals"]
    accepted = client.post(f"/api/v1/proposals/{proposal['id']}/accept", headers=water)
    assert accepted.status_code == 200, accepted.text
    assert client.get(f"/api/v1/assets/{asset.code}", headers=water).json()["owner"]["id"] == units["water"]
