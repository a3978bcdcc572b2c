"""Open311 ``media_url``: the link to a photo the client hosts is checked, stored and read back."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from registry import complaints, tokens
from registry.db import Actor, transaction
from tests.helpers import make_asset, make_unit
from tests.test_open311 import BASE, conforms
from tests.test_resolve import at_m, pt

PHOTO = "https://photos.example.cn/12345/2026/路灯.jpg?size=large"


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


def _post(client: TestClient, api_key: str, fmt: str = "json", **fields: str) -> Any:
    lon, lat = at_m(1, 0)
    form = {"api_key": api_key, "service_code": "路灯不亮", "lat": str(lat), "long": str(lon), **fields}
    return client.post(f"{BASE}/requests.{fmt}", data=form)


def test_media_url_is_stored_and_read_back_in_json_and_xml(
    client: TestClient, db: Engine, lamp: Any, api_key: str, auth: dict[str, str]
) -> None:
    # media_url was accepted and dropped: the case system's photo link never reached the unit.
    posted = _post(client, api_key, "xml", media_url=PHOTO)
    assert posted.status_code == 200, posted.text
    reference = ET.fromstring(posted.content).findtext("request/service_request_id")
    with db.connect() as conn:
        stored = conn.execute(
            text("SELECT media_url FROM complaints WHERE reference = :r"), {"r": reference}
        ).scalar()
    assert stored == PHOTO

    one = conforms(client.get(f"{BASE}/requests/{reference}.json").json(), "requests")[0]
    assert one["media_url"] == PHOTO
    listed = conforms(client.get(f"{BASE}/requests.json").json(), "requests")
    assert [r["media_url"] for r in listed if r["service_request_id"] == reference] == [PHOTO]
    for path in (f"requests/{reference}.xml", f"requests.xml?service_request_id={reference}"):
        root = ET.fromstring(client.get(f"{BASE}/{path}").content)
        assert root.findtext("request/media_url") == PHOTO, path
    # Staff see the link with the complaint too.
    assert client.get(f"/api/v1/complaints/{reference}", headers=auth).json()["media_url"] == PHOTO

    without = _post(client, api_key).json()[0]["service_request_id"]
    assert client.get(f"{BASE}/requests/{without}.json").json()[0]["media_url"] is None


@pytest.mark.parametrize(
    ("media_url", "said"),
    [
        ("ftp://photos.example.cn/p.jpg", "http"),
        ("javascript:alert(1)", "http"),
        ("data:image/jpeg;base64,/9j/", "http"),
        ("https://user:secret@photos.example.cn/p.jpg", "user"),
        ("https://photos.example.cn/" + "a" * complaints.MEDIA_URL_MAX, "2000"),
        ("https://photos.example.cn/p.jpg\r\nX-Injected: 1", "control"),
        ("https:///p.jpg", "host"),
    ],
)
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_bad_media_url_is_refused_in_georeport_shape_and_nothing_is_stored(
    client: TestClient, db: Engine, lamp: Any, api_key: str, media_url: str, said: str, fmt: str
) -> None:
    refused = _post(client, api_key, fmt, media_url=media_url)
    assert refused.status_code == 400, refused.text
    if fmt == "json":
        description = conforms(refused.json(), "errors")[0]["description"]
    else:
        root = ET.fromstring(refused.content)
        assert root.tag == "errors" and root.findtext("error/code") == "400"
        description = root.findtext("error/description") or ""
    assert description.startswith("media_url ") and said in description, description
    assert description.index("/") > 0 and not description.isascii()  # Chinese first
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM complaints")).scalar() == 0


def test_the_column_itself_refuses_what_the_service_refuses(db: Engine, owner_engine: Engine) -> None:
    # Another writer (a script, a later door) that skips check_media_url still cannot store such a link:
    # the constraint as migrated is tried on a scratch table.
    with owner_engine.begin() as conn:
        definition = conn.execute(
            text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = 'complaints_media_url_http'"
            )
        ).scalar_one()
        conn.execute(text(f"CREATE TEMP TABLE media_probe (media_url text, CONSTRAINT probe {definition})"))
        conn.execute(text("INSERT INTO media_probe VALUES (:u), (NULL)"), {"u": PHOTO})
        for bad in (
            "javascript:alert(1)",
            "ftp://x.cn/p.jpg",
            "https://x.cn/a b",
            "https://x.cn/" + "a" * 2000,
        ):
            with pytest.raises(IntegrityError), conn.begin_nested():
                conn.execute(text("INSERT INTO media_probe VALUES (:u)"), {"u": bad})
