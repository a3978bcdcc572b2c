"""Open311 GeoReport v2 at /open311/v2/: a case system posts a complaint and reads the responsible unit back.

Every JSON answer is validated against the GeoReport v2 schemas in tests/schemas/georeport-v2/.
"""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from registry import tokens
from registry.db import Actor, transaction
from tests.helpers import make_asset, make_unit
from tests.test_resolve import at_m, pt

SCHEMAS = Path(__file__).parent / "schemas" / "georeport-v2"
BASE = "/open311/v2"


def conforms(body: Any, schema: str) -> Any:
    """``body`` after checking it against one of the GeoReport v2 schemas."""
    jsonschema.validate(
        body, json.loads((SCHEMAS / f"{schema}.json").read_text()), format_checker=jsonschema.FormatChecker()
    )
    return body


@pytest.fixture
def lamp(db: Engine, admin: Actor) -> Any:
    """A street lamp 3 m east of PINGSHAN owned by the power company."""
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    return make_asset(db, admin, owner_id=power.id, geometry=pt(3))


@pytest.fixture
def api_key(db: Engine, admin: Actor) -> str:
    """A reader token, as the case system would hold."""
    with transaction(db) as session:
        return tokens.create_token(session, "12345-case-system", "reader", admin)


def _post(client: TestClient, fmt: str = "json", **fields: str) -> Any:
    return client.post(f"{BASE}/requests.{fmt}", data=fields)


def test_services_are_the_complaint_categories_in_json_and_xml(client: TestClient) -> None:
    services = conforms(client.get(f"{BASE}/services.json").json(), "services")
    lamp = next(s for s in services if s["service_code"] == "路灯不亮")
    assert lamp["metadata"] is True and "路灯故障" in lamp["keywords"]

    root = ET.fromstring(client.get(f"{BASE}/services.xml").content)
    assert root.tag == "services"
    codes = [s.findtext("service_code") for s in root.findall("service")]
    assert "路灯不亮" in codes and len(codes) == len(services)
    assert root.find("service/metadata").text == "true"  # type: ignore[union-attr]


def test_a_service_definition_offers_the_asset_code_attribute(client: TestClient) -> None:
    definition = conforms(client.get(f"{BASE}/services/路灯不亮.json").json(), "service-definition")
    assert definition["attributes"][0]["code"] == "asset_code"
    assert definition["attributes"][0]["datatype"] == "string"
    root = ET.fromstring(client.get(f"{BASE}/services/路灯不亮.xml").content)
    assert root.tag == "service_definition"
    assert root.findtext("attributes/attribute/code") == "asset_code"

    missing = client.get(f"{BASE}/services/没有这个.json")
    assert missing.status_code == 404
    conforms(missing.json(), "errors")


def test_a_case_posted_by_location_names_the_responsible_unit(
    client: TestClient, db: Engine, lamp: Any, api_key: str
) -> None:
    lon, lat = at_m(1, 0)
    posted = _post(
        client,
        api_key=api_key,
        service_code="路灯不亮",
        lat=str(lat),
        long=str(lon),
        jurisdiction_id="440310",
        description="路灯整晚不亮",
        address_string="坪山大道 1 号",
        email="resident@example.cn",
        media_url="https://example.cn/photo.jpg",
    )
    assert posted.status_code == 200, posted.text
    created = conforms(posted.json(), "request-created")[0]
    reference = created["service_request_id"]
    assert reference.startswith("SC-") and "深圳供电局有限公司" in created["service_notice"]

    one = conforms(client.get(f"{BASE}/requests/{reference}.json").json(), "requests")[0]
    assert one["agency_responsible"] == "深圳供电局有限公司"
    assert one["status"] == "open" and one["service_code"] == one["service_name"] == "路灯不亮"
    assert one["requested_datetime"].endswith("+08:00")  # ISO 8601 with the deployment's offset
    assert dt.datetime.fromisoformat(one["requested_datetime"]).tzinfo is not None
    assert one["lat"] == pytest.approx(lat, abs=1e-6) and one["long"] == pytest.approx(lon, abs=1e-6)
    assert one["address"] == "坪山大道 1 号" and one["description"] == "路灯整晚不亮"
    assert "email" not in one  # the reporter's contact is never published

    with db.connect() as conn:
        source, actor, reporter = conn.execute(
            text("SELECT source, actor, reporter FROM complaints WHERE reference = :r"), {"r": reference}
        ).one()
    assert source == "open311" and actor == "token:12345-case-system"
    assert reporter == {"email": "resident@example.cn"}

    root = ET.fromstring(client.get(f"{BASE}/requests/{reference}.xml").content)
    assert root.tag == "service_requests"
    assert root.findtext("request/service_request_id") == reference
    assert root.findtext("request/agency_responsible") == "深圳供电局有限公司"


