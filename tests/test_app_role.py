"""The service runs as a role that appends to history and the audit log but can never rewrite them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

from common.settings import Settings
from registry.db import current_revision, migrate
from registry.embedded import APP_ROLE
from tests.helpers import point

REWRITES = [
    "UPDATE audit_log SET reason = 'nothing happened'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "UPDATE asset_history SET actor = 'someone else'",
    "DELETE FROM asset_history",
    "TRUNCATE asset_history",
    "UPDATE asset_responsibility SET owner_id = NULL",
    "DELETE FROM asset_responsibility",
    "DELETE FROM resolution_log",
    "ALTER TABLE assets DISABLE TRIGGER USER",
    "DROP TRIGGER assets_after_update ON assets",
    "CREATE TABLE public.sneaky (id int)",
]


def _handed_over(client: TestClient, auth: dict[str, str]) -> str:
    """An asset with history: registered, handed over, decommissioned."""
    a = client.post("/api/v1/units", json={"name": "中国电信深圳分公司"}, headers=auth).json()
    b = client.post("/api/v1/units", json={"name": "中国铁塔深圳分公司"}, headers=auth).json()
    created = client.post(
        "/api/v1/assets", json={"class_code": "0118", "geometry": point(), "owner_id": a["id"]}, headers=auth
    )
    assert created.status_code == 201, created.text
    code = created.json()["code"]
    moved = client.post(
        f"/api/v1/assets/{code}/units",
        json={"version": 1, "owner_id": b["id"], "reason": "存量杆塔移交铁塔公司"},
        headers=auth,
    )
    assert moved.status_code == 200, moved.text
    gone = client.post(
        f"/api/v1/assets/{code}/decommission", json={"version": 2, "reason": "拆除"}, headers=auth
    )
    assert gone.status_code == 200, gone.text
    return code


def test_the_app_connects_as_the_service_role(client: TestClient) -> None:
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar_one() == APP_ROLE
        assert (
            conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one()
            is False
        )


@pytest.mark.parametrize("statement", REWRITES)
def test_history_and_audit_cannot_be_rewritten_by_the_service(
    client: TestClient, auth: dict[str, str], statement: str
) -> None:
    _handed_over(client, auth)
    client.get("/api/v1/resolve", params={"code": "4403100118000001"})
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with pytest.raises(ProgrammingError) as refused, engine.begin() as conn:
        conn.execute(text(statement))
    assert "permission denied" in str(refused.value) or "must be owner" in str(refused.value)


def test_the_service_still_appends_history_and_audit(
    client: TestClient, auth: dict[str, str], owner_engine: Engine
) -> None:
    code = _handed_over(client, auth)
    history = client.get(f"/api/v1/assets/{code}/history", headers=auth).json()
    assert [v["version"] for v in history["versions"]] == [1, 2, 3]
    assert len(history["responsibility"]) == 2
    with owner_engine.connect() as conn:
        actions = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    assert actions >= 2  # the two units


@pytest.mark.parametrize("reason", [None, "", "   ", " x "])
def test_hand_over_decommission_and_unit_changes_need_a_reason(
    client: TestClient, auth: dict[str, str], reason: str | None
) -> None:
    unit = client.post("/api/v1/units", json={"name": "坪山街道办事处"}, headers=auth).json()
    code = client.post(
        "/api/v1/assets", json={"class_code": "0118", "geometry": point()}, headers=auth
    ).json()["code"]
    extra = {} if reason is None else {"reason": reason}
    answers = {
        "hand-over": client.post(
            f"/api/v1/assets/{code}/units", json={"version": 1, "owner_id": unit["id"], **extra}, headers=auth
        ),
        "decommission": client.post(
            f"/api/v1/assets/{code}/decommission", json={"version": 1, **extra}, headers=auth
        ),
        "unit change": client.patch(
            f"/api/v1/units/{unit['id']}", json={"version": 1, "phone": "0755-1", **extra}, headers=auth
        ),
    }
    got = {what: r.status_code for what, r in answers.items()}
    assert got == {"hand-over": 422, "decommission": 422, "unit change": 422}
    assert all("reason" in r.json()["error"]["message"] for r in answers.values())


def test_serving_as_the_service_role_finds_the_schema_current(migrated_url: str, settings: Settings) -> None:
    # `smartcode serve` migrates at start: at the newest revision that is a no-op the role may run.
    migrate(migrated_url, settings=settings)
    assert current_revision(migrated_url) is not None
