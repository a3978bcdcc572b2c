"""Hostile and careless input gets a 4xx that says what was wrong, never a 500 (found in review)."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient

from tests.helpers import point

BIG = 2**70


def _lamp(client: TestClient, auth: dict[str, str], **fields: object) -> dict:
    response = client.post(
        "/api/v1/assets", json={"class_code": "0118", "geometry": point(), **fields}, headers=auth
    )
    assert response.status_code == 201, response.text
    return response.json()


def _unit(client: TestClient, auth: dict[str, str], name: str, **fields: object) -> dict:
    response = client.post("/api/v1/units", json={"name": name, **fields}, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


def test_hand_over_of_an_asset_without_installation_date(client: TestClient, auth: dict[str, str]) -> None:
    a = _unit(client, auth, "中国电信深圳分公司")
    b = _unit(client, auth, "中国铁塔深圳分公司")
    code = _lamp(client, auth, owner_id=a["id"])["code"]
    moved = client.post(
        f"/api/v1/assets/{code}/units",
        json={
            "version": 1,
            "owner_id": b["id"],
            "effective_at": "2025-03-02T00:00:00+08:00",
            "reason": "移交",
        },
        headers=auth,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["owner"]["id"] == b["id"]


def test_non_ascii_bearer_token_is_401(client: TestClient) -> None:
    response = client.get("/api/v1/assets", headers={"Authorization": "Bearer \xe9t\xe9".encode("latin-1")})
    assert response.status_code == 401


def test_ids_beyond_bigint_and_nul_text_are_400(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get(f"/api/v1/units/{BIG}", headers=auth).status_code == 422
    assert client.get("/api/v1/assets", params={"offset": BIG}, headers=auth).status_code in (400, 422)
    assert (
        client.post(
            "/api/v1/assets", json={"class_code": "0118", "geometry": point(), "owner_id": BIG}, headers=auth
        ).status_code
        == 400
    )
    nul = client.post(
        "/api/v1/assets", json={"class_code": "0118", "geometry": point(), "note": "a\x00b"}, headers=auth
    )
    assert nul.status_code == 422 and "NUL" in nul.json()["error"]["message"]
    assert client.get("/api/v1/imports/²", headers=auth).status_code == 404
    assert client.get("/api/v1/imports/" + "9" * 30, headers=auth).status_code == 404


def test_degenerate_geometry_is_400(client: TestClient, auth: dict[str, str]) -> None:
    line = {"type": "LineString", "coordinates": [[114.34, 22.69]]}
    response = client.post("/api/v1/assets", json={"class_code": "2105", "geometry": line}, headers=auth)
    assert response.status_code == 400 and "GeoJSON" in response.json()["error"]["message"]


def test_nulls_for_required_fields_are_400_without_database_detail(
    client: TestClient, auth: dict[str, str]
) -> None:
    code = _lamp(client, auth)["code"]
    state = client.patch(f"/api/v1/assets/{code}", json={"version": 1, "state": None}, headers=auth)
    assert state.status_code == 400 and "state cannot be null" in state.json()["error"]["message"]
    unit = _unit(client, auth, "坪山街道办事处")
    name = client.patch(
        f"/api/v1/units/{unit['id']}", json={"version": 1, "name": None, "reason": "更名"}, headers=auth
    )
    assert name.status_code == 400 and "Failing row" not in name.text


def test_decommission_time_needs_a_zone_and_cannot_be_future(
    client: TestClient, auth: dict[str, str]
) -> None:
    code = _lamp(client, auth)["code"]
    naive = client.post(
        f"/api/v1/assets/{code}/decommission",
        json={"version": 1, "reason": "拆除", "at": "2025-03-02T00:00:00"},
        headers=auth,
    )
    assert naive.status_code == 400 and "time zone" in naive.json()["error"]["message"]
    future = client.post(
        f"/api/v1/assets/{code}/decommission",
        json={"version": 1, "reason": "拆除", "at": "2099-01-01T00:00:00+08:00"},
        headers=auth,
    )
    assert future.status_code == 400 and "future" in future.json()["error"]["message"]


def test_decommissioned_asset_is_frozen(client: TestClient, auth: dict[str, str]) -> None:
    code = _lamp(client, auth)["code"]
    assert (
        client.post(
            f"/api/v1/assets/{code}/decommission", json={"version": 1, "reason": "拆除"}, headers=auth
        ).status_code
        == 200
    )
    edit = client.patch(f"/api/v1/assets/{code}", json={"version": 2, "state": "破损"}, headers=auth)
    assert edit.status_code == 409 and "decommissioned" in edit.json()["error"]["message"]


def test_future_installation_date_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    tomorrow = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    response = client.post(
        "/api/v1/assets",
        json={"class_code": "0118", "geometry": point(), "installed_on": tomorrow},
        headers=auth,
    )
    assert response.status_code == 422 and "future" in response.json()["error"]["message"]


def test_explicit_codes_are_for_administrators_of_this_county(
    client: TestClient, auth: dict[str, str]
) -> None:
    beijing = client.post(
        "/api/v1/assets",
        json={"class_code": "0118", "geometry": point(), "code": "1100000118000001"},
        headers=auth,
    )
    assert beijing.status_code == 400 and "county 110000" in beijing.json()["error"]["message"]
    unit = _unit(client, auth, "中国电信深圳分公司")
    from registry import tokens  # a unit token, created the way `smartcode token --role unit` does
    from registry.db import Actor, transaction

    with transaction(client.app.state.services.engine) as session:
        token = tokens.create_token(session, "telecom", "unit", Actor("test", admin=True), unit_id=unit["id"])
    adopted = client.post(
        "/api/v1/assets",
        json={"class_code": "0117", "geometry": point(), "code": "4403100117999999", "owner_id": unit["id"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert adopted.status_code == 403


def test_a_unit_cannot_capture_another_units_name(client: TestClient, auth: dict[str, str]) -> None:
    a = _unit(client, auth, "电信公司A")
    b = _unit(client, auth, "电信公司B")
    alias = client.patch(
        f"/api/v1/units/{a['id']}",
        json={"version": 1, "aliases": ["电信公司B"], "reason": "别名"},
        headers=auth,
    )
    assert alias.status_code == 409
    from registry import units
    from registry.db import transaction

    with transaction(client.app.state.services.engine) as session:
        assert units.find_unit(session, "电信公司B").id == b["id"]
