"""``/api/v1/resolve``, the resolution log and categories over HTTP: roles, answers, every bad input a 4xx."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from gis.crs import GCJ02, crs_from_epsg, from_wgs84
from registry.db import Actor
from tests.helpers import PINGSHAN, make_asset, make_unit
from tests.test_resolve import at_m, pt

LON, LAT = PINGSHAN


@pytest.fixture
def lamp(db: Engine, admin: Actor):  # type: ignore[no-untyped-def]
    """A street lamp 3 m east of PINGSHAN owned by the power company."""
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    return make_asset(db, admin, owner_id=power.id, geometry=pt(3))


def test_resolve_by_code_is_public_and_logged(client: TestClient, auth: dict[str, str], lamp) -> None:
    response = client.get("/api/v1/resolve", params={"code": lamp.code})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "resolved" and answer["owner"]["phone"] == "95598"
    assert set(answer) >= {
        "status",
        "rule",
        "asset",
        "owner",
        "maintainer",
        "supervisor",
        "candidates",
        "explanation",
        "id",
    }
    # The log keeps the same answer with who asked; reading it needs a token.
    assert client.get(f"/api/v1/resolutions/{answer['id']}").status_code == 401
    logged = client.get(f"/api/v1/resolutions/{answer['id']}", headers=auth).json()
    # The log keeps the full answer; the anonymous caller got the passer-by view of it.
    assert (
        logged["answer"]["id"] == answer["id"]
        and logged["answer"]["owner"]["name"] == answer["owner"]["name"]
    )
    assert logged["actor"] == "anonymous" and logged["channel"] == "api"
    assert logged["query"]["code"] == lamp.code
    listed = client.get("/api/v1/resolutions", params={"asset": lamp.code}, headers=auth).json()["items"]
    assert [item["id"] for item in listed] == [answer["id"]]
    qr = client.get("/api/v1/resolve", params={"code": f"https://x.example/c/{lamp.code}?s=sig"}).json()
    assert qr["asset"]["code"] == lamp.code


def test_anonymous_answer_is_the_passer_by_view_of_the_logged_one_before_and_after_a_change(
    client: TestClient, auth: dict[str, str], lamp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolver keeps each code's decision while its row stays the same; a change shows at once."""
    import orjson

    from registry import resolution
    from registry.access import public_resolution

    decided: list[str] = []
    original = resolution.decide_code

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        decided.append(args[2].code)
        return original(*args, **kwargs)

    monkeypatch.setattr(resolution, "decide_code", counting)
    lang = client.app.state.services.settings.area.lang  # type: ignore[attr-defined]

    def both() -> tuple[bytes, dict]:  # type: ignore[type-arg]
        response = client.get("/api/v1/resolve", params={"code": lamp.code})
        assert response.status_code == 200, response.text
        logged = client.get(f"/api/v1/resolutions/{response.json()['id']}", headers=auth).json()["answer"]
        return response.content, logged

    first, first_logged = both()
    second, second_logged = both()
    # Byte for byte the passer-by view of the full answer the log kept, each with its own id.
    assert first == orjson.dumps(public_resolution(first_logged, lang))
    assert second == orjson.dumps(public_resolution(second_logged, lang))
    assert orjson.loads(first)["id"] != orjson.loads(second)["id"]
    assert decided == [lamp.code]  # decided once for the two lookups
    # A token gets the full answer, decided from the same row.
    full = client.get("/api/v1/resolve", params={"code": lamp.code}, headers=auth).json()
    assert full["asset"]["position"] and full["explanation"] == second_logged["explanation"]
    assert decided == [lamp.code]

    owner = client.get(f"/api/v1/units/{full['owner']['id']}", headers=auth).json()
    changed = client.patch(
        f"/api/v1/units/{owner['id']}",
        headers=auth,
        json={"version": owner["version"], "phone": "0755-12345", "reason": "新号码"},
    )
    assert changed.status_code == 200, changed.text
    third, third_logged = both()
    assert orjson.loads(third)["owner"] == {"name": owner["name"], "phone": "0755-12345"}
    assert third == orjson.dumps(public_resolution(third_logged, lang))
    assert decided == [lamp.code, lamp.code]