def test_a_case_posted_with_the_scanned_code_answers_in_xml(
    client: TestClient, lamp: Any, api_key: str
) -> None:
    posted = _post(
        client, "xml", api_key=api_key, service_code="路灯不亮", **{"attribute[asset_code]": lamp.code}
    )
    assert posted.status_code == 200, posted.text
    root = ET.fromstring(posted.content)
    assert root.tag == "service_requests"
    reference = root.findtext("request/service_request_id")
    assert reference and root.find("request/account_id") is not None
    one = client.get(f"{BASE}/requests/{reference}.json").json()[0]
    assert one["agency_responsible"] == "深圳供电局有限公司" and one["lat"] is None


def test_a_form_sent_as_unescaped_utf8_reads_its_chinese_fields(
    client: TestClient, lamp: Any, api_key: str
) -> None:
    # `curl -d 'service_code=路灯不亮'` (the README's walk-through) and many case systems send UTF-8
    # without percent-encoding it; read as Latin-1, the service code was unknown (400) and mangled.
    form = f"api_key={api_key}&service_code=路灯不亮&attribute[asset_code]={lamp.code}&description=整晚不亮"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    posted = client.post(f"{BASE}/requests.json", content=form.encode(), headers=headers)
    assert posted.status_code == 200, posted.text
    reference = conforms(posted.json(), "request-created")[0]["service_request_id"]
    one = client.get(f"{BASE}/requests/{reference}.json").json()[0]
    assert one["service_code"] == "路灯不亮" and one["description"] == "整晚不亮"

    gbk = client.post(f"{BASE}/requests.json", content=form.encode("gbk"), headers=headers)
    assert gbk.status_code == 400
    assert "UTF-8" in conforms(gbk.json(), "errors")[0]["description"]
    # GBK percent-encoded is refused too, not stored as replacement characters.
    escaped = form.replace("整晚不亮", quote("整晚不亮", encoding="gbk"))
    gbk_escaped = client.post(f"{BASE}/requests.json", content=escaped.encode(), headers=headers)
    assert gbk_escaped.status_code == 400
    assert "UTF-8" in conforms(gbk_escaped.json(), "errors")[0]["description"]


