"""POST /api/v1/complaints with photos: multipart parts checked like the scan page's, stored with it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from gis.crs import GCJ02, from_wgs84
from registry import complaints
from registry.db import Actor
from tests.helpers import make_asset, make_unit
from tests.test_resolve import at_m, pt

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def lamp(db: Engine, admin: Actor) -> Any:
    """A street lamp 3 m east of PINGSHAN owned by the power company."""
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    return make_asset(db, admin, owner_id=power.id, geometry=pt(3))


def _case() -> dict[str, str]:
    lon, lat = at_m(1, 0)
    gx, gy = from_wgs84(lon, lat, GCJ02)
    return {
        "source": "case_system",
        "external_id": "12345-2026-000901",
        "category": "路灯不亮",
        "x": str(gx),
        "y": str(gy),
        "crs": "gcj02",
        "description": "路灯整晚不亮，附两张照片",
        "reporter[phone]": "13800000000",
    }


def _stored(db: Engine) -> tuple[int, int]:
    with db.connect() as conn:
        return (
            conn.execute(text("SELECT count(*) FROM complaints")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM complaint_photos")).scalar_one(),
        )


def test_the_case_system_files_a_complaint_with_two_photos(
    client: TestClient, db: Engine, auth: dict[str, str], lamp: Any
) -> None:
    # The JSON door took no photos: a case system's photos reached no unit.
    posted = client.post(
        "/api/v1/complaints",
        headers=auth,
        data=_case(),
        files={
            "photo_2": ("b.png", PNG, "application/octet-stream"),
            "photo_1": ("a.jpg", JPEG, "image/jpeg"),
        },
    )
    assert posted.status_code == 201, posted.text
    view = posted.json()
    assert view["photos"] == 2 and view["external_id"] == "12345-2026-000901"
    assert view["reporter"] == {"phone": "13800000000"}
    assert view["resolution"]["owner"]["name"] == "深圳供电局有限公司"
    staff = client.get(f"/api/v1/complaints/{view['reference']}", headers=auth).json()
    assert staff["photos"] == 2
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.seq, p.content_type, p.size_bytes, p.data FROM complaint_photos p "
                "JOIN complaints c ON c.id = p.complaint_id WHERE c.reference = :r ORDER BY p.seq"
            ),
            {"r": view["reference"]},
        ).all()
    # In part order, typed by their bytes (not by the Content-Type the client claimed).
    assert [tuple(r) for r in rows] == [(1, "image/jpeg", len(JPEG), JPEG), (2, "image/png", len(PNG), PNG)]

    # The same case again (its external_id) is refused, photos and all.
    again = client.post("/api/v1/complaints", headers=auth, data=_case(), files={"photo_1": ("a.jpg", JPEG)})
    assert again.status_code == 409 and _stored(db) == (1, 2)
    # The JSON body still works as before, and needs a token before anything is read.
    assert client.post("/api/v1/complaints", headers=auth, json={"code": lamp.code}).status_code == 201
    assert (
        client.post("/api/v1/complaints", data=_case(), files={"photo_1": ("a.jpg", JPEG)}).status_code == 401
    )


@pytest.mark.parametrize(
    ("files", "part", "said"),
    [
        ({"photo_1": JPEG, "photo_2": b"GIF89a not a jpeg at all"}, "photo_2", "JPEG、PNG 或 WebP"),
        ({"photo_1": b"<?php echo 1; ?>"}, "photo_1", "JPEG、PNG 或 WebP"),
        ({"photo_1": JPEG, "photo_3": JPEG + b"\x00" * complaints.PHOTO_MAX_BYTES}, "photo_3", "MiB"),
        ({"photo_1": b""}, "photo_1", "空文件"),
        ({f"photo_{n}": JPEG for n in range(1, 5)}, "photo_4", "最多 3 张"),
        ({"photo": JPEG}, "photo", "photo_1"),
    ],
)
def test_a_refused_photo_is_named_and_nothing_is_stored(
    client: TestClient,
    db: Engine,
    auth: dict[str, str],
    lamp: Any,
    files: dict[str, bytes],
    part: str,
    said: str,
) -> None:
    refused = client.post(
        "/api/v1/complaints",
        headers=auth,
        data=_case(),
        files={name: (f"{name}.jpg", content, "image/jpeg") for name, content in files.items()},
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["message"].startswith(f"{part}：") and said in error["message"], error
    assert _stored(db) == (0, 0)


def test_form_fields_are_validated_like_the_json_body(
    client: TestClient, db: Engine, auth: dict[str, str], lamp: Any
) -> None:
    for fields, said in (
        ({"source": "open311"}, "source"),
        ({"x": "east"}, "x"),
        ({"colour": "red"}, "colour"),
    ):
        refused = client.post(
            "/api/v1/complaints", headers=auth, data={**_case(), **fields}, files={"photo_1": ("a.jpg", JPEG)}
        )
        assert refused.status_code == 422 and said in refused.text, refused.text
    assert _stored(db) == (0, 0)