def test_resolve_by_location_needs_a_token(client: TestClient, auth: dict[str, str], lamp) -> None:
    params = {"lon": LON, "lat": LAT, "class": "0118"}
    denied = client.get("/api/v1/resolve", params=params)
    assert denied.status_code == 401 and "bearer token" in denied.json()["error"]["message"]
    answer = client.get("/api/v1/resolve", params=params, headers=auth).json()
    assert answer["status"] == "resolved" and answer["asset"]["code"] == lamp.code
    assert answer["asset"]["distance_m"] == pytest.approx(3, abs=0.05)
    logged = client.get(f"/api/v1/resolutions/{answer['id']}", headers=auth).json()
    assert logged["actor"] == "admin" and logged["answer"]["explanation"] == answer["explanation"]


def test_resolve_by_location_in_other_crs_and_with_category(
    client: TestClient, auth: dict[str, str], lamp
) -> None:
    gx, gy = from_wgs84(LON, LAT, GCJ02)
    gcj = client.get(
        "/api/v1/resolve", params={"lon": gx, "lat": gy, "crs": "GCJ02", "category": "路灯不亮"}, headers=auth
    ).json()
    assert gcj["asset"]["code"] == lamp.code and gcj["query"]["category"] == "路灯不亮"
    e, n = from_wgs84(LON, LAT, crs_from_epsg(4547))
    metric = client.get(
        "/api/v1/resolve", params={"x": e, "y": n, "crs": "epsg:4547", "class": "路灯,0117"}, headers=auth
    ).json()
    assert metric["asset"]["code"] == lamp.code and metric["query"]["classes"] == ["0118", "0117"]
    past = client.get(
        "/api/v1/resolve", params={"lon": LON, "lat": LAT, "class": "0118", "at": "2020-01-01"}, headers=auth
    ).json()
    assert past["query"]["at"].startswith("2020-01-01T00:00:00+08:00")


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"lon": LAT, "lat": LON}, 400, "look swapped"),
        ({"lon": 113.5, "lat": 22.3}, 400, "outside the service area"),
        ({"lon": LON, "lat": LAT, "crs": "EPSG:999999"}, 400, "not a coordinate system known"),
        ({"lon": LON, "lat": LAT, "crs": "xian80"}, 400, "unknown coordinate system"),
        ({"lon": LON, "lat": LAT, "class": "9999"}, 400, "unknown component class '9999'"),
        ({"lon": LON, "lat": LAT, "category": "不存在的类别"}, 400, "unknown complaint category"),
        ({"lon": LON}, 400, "lat is missing"),
        ({"lon": "east", "lat": LAT}, 400, "lon 'east' is not a number"),
        ({"lon": "nan", "lat": LAT}, 400, "finite number"),
        ({"lon": LON, "lat": LAT, "at": "last tuesday"}, 400, "not ISO 8601"),
        ({"lon": LON, "lat": LAT, "at": "2099-01-01"}, 400, "in the future"),
        ({"code": "4403100118000001", "lon": LON}, 400, "either code or a location"),
        ({}, 400, "give code="),
        ({"code": "44031O0118"}, 400, "contains 'O'"),
        ({"code": "4403100118"}, 400, "has 10 digits"),
        ({"code": "4403100118000999"}, 404, "well-formed but not registered"),
    ],
)
def test_bad_input_is_a_4xx_that_says_what_is_wrong(
    client: TestClient, auth: dict[str, str], params: dict, status: int, words: str
) -> None:
    response = client.get("/api/v1/resolve", params=params, headers=auth)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


def test_wrong_check_digit_suggests_the_registered_code(client: TestClient, lamp) -> None:
    wrong = lamp.code[:16] + str((int(lamp.code[16]) + 1) % 10)
    response = client.get("/api/v1/resolve", params={"code": wrong})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "CheckDigitMismatch" and "check digit" in error["message"]
    assert error["details"]["did_you_mean"] == [
        f"{lamp.code[:6]}-{lamp.code[6:10]}-{lamp.code[10:16]}-{lamp.code[16]}"
    ]


