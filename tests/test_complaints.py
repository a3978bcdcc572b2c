"""The complaint service without the page: by location in any supported CRS, the case system's id, errors."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from psycopg import AsyncConnection
from sqlalchemy import Engine, text

from common.errors import Conflict, InvalidInput
from common.settings import Settings
from gis.area import ServiceArea
from gis.crs import GCJ02, from_wgs84
from registry import complaints
from registry.db import Actor
from registry.resolution import Resolver, conninfo_from_url
from tests.helpers import make_asset, make_unit
from tests.test_resolve import at_m, pt


class _NoLog:
    """A resolution log that hands out ids and keeps nothing (the log is not what is tested here)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def reserve_id(self, *_: Any) -> int:
        return next(self._ids)

    async def write(self, *_: Any) -> None:
        return None


def _create(url: str, settings: Settings, data: complaints.ComplaintIn) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        conninfo = conninfo_from_url(url)
        resolver = Resolver(settings, ServiceArea.from_settings(settings))
        async with (
            await AsyncConnection.connect(conninfo, autocommit=True) as read,
            await AsyncConnection.connect(conninfo, autocommit=True) as write,
        ):
            return await complaints.create_complaint(
                read, write, resolver, _NoLog(), data, actor="case-system", settings=settings.area
            )

    return asyncio.run(main())


@pytest.fixture
def lamp(db: Engine, admin: Actor) -> Any:
    """A street lamp 3 m east of PINGSHAN owned by the power company."""
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    return make_asset(db, admin, owner_id=power.id, geometry=pt(3))


def test_a_case_located_in_gcj02_is_resolved_and_stored_in_wgs84(
    db: Engine, migrated_url: str, settings: Settings, lamp: Any
) -> None:
    lon, lat = at_m(1, 0)
    gx, gy = from_wgs84(lon, lat, GCJ02)
    view = _create(
        migrated_url,
        settings,
        complaints.ComplaintIn(
            source="case_system",
            external_id="12345-2026-000777",
            category="路灯不亮",
            x=gx,
            y=gy,
            crs="gcj02",
        ),
    )
    assert view["reference"].startswith("SC-") and view["status"] == "received"
    # Resolved by location (no code): the lamp 2 m away, its owner named.
    assert view["resolution"]["rule"] == "nearest_asset"
    assert view["resolution"]["owner"]["name"] == "深圳供电局有限公司"
    assert view["asset_code"] is None  # nobody scanned it: the asset is in the resolution, not claimed
    assert view["location"] == pytest.approx({"lon": lon, "lat": lat}, abs=1e-5)
    assert view["location_given"]["crs"] == "gcj02"
    with db.connect() as conn:
        assert conn.execute(text("SELECT owner_id FROM complaints")).scalar() == lamp.owner_id

    # The same case posted again is not a second complaint.
    with pytest.raises(Conflict, match="12345-2026-000777"):
        _create(
            migrated_url,
            settings,
            complaints.ComplaintIn(
                source="case_system", external_id="12345-2026-000777", x=gx, y=gy, crs="gcj02"
            ),
        )


def test_without_a_code_the_location_must_be_usable(
    db: Engine, migrated_url: str, settings: Settings
) -> None:
    with pytest.raises(InvalidInput):
        _create(migrated_url, settings, complaints.ComplaintIn(source="api", x=116.39, y=39.91))
    with pytest.raises(InvalidInput, match="needs a scanned code or a location"):
        _create(migrated_url, settings, complaints.ComplaintIn(source="api"))
    with pytest.raises(InvalidInput, match="unknown complaint source"):
        _create(migrated_url, settings, complaints.ComplaintIn(source="fax", x=1, y=2))
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM complaints")).scalar() == 0


def test_with_a_code_an_unusable_location_is_kept_but_not_placed(
    db: Engine, migrated_url: str, settings: Settings, lamp: Any
) -> None:
    view = _create(
        migrated_url,
        settings,
        complaints.ComplaintIn(source="scan", code=lamp.code, x=116.39, y=39.91, category="其他问题"),
    )
    assert view["asset_code"] == lamp.code and view["location"] is None and view["distance_m"] is None
    assert view["location_given"]["x"] == 116.39 and view["location_given"]["note"]


def test_the_case_system_files_a_complaint_by_the_json_api_once_per_case(
    client: Any, db: Engine, auth: dict[str, str], lamp: Any
) -> None:
    # The domain took a source and the case system's own id, but no endpoint let a client send them:
    # every complaint came from the scan page or Open311 (source open311, no external id).
    lon, lat = at_m(1, 0)
    gx, gy = from_wgs84(lon, lat, GCJ02)
    case = {
        "source": "case_system",
        "external_id": "12345-2026-000888",
        "category": "路灯不亮",
        "x": gx,
        "y": gy,
        "crs": "gcj02",
        "description": "路灯整晚不亮",
        "reporter": {"phone": "13800000000"},
    }
    posted = client.post("/api/v1/complaints", headers=auth, json=case)
    assert posted.status_code == 201, posted.text
    view = posted.json()
    assert posted.headers["location"] == f"/api/v1/complaints/{view['reference']}"
    assert view["source"] == "case_system" and view["external_id"] == "12345-2026-000888"
    assert view["resolution"]["owner"]["name"] == "深圳供电局有限公司"
    assert view["location"] == pytest.approx({"lon": lon, "lat": lat}, abs=1e-5)
    assert client.get(posted.headers["location"], headers=auth).json()["reference"] == view["reference"]

    again = client.post("/api/v1/complaints", headers=auth, json=case)
    assert again.status_code == 409 and view["reference"] in again.json()["error"]["message"]

    by_code = client.post("/api/v1/complaints", headers=auth, json={"code": lamp.code})
    assert by_code.status_code == 201 and by_code.json()["source"] == "api"

    for body, status, said in (
        ({"category": "路灯不亮"}, 400, "code"),
        ({"code": lamp.code, "category": "没有这个类别"}, 400, "category"),
        ({"x": gx, "crs": "gcj02"}, 400, "x"),
        ({"code": "440310-0118-999999-9"}, 404, "not registered"),
        ({"code": lamp.code, "source": "open311"}, 422, "source"),
        ({"code": lamp.code, "reported_at": "2091-01-01T08:00:00+08:00"}, 400, "future"),
    ):
        refused = client.post("/api/v1/complaints", headers=auth, json=body)
        assert refused.status_code == status and said in refused.text, (body, refused.text)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM complaints")).scalar() == 2
        created = conn.execute(
            text("SELECT count(*) FROM event_outbox WHERE type = 'complaint.created'")
        ).scalar()
    assert created == 2
    assert client.post("/api/v1/complaints", json={"code": lamp.code}).status_code == 401


def test_a_unit_files_as_api_and_cannot_take_the_case_systems_case_ids(
    client: Any, db: Engine, admin: Actor, lamp: Any
) -> None:
    from registry import tokens
    from registry.db import transaction

    with transaction(db) as session:
        token = tokens.create_token(session, "gas", "unit", admin, unit_id=lamp.owner_id)
    unit = {"Authorization": f"Bearer {token}"}
    squat = {"source": "case_system", "external_id": "12345-2026-000999", "code": lamp.code}
    refused = client.post("/api/v1/complaints", headers=unit, json=squat)
    assert refused.status_code == 403 and "case_system" in refused.text
    own = client.post("/api/v1/complaints", headers=unit, json={**squat, "source": "api"})
    assert own.status_code == 201 and own.json()["source"] == "api"
    with db.connect() as conn:
        sources = conn.execute(text("SELECT source FROM complaints")).scalars().all()
    assert sources == ["api"]