def test_a_long_description_is_kept_whole_or_refused_never_cut(
    client: TestClient, db: Engine, lamp: Any, api_key: str
) -> None:
    # GeoReport v2 allows 4000 characters; 2001 to 4000 were cut to 2000 without a word, and a
    # reporter's e-mail address over 200 characters was cut too.
    fields = {"api_key": api_key, "service_code": "路灯不亮", "attribute[asset_code]": lamp.code}
    text_3000 = "灯" * 3000
    posted = _post(client, **fields, description=text_3000)
    assert posted.status_code == 200, posted.text
    reference = posted.json()[0]["service_request_id"]
    assert client.get(f"{BASE}/requests/{reference}.json").json()[0]["description"] == text_3000
    too_long = _post(client, **fields, description="灯" * 4001)
    assert too_long.status_code == 400 and "description" in too_long.json()[0]["description"]
    long_email = _post(client, **fields, email="a" * 201 + "@example.cn")
    assert long_email.status_code == 400 and "email" in long_email.json()[0]["description"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM complaints")).scalar() == 1


@pytest.mark.parametrize(
    ("fields", "status", "said"),
    [
        ({}, 403, "api_key"),
        ({"api_key": "not-a-token"}, 403, "api_key"),
        ({"service_code": "路灯不亮"}, 403, "api_key"),
        ({"key": True}, 400, "service_code"),
        ({"key": True, "service_code": "没有这个"}, 400, "service_code"),
        ({"key": True, "service_code": "路灯不亮", "jurisdiction_id": "110101"}, 400, "jurisdiction_id"),
        ({"key": True, "service_code": "路灯不亮"}, 400, "lat"),
        ({"key": True, "service_code": "路灯不亮", "lat": "north", "long": "114.3"}, 400, "lat"),
        ({"key": True, "service_code": "路灯不亮", "attribute[asset_code]": "12345"}, 400, ""),
        (
            {"key": True, "service_code": "路灯不亮", "attribute[asset_code]": "440310-0118-999999-9"},
            400,
            "asset_code",
        ),
        ({"key": True, "service_code": "路灯不亮", "lat": "22.69"}, 400, "long"),
    ],
)
def test_posting_errors_follow_the_specification(
    client: TestClient, db: Engine, lamp: Any, api_key: str, fields: dict[str, Any], status: int, said: str
) -> None:
    form = {k: v for k, v in fields.items() if k != "key"}
    if fields.get("key"):
        form["api_key"] = api_key
    answer = _post(client, **form)
    assert answer.status_code == status
    error = conforms(answer.json(), "errors")[0]
    assert error["code"] == status and said in error["description"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM complaints")).scalar() == 0

    xml = _post(client, "xml", **form)
    root = ET.fromstring(xml.content)
    assert xml.status_code == status and root.tag == "errors"
    assert root.findtext("error/code") == str(status) and root.findtext("error/description")


def test_listing_requests_filters_by_id_code_date_and_status(
    client: TestClient, lamp: Any, api_key: str
) -> None:
    lon, lat = at_m(1, 0)
    first = _post(client, api_key=api_key, service_code="路灯不亮", lat=str(lat), long=str(lon)).json()
    second = _post(client, api_key=api_key, service_code="立杆倾斜", lat=str(lat), long=str(lon)).json()
    ids = [first[0]["service_request_id"], second[0]["service_request_id"]]

    everything = conforms(client.get(f"{BASE}/requests.json").json(), "requests")
    assert [r["service_request_id"] for r in everything] == ids[::-1]  # newest first
    by_ids = client.get(f"{BASE}/requests.json", params={"service_request_id": ",".join(ids)}).json()
    assert {r["service_request_id"] for r in by_ids} == set(ids)
    by_code = client.get(f"{BASE}/requests.json", params={"service_code": "立杆倾斜"}).json()
    assert [r["service_request_id"] for r in by_code] == ids[1:]
    assert client.get(f"{BASE}/requests.json", params={"status": "closed"}).json() == []
    assert len(client.get(f"{BASE}/requests.json", params={"status": "open"}).json()) == 2
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    assert client.get(f"{BASE}/requests.json", params={"start_date": tomorrow}).json() == []
    old = {"start_date": "2020-01-01T00:00:00+08:00", "end_date": "2020-12-31"}
    assert client.get(f"{BASE}/requests.json", params=old).json() == []

    root = ET.fromstring(client.get(f"{BASE}/requests.xml").content)
    assert [r.findtext("service_request_id") for r in root.findall("request")] == ids[::-1]

    bad = client.get(f"{BASE}/requests.json", params={"start_date": "yesterday"})
    assert bad.status_code == 400 and "start_date" in conforms(bad.json(), "errors")[0]["description"]
    assert client.get(f"{BASE}/requests.json", params={"status": "pending"}).status_code == 400
    missing = client.get(f"{BASE}/requests/SC-20260101-999999.json")
    assert missing.status_code == 404
    conforms(missing.json(), "errors")
    assert client.get(f"{BASE}/requests.csv").status_code == 404


def test_xml_answers_stay_well_formed_when_a_stored_text_has_a_control_character(
    client: TestClient, lamp: Any, api_key: str
) -> None:
    # A description arrives from the public with whatever bytes the client sent; XML 1.0 cannot carry
    # most control characters, so they are written as U+FFFD rather than breaking the whole answer.
    posted = _post(
        client,
        api_key=api_key,
        service_code="路灯不亮",
        description="灯不亮\x01\x1b 已两天",
        **{"attribute[asset_code]": lamp.code},
    )
    assert posted.status_code == 200, posted.text
    reference = posted.json()[0]["service_request_id"]
    answer = client.get(f"{BASE}/requests/{reference}.xml")
    root = ET.fromstring(answer.content)
    assert root.findtext("request/description") == "灯不亮\ufffd\ufffd 已两天"


def test_a_category_name_with_a_control_character_is_refused(
    client: TestClient, auth: dict[str, str]
) -> None:
    path = "/api/v1/categories/" + quote("坏\x07类别")
    answer = client.put(path, json={"classes": ["0118"]}, headers=auth)
    assert answer.status_code == 400
    assert "U+0007" in answer.json()["error"]["message"]
    assert all(s["service_code"] != "坏\x07类别" for s in client.get(f"{BASE}/services.json").json())


def test_every_token_role_may_post_and_a_revoked_key_is_refused_at_once(
    client: TestClient, db: Engine, admin: Actor, lamp: Any
) -> None:
    # The posting path checks the key on its own connection, without the ORM: the same roles as
    # everywhere else may file a case, and a revocation counts from the next post, not after a cache.
    with transaction(db) as session:
        unit_key = tokens.create_token(session, "street-office", "unit", admin, unit_id=lamp.owner_id)
        reader_key = tokens.create_token(session, "12345-desk", "reader", admin)
    form = {"service_code": "路灯不亮", "attribute[asset_code]": lamp.code}
    for key in (unit_key, reader_key):
        assert _post(client, api_key=key, **form).status_code == 200
    with transaction(db) as session:
        tokens.revoke_token(session, "12345-desk", admin)
    refused = _post(client, api_key=reader_key, **form)
    assert refused.status_code == 403
    assert "api_key" in conforms(refused.json(), "errors")[0]["description"]
    assert _post(client, api_key=unit_key, **form).status_code == 200


def test_unexpected_failures_are_answered_in_the_specifications_error_shape(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, lamp: Any, api_key: str
) -> None:
    # A bug or an oversized body came back as /api/v1's {"error": {...}}, which an Open311 client
    # cannot read; the cause's text (SQL, paths) must not be shown either.
    from registry import open311

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("SELECT secret FROM /srv/smartcode")

    monkeypatch.setattr(open311, "get_request", broken)
    for fmt in ("json", "xml"):
        answer = client.get(f"{BASE}/requests/SC-20261206-000001.{fmt}")
        assert answer.status_code == 500 and "SELECT" not in answer.text and "/srv" not in answer.text
        if fmt == "json":
            assert conforms(answer.json(), "errors")[0]["code"] == 500
        else:
            assert ET.fromstring(answer.content).findtext("error/code") == "500"
    huge = {"api_key": api_key, "service_code": "路灯不亮", "description": "x" * (5 * 1024 * 1024)}
    declared = _post(client, **huge)  # refused on its Content-Length, before the route runs
    assert declared.status_code == 413 and conforms(declared.json(), "errors")[0]["code"] == 413
    declared_xml = _post(client, "xml", **huge)
    assert ET.fromstring(declared_xml.content).findtext("error/code") == "413"
    # A body sent without a length, counted past the cap while it is read.
    chunks = iter([f"api_key={api_key}&description=".encode()] + [b"x" * 65536] * 80)
    too_big = client.post(
        f"{BASE}/requests.json",
        content=chunks,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert too_big.status_code == 413 and conforms(too_big.json(), "errors")[0]["code"] == 413


def test_a_photo_sent_as_a_file_part_is_refused_by_its_part_name(
    client: TestClient, db: Engine, lamp: Any, api_key: str
) -> None:
    # Some Open311 clients upload the photo as a "media" part; the answer was "the form could not be
    # read", naming nothing. Photos come through the scan page (size-capped and type-checked there).
    fields = {"api_key": api_key, "service_code": "路灯不亮", "attribute[asset_code]": lamp.code}
    answer = client.post(
        f"{BASE}/requests.json",
        data=fields,
        files={"media": ("p.jpg", b"\xff\xd8\xff" + b"0" * 64, "image/jpeg")},
    )
    assert answer.status_code == 400
    assert "'media'" in conforms(answer.json(), "errors")[0]["description"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM complaints")).scalar() == 0
    as_parts = client.post(f"{BASE}/requests.json", files={k: (None, v) for k, v in fields.items()})
    assert as_parts.status_code == 200, as_parts.text


@pytest.mark.parametrize(
    "path",
    [
        "requests/%00.json",
        "services/%00.xml",
        "requests.json?service_request_id=%00",
        "requests.json?service_code=%00",
        "servicerequestupdates.json?service_request_id=%00",
    ],
)
def test_a_nul_character_in_an_id_or_code_is_a_bad_request(client: TestClient, path: str) -> None:
    # PostgreSQL text cannot hold NUL: the database's refusal was answered 500 "internal error".
    answer = client.get(f"{BASE}/{path}")
    assert answer.status_code == 400, answer.text
    if ".xml" in path:
        assert ET.fromstring(answer.content).findtext("error/code") == "400"
    else:
        assert "NUL" in conforms(answer.json(), "errors")[0]["description"]