def test_categories_are_public_to_read_and_admin_to_change(
    client: TestClient, auth: dict[str, str], db: Engine, admin: Actor
) -> None:
    listed = client.get("/api/v1/categories").json()
    assert any(c["name"] == "井盖破损" and "0101" in c["classes"] for c in listed)
    body = {"classes": ["配电箱", "0134"], "aliases": ["电箱漏电"], "description": "test category"}
    assert client.put("/api/v1/categories/测试配电类别", json=body).status_code == 401
    created = client.put("/api/v1/categories/测试配电类别", json=body, headers=auth)
    assert created.status_code == 201 and created.json()["classes"] == ["2104", "0134"]
    try:
        make_asset(db, admin, class_code="2104", geometry=pt(2))
        answer = client.get(
            "/api/v1/resolve", params={"lon": LON, "lat": LAT, "category": "电箱漏电"}, headers=auth
        ).json()
        assert answer["asset"]["class"]["code"] == "2104"
        clash = client.put("/api/v1/categories/另一个", json={"aliases": ["电箱漏电"]}, headers=auth)
        assert clash.status_code == 409
        bad = client.put("/api/v1/categories/坏类别", json={"classes": ["lamp"]}, headers=auth)
        assert bad.status_code == 400 and "unknown component class" in bad.json()["error"]["message"]
    finally:
        # The category table is reference data kept between tests: leave it as it was.
        assert client.delete("/api/v1/categories/测试配电类别", headers=auth).status_code == 200
        with db.begin() as conn:
            from sqlalchemy import text

            conn.execute(text("DELETE FROM complaint_categories WHERE name = '测试配电类别'"))
    gone = client.get(
        "/api/v1/resolve", params={"lon": LON, "lat": LAT, "category": "电箱漏电"}, headers=auth
    )
    assert gone.status_code == 400


def test_ambiguous_answer_over_http(
    client: TestClient, auth: dict[str, str], db: Engine, admin: Actor
) -> None:
    water = make_unit(db, "深圳市水务集团有限公司", admin, kind="utility")
    gas = make_unit(db, "深圳市燃气集团股份有限公司", admin, kind="utility")
    make_asset(db, admin, class_code="0101", owner_id=water.id, geometry=pt(2))
    make_asset(db, admin, class_code="0111", owner_id=gas.id, geometry=pt(-3))
    lon, lat = at_m(0)
    answer = client.get(
        "/api/v1/resolve", params={"lon": lon, "lat": lat, "category": "井盖破损"}, headers=auth
    ).json()
    assert answer["status"] == "ambiguous" and answer["owner"] is None
    assert [c["owner"]["name"] for c in answer["candidates"]] == [
        "深圳市水务集团有限公司",
        "深圳市燃气集团股份有限公司",
    ]


def test_non_ascii_bearer_token_is_401_not_500(client: TestClient, lamp) -> None:
    bad = {"Authorization": b"Bearer \xe9"}  # raw header bytes, not ASCII (decoded as latin-1)
    by_code = client.get("/api/v1/resolve", params={"code": lamp.code}, headers=bad)
    assert by_code.status_code == 401 and by_code.headers["www-authenticate"] == "Bearer"
    by_location = client.get("/api/v1/resolve", params={"lon": LON, "lat": LAT}, headers=bad)
    assert by_location.status_code == 401, by_location.text
    assert client.get("/api/v1/resolutions", headers=bad).status_code == 401
    assert client.get("/api/v1/resolutions/1", headers=bad).status_code == 401


def test_reading_the_log_checks_the_token_every_time(
    client: TestClient, db: Engine, admin: Actor, lamp
) -> None:
    from sqlalchemy import text

    from registry import tokens
    from registry.db import transaction

    with transaction(db) as session:
        token = tokens.create_token(session, "dispatcher-revoked-later", "reader", admin)
    reader = {"Authorization": f"Bearer {token}"}
    located = client.get("/api/v1/resolve", params={"lon": LON, "lat": LAT}, headers=reader)
    assert located.status_code == 200, located.text
    assert client.get("/api/v1/resolutions", headers=reader).status_code == 200
    with db.begin() as conn:
        conn.execute(text("UPDATE api_tokens SET revoked_at = now() WHERE name = 'dispatcher-revoked-later'"))
    # The log is re-checked at once; the resolve hot path may keep its cached check for a while.
    assert client.get("/api/v1/resolutions", headers=reader).status_code == 401
    assert client.get(f"/api/v1/resolutions/{located.json()['id']}", headers=reader).status_code == 401
    assert client.get("/api/v1/resolve", params={"lon": LON, "lat": LAT}, headers=reader).status_code == 200
