"""Reads never write: lookups run on connections that refuse writes; the log goes to the primary."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from common.settings import Settings
from registry import resolution
from registry.db import Actor
from registry.resolution import LocationQuery, Resolver, conninfo_from_url, resolution_connection_kwargs
from registry.resolution_log import DirectLog, get_resolution
from tests.conftest import ADMIN_TOKEN
from tests.helpers import PINGSHAN, make_asset, make_unit
from tests.test_resolve import add_rule, add_zone, box, pt


def test_lookups_by_code_and_by_location_work_on_a_connection_that_refuses_writes(
    db: Engine, admin: Actor, settings: Settings, migrated_url: str
) -> None:
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    lamp = make_asset(db, admin, owner_id=power.id, geometry=pt(3))
    conninfo = conninfo_from_url(migrated_url)
    resolver = Resolver(settings)

    async def main() -> list[dict[str, Any]]:
        async with (
            await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, options="-c default_transaction_read_only=on"
            ) as read,
            await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as primary,
        ):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                await read.execute("SELECT nextval('resolution_log_id_seq')")
            log = DirectLog.on(primary)
            by_code, _ = await resolver.resolve_code(read, lamp.code, log=log, actor="t", channel="test")
            query = LocationQuery(*PINGSHAN, classes=["0118"], category="路灯不亮")
            located, _ = await resolver.resolve_location(read, query, log=log, actor="t", channel="test")
            anywhere, _ = await resolver.resolve_location(
                read, LocationQuery(*PINGSHAN), log=log, actor="t", channel="test"
            )
            logged = [await get_resolution(primary, a["id"]) for a in (by_code, located, anywhere)]
            return [by_code, located, anywhere, *logged]

    by_code, located, anywhere, *logged = asyncio.run(main())
    assert by_code["status"] == "resolved" and by_code["owner"]["id"] == power.id
    assert located["asset"]["code"] == lamp.code and located["owner"]["id"] == power.id
    assert anywhere["asset"]["code"] == lamp.code
    assert [entry["answer"] for entry in logged] == [by_code, located, anywhere]


def test_the_lookup_connections_refuse_writes(migrated_url: str) -> None:
    with psycopg.connect(conninfo_from_url(migrated_url), **resolution_connection_kwargs()) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM resolution_log")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_ownerless_asset_of_a_named_class_is_decided_in_one_query(
    db: Engine, admin: Actor, settings: Settings, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The nearest lamp has no owner: the rule for lamps decides. The rule came with the location's
    # rows when the lookup named the class; only a lookup for any class needs a second query.
    make_unit(db, "坪山区路灯管理所", admin, kind="government")
    lamp = make_asset(db, admin, geometry=pt(3))
    add_zone(db, admin, "street", "坪山街道", box(-1000, -1000, 1000, 1000))
    add_rule(db, admin, zone="坪山街道", level="street", class_="0118", unit="坪山区路灯管理所")
    conninfo = conninfo_from_url(migrated_url)
    resolver = Resolver(settings)
    statements: list[str] = []
    real_rows = resolution._rows

    async def counting(conn: Any, statement: str, params: Any = None) -> list[dict[str, Any]]:
        statements.append(statement)
        return await real_rows(conn, statement, params)

    async def lookup(query: LocationQuery) -> tuple[dict[str, Any], int]:
        async with (
            await psycopg.AsyncConnection.connect(conninfo, **resolution_connection_kwargs()) as read,
            await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as primary,
        ):
            await resolver.prepare(read)
            statements.clear()
            answer, _ = await resolver.resolve_location(
                read, query, log=DirectLog.on(primary), actor="t", channel="test"
            )
            return answer, len(statements)

    monkeypatch.setattr(resolution, "_rows", counting)
    named, named_queries = asyncio.run(lookup(LocationQuery(*PINGSHAN, classes=["0118"])))
    assert named["rule"] == "responsibility_rule" and named["owner"]["name"] == "坪山区路灯管理所"
    assert named["asset"]["code"] == lamp.code
    assert named_queries == 1
    anything, any_queries = asyncio.run(lookup(LocationQuery(*PINGSHAN)))
    assert anything["owner"] == named["owner"] and any_queries == 2


def test_with_a_read_url_lookups_read_there_and_the_log_is_written_to_the_primary(
    db: Engine, admin: Actor, settings: Settings, migrated_url: str
) -> None:
    from api.app import create_app

    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility")
    lamp = make_asset(db, admin, owner_id=power.id, geometry=pt(3))
    # The "replica" is the same database under another application name, so its sessions show.
    sep = "&" if "?" in migrated_url else "?"
    read_url = f"{migrated_url}{sep}application_name=smartcode-replica-test"
    with_replica = settings.model_copy(
        update={"database": settings.database.model_copy(update={"read_url": read_url})}
    )
    app = create_app(with_replica, url=migrated_url)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(app) as client:
        runtime = app.state.resolve
        assert "smartcode-replica-test" in runtime.read_conninfo
        assert "smartcode-replica-test" not in runtime.conninfo
        answer = client.get("/api/v1/resolve", params={"code": lamp.code}, headers=auth).json()
        assert answer["owner"]["id"] == power.id
        with psycopg.connect(conninfo_from_url(migrated_url)) as conn:
            sessions = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'smartcode-replica-test'"
            ).fetchone()
        assert sessions is not None and sessions[0] >= 1
        logged = client.get(f"/api/v1/resolutions/{answer['id']}", headers=auth).json()
        assert logged["answer"] == answer


def test_in_sync_log_mode_the_answer_is_in_the_primarys_log_before_it_is_returned(
    db: Engine, admin: Actor, settings: Settings, migrated_url: str
) -> None:
    from api.app import create_app

    lamp = make_asset(db, admin, geometry=pt(3))
    sync = settings.model_copy(update={"resolve": settings.resolve.model_copy(update={"log_mode": "sync"})})
    app = create_app(sync, url=migrated_url)
    with TestClient(app) as client:
        answer = client.get("/api/v1/resolve", params={"code": lamp.code}).json()
        with psycopg.connect(conninfo_from_url(migrated_url)) as conn:
            row = conn.execute(
                "SELECT asset_code, channel FROM resolution_log WHERE id = %s", (answer["id"],)
            ).fetchone()
    assert row == (lamp.code, "api")
