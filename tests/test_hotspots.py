"""Hot-spot warnings (高频 / 热点预警): one at N complaints in D days, joined later, not on rollback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import AsyncConnection
from sqlalchemy import Engine, text

from common.settings import HotspotSettings, Settings
from gis.area import ServiceArea
from registry import complaints
from registry.db import Actor, transaction
from registry.resolution import Resolver, conninfo_from_url
from registry.tokens import create_token
from tests.helpers import make_asset, make_unit
from tests.test_complaints import _NoLog
from tests.test_resolve import at_m, pt

RULES = HotspotSettings(min_complaints=3, window_days=7, radius_m=50.0)


def _post(
    url: str, settings: Settings, items: list[complaints.ComplaintIn], *, rollback: bool = False
) -> list[dict[str, Any]]:
    """Record complaints one after another through the service; with ``rollback``, inside a transaction
    that is then rolled back (as a failure after the insert would)."""

    async def main() -> list[dict[str, Any]]:
        conninfo = conninfo_from_url(url)
        resolver = Resolver(settings, ServiceArea.from_settings(settings))
        views = []
        async with (
            await AsyncConnection.connect(conninfo, autocommit=True) as read,
            await AsyncConnection.connect(conninfo, autocommit=True) as write,
        ):
            for data in items:
                if rollback:
                    async with write.transaction(force_rollback=True):
                        resolved = await complaints.resolve_complaint(
                            read, resolver, _NoLog(), data, actor="t", metric_srid=settings.area.metric_srid
                        )
                        await complaints.record_complaint(
                            write, data, resolved, actor="t", timezone="UTC", hotspot_rules=RULES
                        )
                    continue
                views.append(
                    await complaints.create_complaint(
                        read,
                        write,
                        resolver,
                        _NoLog(),
                        data,
                        actor="case-system",
                        settings=settings.area,
                        hotspot_rules=RULES,
                    )
                )
        return views

    return asyncio.run(main())


def _on_asset(code: str, category: str | None = None) -> complaints.ComplaintIn:
    return complaints.ComplaintIn(source="api", code=code, category=category)


def _at(dx: float, dy: float = 0.0, category: str = "井盖缺失") -> complaints.ComplaintIn:
    lon, lat = at_m(dx, dy)
    return complaints.ComplaintIn(source="api", x=lon, y=lat, category=category)


def _warnings(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id, kind, asset_code, category, count, state, unit_id, first_complaint_id, "
                    "last_complaint_id FROM hotspot_warnings ORDER BY id"
                )
            ).all()
        )


def _events(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return list(
            conn.execute(
                text("SELECT subject, data FROM event_outbox WHERE type = 'hotspot.warning' ORDER BY id")
            ).all()
        )


@pytest.fixture
def lamp(db: Engine, admin: Actor) -> Any:
    """A street lamp 3 m east of PINGSHAN owned by the power company."""
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    return make_asset(db, admin, owner_id=power.id, geometry=pt(3))


def _insert_old(db: Engine, *, days: float, code: str | None = None, dx: float | None = None) -> None:
    """A complaint received ``days`` ago (the service always stamps now(); history is written directly)."""
    lon, lat = at_m(dx, 0) if dx is not None else (None, None)
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO complaints (reference, source, received_at, category, asset_code, geom, "
                "resolution, actor, status_at, status_by) VALUES ('OLD-' || gen_random_uuid(), 'api', "
                "now() - make_interval(secs => :s), '井盖缺失', :code, "
                "CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL "
                "ELSE ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) END, "
                "'{}', 't', now(), 't')"
            ),
            {"s": days * 86400, "code": code, "lon": lon, "lat": lat},
        )


def test_an_asset_raises_one_warning_at_n_complaints_and_the_next_joins_it(
    db: Engine, migrated_url: str, settings: Settings, lamp: Any
) -> None:
    _post(migrated_url, settings, [_on_asset(lamp.code)] * 2)
    assert _warnings(db) == [] and _events(db) == []  # N - 1: nothing

    (third,) = _post(migrated_url, settings, [_on_asset(lamp.code)])
    (warning,) = _warnings(db)
    assert (warning.kind, warning.asset_code, warning.count, warning.state) == (
        "asset",
        lamp.code,
        3,
        "active",
    )
    assert (
        warning.unit_id == lamp.owner_id
        and warning.first_complaint_id == 1
        and warning.last_complaint_id == 3
    )
    (event,) = _events(db)
    assert event.subject == lamp.code
    assert (
        event.data["kind"] == "asset"
        and event.data["count"] == 3
        and event.data["raised_by"] == third["reference"]
    )
    assert event.data["location"]["lon"] == pytest.approx(at_m(3)[0], abs=1e-6)

    _post(migrated_url, settings, [_on_asset(lamp.code)])
    (warning,) = _warnings(db)
    assert warning.count == 4 and warning.last_complaint_id == 4  # updated, not a second warning
    assert len(_events(db)) == 1


def test_complaints_outside_the_window_do_not_count(
    db: Engine, migrated_url: str, settings: Settings, lamp: Any
) -> None:
    _insert_old(db, days=8, code=lamp.code)
    _insert_old(db, days=7.5, code=lamp.code)
    _post(migrated_url, settings, [_on_asset(lamp.code)])
    assert _warnings(db) == []
    _insert_old(db, days=6, code=lamp.code)  # inside the window: this one and the next make three
    _post(migrated_url, settings, [_on_asset(lamp.code)])
    assert [w.count for w in _warnings(db)] == [3]


def test_complaints_of_one_category_near_each_other_raise_a_hotspot(
    db: Engine, migrated_url: str, settings: Settings, lamp: Any
) -> None:
    # Another category at the same place, and the same category 60 m away, do not count.
    _post(
        migrated_url,
        settings,
        [_at(0), _at(30, 0, category="路灯不亮"), _at(-60), _at(0, 20)],
    )
    assert _warnings(db) == []
    views = _post(migrated_url, settings, [_at(10, 10)])  # third within 50 m
    (warning,) = _warnings(db)
    assert (warning.kind, warning.category, warning.count) == ("place", "井盖缺失", 3)
    (event,) = _events(db)
    assert event.subject == views[0]["reference"] and event.data["radius_m"] == 50.0
    # A fourth within the radius of the warning's centre joins it; one 200 m away starts nothing.
    _post(migrated_url, settings, [_at(15, 30), _at(200)])
    assert [w.count for w in _warnings(db)] == [4] and len(_events(db)) == 1


def test_a_distant_pair_and_an_old_neighbour_raise_nothing(
    db: Engine, migrated_url: str, settings: Settings, lamp: Any
) -> None:
    _insert_old(db, days=9, dx=0)
    _post(migrated_url, settings, [_at(0), _at(51), _at(-51)])  # each 51 m from the first
    assert _warnings(db) == []


def test_a_rolled_back_complaint_raises_no_warning(
    db: Engine, migrated_url: str, settings: Settings, lamp: Any
) -> None:
    _post(migrated_url, settings, [_on_asset(lamp.code)] * 2)
    _post(migrated_url, settings, [_on_asset(lamp.code)], rollback=True)
    assert _warnings(db) == [] and _events(db) == []
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM complaints")).scalar() == 2


def test_concurrent_complaints_raise_exactly_one_warning(
    db: Engine, migrated_url: str, settings: Settings, lamp: Any
) -> None:
    async def one(conninfo: str, resolver: Resolver) -> None:
        async with (
            await AsyncConnection.connect(conninfo, autocommit=True) as read,
            await AsyncConnection.connect(conninfo, autocommit=True) as write,
        ):
            data = _on_asset(lamp.code, category="井盖缺失")
            data.x, data.y = at_m(3)
            await complaints.create_complaint(
                read, write, resolver, _NoLog(), data, actor="t", settings=settings.area, hotspot_rules=RULES
            )

    async def main() -> None:
        conninfo = conninfo_from_url(migrated_url)
        resolver = Resolver(settings, ServiceArea.from_settings(settings))
        await asyncio.gather(*(one(conninfo, resolver) for _ in range(8)))

    asyncio.run(main())
    kinds = sorted((w.kind, w.count) for w in _warnings(db))
    assert kinds == [("asset", 8), ("place", 8)]
    assert len(_events(db)) == 2


def test_a_status_change_on_the_first_complaint_does_not_block_the_one_raising_the_warning(
    db: Engine, migrated_url: str, settings: Settings, lamp: Any
) -> None:
    import threading

    from registry import complaint_status

    first, _ = _post(migrated_url, settings, [_on_asset(lamp.code)] * 2)
    raised: list[Any] = []
    # A status change of the first complaint holds its row lock (and would next wait for the asset's
    # event lock); the third complaint, raising a warning whose first complaint is that row, must
    # not wait for it, or the two deadlock.
    with db.connect() as holder:
        holder.begin()
        holder.execute(text(complaint_status._ROW_SQL), {"reference": first["reference"]}).one()
        poster = threading.Thread(
            target=lambda: raised.extend(_post(migrated_url, settings, [_on_asset(lamp.code)]))
        )
        poster.start()
        poster.join(timeout=30)
        assert not poster.is_alive() and raised, "the third complaint waited for the status change's row lock"
        holder.rollback()
    with db.connect() as conn:
        first_id = conn.execute(
            text("SELECT id FROM complaints WHERE reference = :r"), {"r": first["reference"]}
        ).scalar_one()
    (warning,) = _warnings(db)
    assert warning.first_complaint_id == first_id and warning.count == 3


def _three_on(client: TestClient, auth: dict[str, str], code: str) -> None:
    for _ in range(3):
        response = client.post(
            "/open311/v2/requests.json",
            data={
                "api_key": auth["Authorization"].removeprefix("Bearer "),
                "service_code": "路灯不亮",
                "attribute[asset_code]": code,
            },
        )
        assert response.status_code == 200, response.text


def test_the_api_lists_filters_and_acknowledges(
    client: TestClient, auth: dict[str, str], db: Engine, admin: Actor, lamp: Any
) -> None:
    other = make_unit(db, "深圳市水务集团", admin, kind="utility")
    _three_on(client, auth, lamp.code)
    with transaction(db) as session:
        owner = {
            "Authorization": f"Bearer {create_token(session, 'o', 'unit', admin, unit_id=lamp.owner_id)}"
        }
        stranger = {"Authorization": f"Bearer {create_token(session, 's', 'unit', admin, unit_id=other.id)}"}
        reader = {"Authorization": f"Bearer {create_token(session, 'r', 'reader', admin)}"}

    assert client.get("/api/v1/hotspots").status_code == 401
    items = client.get("/api/v1/hotspots", headers=reader).json()["items"]
    assert [(i["kind"], i["kind_label"], i["asset_code"], i["count"]) for i in items] == [
        ("asset", "高频", lamp.code, 3)
    ]
    (item,) = items
    assert item["unit"]["id"] == lamp.owner_id and item["state"] == "active"
    lon, lat = at_m(3)

    def ids(**params: Any) -> list[int]:
        response = client.get("/api/v1/hotspots", headers=auth, params=params)
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["items"]]

    assert ids(kind="asset") == [item["id"]] and ids(kind="place") == []
    assert ids(state="active") == [item["id"]] and ids(state="acknowledged") == []
    assert ids(unit=lamp.owner_id) == [item["id"]] and ids(unit=other.id) == []
    assert ids(bbox=f"{lon - 0.001},{lat - 0.001},{lon + 0.001},{lat + 0.001}") == [item["id"]]
    assert ids(bbox="114.40,22.75,114.41,22.76") == []
    assert ids(category="井盖缺失") == []
    bad = client.get("/api/v1/hotspots", headers=auth, params={"state": "done"})
    assert bad.status_code == 400 and "state" in bad.text

    url = f"/api/v1/hotspots/{item['id']}/acknowledge"
    assert client.post(url, headers=stranger).status_code == 403
    assert client.post(url, headers=reader).status_code == 403
    done = client.post(url, headers=owner)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "acknowledged" and done.json()["acknowledged_by"] == "token:o"
    assert ids(state="acknowledged") == [item["id"]]
    assert client.post("/api/v1/hotspots/999/acknowledge", headers=auth).status_code == 404


def test_a_warning_expires_d_days_after_its_last_complaint(
    client: TestClient, auth: dict[str, str], db: Engine, owner_engine: Engine, lamp: Any
) -> None:
    _three_on(client, auth, lamp.code)
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE hotspot_warnings SET last_at = now() - interval '8 days'"))
    (item,) = client.get("/api/v1/hotspots", headers=auth).json()["items"]
    assert item["state"] == "expired"
    assert client.post(f"/api/v1/hotspots/{item['id']}/acknowledge", headers=auth).status_code == 409
    # Later complaints raise a new warning rather than reviving the expired one.
    _three_on(client, auth, lamp.code)
    states = [i["state"] for i in client.get("/api/v1/hotspots", headers=auth).json()["items"]]
    assert states == ["active", "expired"]
