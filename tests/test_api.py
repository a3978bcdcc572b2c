"""The HTTP API over the real app and a real PostGIS."""

from __future__ import annotations

from fastapi.testclient import TestClient

from registry.codes import mod11_10_check_digit
from tests.helpers import point


def _unit(client: TestClient, auth: dict[str, str], name: str, **fields: object) -> dict:
    response = client.post("/api/v1/units", json={"name": name, **fields}, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


def _lamp(client: TestClient, auth: dict[str, str], **fields: object) -> dict:
    body = {"class_code": "0118", "geometry": point(), **fields}
    response = client.post("/api/v1/assets", json=body, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


def test_register_and_read_back_an_asset(client: TestClient, auth: dict[str, str]) -> None:
    unit = _unit(client, auth, "坪山区城市管理和综合执法局", kind="government", phone="0755-12345")
    created = _lamp(client, auth, owner_id=unit["id"], maintainer_id=unit["id"], grid_code="44031000100101")
    assert created["code_display"].startswith("440310-0118-000001-")
    full = client.get(f"/api/v1/assets/{created['code_display']}", headers=auth).json()
    assert full["owner"]["phone"] == "0755-12345"
    assert full["geometry"]["type"] == "Point" and full["version"] == 1


def test_public_view_shows_only_what_a_passer_by_needs(client: TestClient, auth: dict[str, str]) -> None:
    unit = _unit(client, auth, "深圳供电局有限公司", kind="utility", phone="95598")
    created = _lamp(client, auth, owner_id=unit["id"], note="内部备注", attributes={"circuit": "F12"})
    public = client.get(f"/api/v1/assets/{created['code']}").json()
    assert public["owner"]["name"] == "深圳供电局有限公司" and public["owner"]["phone"] == "95598"
    for hidden in ("geometry", "attributes", "note", "version", "source_id"):
        assert hidden not in public


def test_writes_and_inventory_reads_need_a_token(client: TestClient, auth: dict[str, str]) -> None:
    body = {"class_code": "0118", "geometry": point()}
    response = client.post("/api/v1/assets", json=body)
    assert response.status_code == 401
    assert "bearer token" in response.json()["error"]["message"]
    assert (
        client.post("/api/v1/assets", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    assert client.get("/api/v1/assets").status_code == 401
    assert client.get("/api/v1/units").status_code == 401


def test_stale_update_gets_409_and_is_not_merged(client: TestClient, auth: dict[str, str]) -> None:
    code = _lamp(client, auth)["code"]
    first = client.patch(f"/api/v1/assets/{code}", json={"version": 1, "state": "破损"}, headers=auth)
    assert first.status_code == 200 and first.json()["version"] == 2
    stale = client.patch(f"/api/v1/assets/{code}", json={"version": 1, "note": "late"}, headers=auth)
    assert stale.status_code == 409
    assert stale.json()["error"]["type"] == "StaleVersion"
    assert stale.json()["error"]["details"]["current_version"] == 2
    # Chinese first for the clerk, then English; the machine fields stay as they were.
    message = stale.json()["error"]["message"]
    assert (
        message.startswith(f"设施 {code} 当前版本为 2，不是 1")
        and f" / asset {code} is at version 2" in message
    )
    assert client.get(f"/api/v1/assets/{code}", headers=auth).json()["note"] is None


def test_history_and_as_of_over_http(client: TestClient, auth: dict[str, str]) -> None:
    a = _unit(client, auth, "中国电信深圳分公司", kind="telecom")
    b = _unit(client, auth, "中国铁塔股份有限公司深圳市分公司", kind="telecom")
    code = _lamp(client, auth, owner_id=a["id"], installed_on="2020-01-01")["code"]
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
    hist = client.get(f"/api/v1/assets/{code}/history", headers=auth).json()
    assert [v["action"] for v in hist["versions"]] == ["create", "change_units"]
    then = client.get(
        f"/api/v1/assets/{code}/history", params={"at": "2025-03-01T12:00:00+08:00"}, headers=auth
    )
    assert then.json()["responsibility"]["owner"]["name"] == "中国电信深圳分公司"


def test_list_is_paged_with_total(client: TestClient, auth: dict[str, str]) -> None:
    for i in range(7):
        _lamp(client, auth, geometry=point(114.34 + i * 0.001, 22.69))
    page = client.get(
        "/api/v1/assets", params={"class": "0118", "limit": 3, "offset": 3}, headers=auth
    ).json()
    assert page["total"] == 7 and len(page["items"]) == 3
    box = client.get("/api/v1/assets", params={"bbox": "114.3395,22.68,114.3425,22.70"}, headers=auth).json()
    assert box["total"] == 3
    bad = client.get("/api/v1/assets", params={"bbox": "1,2,3"}, headers=auth)
    assert bad.status_code == 400 and "min_lon" in bad.json()["error"]["message"]


def test_bad_codes_say_what_is_wrong(client: TestClient, auth: dict[str, str]) -> None:
    malformed = client.get("/api/v1/assets/44031001180")
    assert malformed.status_code == 400 and "11 digits" in malformed.json()["error"]["message"]
    unknown = client.get("/api/v1/assets/4403100118000999" + mod11_10_check_digit("4403100118000999"))
    assert unknown.status_code == 404 and "not registered" in unknown.json()["error"]["message"]
    wrong_check = client.get(
        "/api/v1/assets/4403100118000999" + str((int(mod11_10_check_digit("4403100118000999")) + 1) % 10)
    )
    assert wrong_check.status_code == 400 and wrong_check.json()["error"]["type"] == "CheckDigitMismatch"


def test_bad_bodies_are_4xx_with_field_names(client: TestClient, auth: dict[str, str]) -> None:
    bad_credit = client.post(
        "/api/v1/units", json={"name": "某公司", "credit_code": "91110000600037341M"}, headers=auth
    )
    assert bad_credit.status_code == 400 and "check character" in bad_credit.json()["error"]["message"]
    missing = client.post("/api/v1/assets", json={"geometry": point()}, headers=auth)
    assert missing.status_code == 422 and "class_code" in missing.json()["error"]["message"]
    outside = client.post(
        "/api/v1/assets", json={"class_code": "0118", "geometry": point(121.47, 31.23)}, headers=auth
    )
    assert outside.status_code == 400 and outside.json()["error"]["type"] == "OutsideServiceArea"
    unknown_class = client.post(
        "/api/v1/assets", json={"class_code": "9999", "geometry": point()}, headers=auth
    )
    assert unknown_class.status_code == 404 and "9999" in unknown_class.json()["error"]["message"]


def test_classes_include_national_and_local_and_can_be_extended(
    client: TestClient, auth: dict[str, str]
) -> None:
    classes = {c["code"]: c for c in client.get("/api/v1/classes").json()}
    assert classes["0118"]["name"] == "路灯" and classes["0118"]["scheme"] == "national"
    assert classes["2105"]["geometry_type"] == "line"
    added = client.post(
        "/api/v1/classes",
        json={"code": "2107", "name": "通信光交箱", "big_name": "深圳地方部件", "geometry_type": "point"},
        headers=auth,
    )
    assert added.status_code == 201
    clash = client.post(
        "/api/v1/classes",
        json={"code": "2108", "name": "x", "big_name": "别的大类", "geometry_type": "point"},
        headers=auth,
    )
    assert clash.status_code == 400 and "深圳地方部件" in clash.json()["error"]["message"]


def test_health_and_openapi(client: TestClient) -> None:
    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["revision"]
    assert "/api/v1/assets/{code}" in client.get("/openapi.json").json()["paths"]


def test_history_of_an_asset_without_installation_date(client: TestClient, auth: dict[str, str]) -> None:
    # Its first responsibility period starts at -infinity ("since before the registry knew"), which
    # must read back as an open start, not break the endpoint.
    code = _lamp(client, auth)["code"]
    hist = client.get(f"/api/v1/assets/{code}/history", headers=auth)
    assert hist.status_code == 200, hist.text
    assert hist.json()["responsibility"][0]["valid_from"] is None
    then = client.get(
        f"/api/v1/assets/{code}/history", params={"at": "2001-01-01T00:00:00+08:00"}, headers=auth
    )
    assert then.status_code == 200 and then.json()["responsibility"]["valid_from"] is None
