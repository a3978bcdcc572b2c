"""Every write endpoint of the API, called as each kind of caller, against the policy (registry/access.py).

The callers: the administrator, the unit owning the asset, the unit maintaining it, another unit, a
reader and an anonymous caller. Each answer's status is checked; a refused call must leave the
registry exactly as it was, an allowed one must change it.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from common.settings import Settings
from importers.pipeline import ImportOptions, run_import
from registry import assets, disputes, tokens
from registry.db import Actor, transaction
from registry.schemas import UnitsChange
from tests.conftest import ADMIN_TOKEN
from tests.helpers import make_asset, make_unit, point
from tests.test_import_pipeline import CITY, POWER, WATER, lamp, write_geojson

GAS = "深圳市燃气集团股份有限公司"
ROLES = ("anonymous", "reader", "other", "maintainer", "owner", "admin")
_KEEP = {"alembic_version", "spatial_ref_sys", "component_classes", "complaint_categories"}
_BOX = [[114.340, 22.690], [114.352, 22.690], [114.352, 22.700], [114.340, 22.700], [114.340, 22.690]]
_ELSEWHERE = [[114.36, 22.71], [114.37, 22.71], [114.37, 22.72], [114.36, 22.72], [114.36, 22.71]]

# What changes when a write is let through, and must not change when it is refused.
_FINGERPRINT = text(
    """
    SELECT concat_ws(' | ',
      (SELECT string_agg(concat_ws(',', id, version, owner_id, maintainer_id, supervisor_id, in_use, note),
                         ';' ORDER BY id) FROM assets),
      (SELECT string_agg(concat_ws(',', id, version, name, phone), ';' ORDER BY id) FROM units),
      (SELECT count(*) FROM component_classes),
      (SELECT string_agg(concat_ws(',', name, active, version), ';' ORDER BY name) FROM complaint_categories),
      (SELECT string_agg(concat_ws(',', id, valid_to), ';' ORDER BY id) FROM zones),
      (SELECT string_agg(concat_ws(',', id, valid_to), ';' ORDER BY id) FROM responsibility_rules),
      (SELECT string_agg(concat_ws(',', name, revoked_at), ';' ORDER BY name) FROM api_tokens),
      (SELECT string_agg(concat_ws(',', id, status), ';' ORDER BY id) FROM responsibility_proposals),
      (SELECT string_agg(concat_ws(',', id, status), ';' ORDER BY id) FROM import_batches),
      (SELECT string_agg(concat_ws(',', id, revoked_at), ';' ORDER BY id) FROM label_issues),
      (SELECT count(*) FROM complaints),
      (SELECT string_agg(concat_ws(',', id, state), ';' ORDER BY id) FROM hotspot_warnings),
      (SELECT string_agg(concat_ws(',', id, status, version), ';' ORDER BY id) FROM complaints),
      (SELECT string_agg(concat_ws(',', id, state, version), ';' ORDER BY id) FROM disputes),
      (SELECT count(*) FROM dispute_evidence),
      (SELECT string_agg(concat_ws(',', class_code, next_serial), ';' ORDER BY class_code) FROM code_serials),
      (SELECT string_agg(concat_ws(',', id, url, array_to_string(events, ' '), enabled, deleted_at), ';'
                         ORDER BY id) FROM webhook_subscriptions),
      (SELECT string_agg(concat_ws(',', id, state, next_attempt_at), ';' ORDER BY id)
         FROM webhook_deliveries))
    """
)


@dataclass
class World:
    """Three units, one asset (owned by power, maintained by water), tokens for every caller."""

    owner: int
    maintainer: int
    other: int
    code: str
    version: int
    headers: dict[str, dict[str, str]]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One endpoint: how to call it, what it needs set up, and the status each caller gets."""

    name: str
    endpoint: str  # method and path as the OpenAPI document names them
    call: Callable[[TestClient, World, dict[str, str]], Any]
    expect: dict[str, int]
    needs: tuple[str, ...] = ()


def _expect(
    admin: int, owner: int = 403, maintainer: int = 403, other: int = 403, reader: int = 403
) -> dict[str, int]:
    return {
        "admin": admin,
        "owner": owner,
        "maintainer": maintainer,
        "other": other,
        "reader": reader,
        "anonymous": 401,
    }


def _geojson_upload(features: list[dict[str, Any]]) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False).encode()


def _polygon(ring: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring]}


CASES = [
    Case(
        "register",
        "POST /api/v1/assets",
        lambda c, w, h: c.post(
            "/api/v1/assets", headers=h, json={"class_code": "0118", "geometry": point(), "owner_id": w.owner}
        ),
        _expect(201, owner=201),
    ),
    Case(
        "register with a code",
        "POST /api/v1/assets",
        lambda c, w, h: c.post(
            "/api/v1/assets",
            headers=h,
            json={"class_code": "0118", "geometry": point(), "owner_id": w.owner, "code": "4403100118000777"},
        ),
        _expect(201),
    ),
    Case(
        "edit asset",
        "PATCH /api/v1/assets/{code}",
        lambda c, w, h: c.patch(
            f"/api/v1/assets/{w.code}", headers=h, json={"version": w.version, "note": "x"}
        ),
        _expect(200, owner=200, maintainer=200),
    ),
    Case(
        "hand over",
        "POST /api/v1/assets/{code}/units",
        lambda c, w, h: c.post(
            f"/api/v1/assets/{w.code}/units",
            headers=h,
            json={"version": w.version, "owner_id": w.other, "reason": "sold"},
        ),
        _expect(200, owner=202),  # a unit's hand-over is a proposal
    ),
    Case(
        "decommission",
        "POST /api/v1/assets/{code}/decommission",
        lambda c, w, h: c.post(
            f"/api/v1/assets/{w.code}/decommission",
            headers=h,
            json={"version": w.version, "reason": "removed"},
        ),
        _expect(200, owner=200),
    ),
    Case(
        "create unit",
        "POST /api/v1/units",
        lambda c, w, h: c.post("/api/v1/units", headers=h, json={"name": "新单位", "kind": "other"}),
        _expect(201),
    ),
    Case(
        "edit unit contact",
        "PATCH /api/v1/units/{unit_id}",
        lambda c, w, h: c.patch(
            f"/api/v1/units/{w.owner}", headers=h, json={"version": 1, "phone": "110", "reason": "电话变更"}
        ),
        _expect(200, owner=200),
    ),
    Case(
        "edit unit identity",
        "PATCH /api/v1/units/{unit_id}",
        lambda c, w, h: c.patch(
            f"/api/v1/units/{w.owner}", headers=h, json={"version": 1, "name": "改名", "reason": "更名"}
        ),
        _expect(200),
    ),
    Case(
        "add class",
        "POST /api/v1/classes",
        lambda c, w, h: c.post(
            "/api/v1/classes",
            headers=h,
            json={"code": "9901", "name": "测试线缆", "big_name": "测试", "geometry_type": "line"},
        ),
        _expect(201),
    ),
    Case(
        "put category",
        "PUT /api/v1/categories/{name}",
        lambda c, w, h: c.put("/api/v1/categories/测试类别新", headers=h, json={"classes": ["0118"]}),
        _expect(201),
    ),
    Case(
        "deactivate category",
        "DELETE /api/v1/categories/{name}",
        lambda c, w, h: c.delete("/api/v1/categories/测试类别", headers=h),
        _expect(200),
        needs=("category",),
    ),
    Case(
        "create zone",
        "POST /api/v1/zones",
        lambda c, w, h: c.post(
            "/api/v1/zones",
            headers=h,
            json={"level": "grid", "name": "测试网格", "geometry": _polygon(_ELSEWHERE)},
        ),
        _expect(201),
    ),
    Case(
        "import zones",
        "POST /api/v1/zones/import",
        lambda c, w, h: c.post(
            "/api/v1/zones/import",
            headers=h,
            files={
                "file": (
                    "z.geojson",
                    _geojson_upload(
                        [
                            {
                                "type": "Feature",
                                "properties": {"NAME": "一标段"},
                                "geometry": _polygon(_ELSEWHERE),
                            }
                        ]
                    ),
                )
            },
            data={"level": "contract", "name_field": "NAME"},
        ),
        _expect(200),
    ),
    Case(
        "close zone",
        "POST /api/v1/zones/{zone_id}/close",
        lambda c, w, h: c.post(f"/api/v1/zones/{w.extra['zone']}/close", headers=h, json={}),
        _expect(200),
        needs=("zone",),
    ),
    Case(
        "create rule",
        "POST /api/v1/rules",
        lambda c, w, h: c.post(
            "/api/v1/rules",
            headers=h,
            json={"zone": "六联社区", "level": "community", "class": "0120", "unit_id": w.owner},
        ),
        _expect(201),
        needs=("zone",),
    ),
    Case(
        "import rules",
        "POST /api/v1/rules/import",
        lambda c, w, h: c.post(
            "/api/v1/rules/import",
            headers=h,
            files={
                "file": (
                    "r.csv",
                    f"zone,level,class,category,unit,priority\n六联社区,community,0119,,{POWER},1\n".encode(),
                )
            },
        ),
        _expect(200),
        needs=("zone",),
    ),
    Case(
        "close rule",
        "POST /api/v1/rules/{rule_id}/close",
        lambda c, w, h: c.post(f"/api/v1/rules/{w.extra['rule']}/close", headers=h, json={}),
        _expect(200),
        needs=("zone", "rule"),
    ),
    Case(
        "import",
        "POST /api/v1/imports",
        lambda c, w, h: _import(c, h),
        _expect(202, owner=202, maintainer=202, other=202),  # rows of other units are rejected row by row
    ),
    Case(
        "roll back an import",
        "POST /api/v1/imports/{import_id}/rollback",
        lambda c, w, h: c.post(f"/api/v1/imports/{w.extra['batch']}/rollback", headers=h),
        _expect(200, owner=200),
        needs=("batch",),
    ),
    Case(
        "issue token",
        "POST /api/v1/tokens",
        lambda c, w, h: c.post("/api/v1/tokens", headers=h, json={"name": "new", "role": "reader"}),
        _expect(201),
    ),
    Case(
        "revoke token",
        "POST /api/v1/tokens/{name}/revoke",
        lambda c, w, h: c.post("/api/v1/tokens/victim/revoke", headers=h, json={}),
        _expect(200),
        needs=("victim",),
    ),
    Case(
        "print labels",
        "POST /api/v1/labels",
        lambda c, w, h: c.post("/api/v1/labels", headers=h, json={"codes": [w.code], "format": "svg"}),
        _expect(200, owner=200, maintainer=200),
    ),
    Case(
        "revoke label",
        "POST /api/v1/labels/{code}/revoke",
        lambda c, w, h: c.post(
            f"/api/v1/labels/{w.code}/revoke", headers=h, json={"kind": "damaged", "reason": "标签破损"}
        ),
        _expect(200, owner=200, maintainer=200),
        needs=("label",),
    ),
    Case(
        "post an Open311 case",
        "POST /open311/v2/requests.{fmt}",
        lambda c, w, h: c.post(
            "/open311/v2/requests.json",
            data={
                "api_key": h.get("Authorization", "").removeprefix("Bearer "),
                "service_code": "路灯不亮",
                "attribute[asset_code]": w.code,
                "description": "路灯不亮",
            },
        ),
        # Open311 answers a missing api_key with 403 (GeoReport v2), not 401.
        {**_expect(200, owner=200, maintainer=200, other=200, reader=200), "anonymous": 403},
    ),
    Case(
        "file a complaint by the JSON API",
        "POST /api/v1/complaints",
        lambda c, w, h: c.post(
            "/api/v1/complaints", headers=h, json={"source": "api", "code": w.code, "category": "路灯不亮"}
        ),
        # Any token files a case, as by Open311 (the case system holds a reader token).
        _expect(201, owner=201, maintainer=201, other=201, reader=201),
    ),
    Case(
        "file a complaint as the case system",
        "POST /api/v1/complaints",
        lambda c, w, h: c.post(
            "/api/v1/complaints",
            headers=h,
            json={"source": "case_system", "code": w.code, "category": "路灯不亮"},
        ),
        # Only the case system's own token (reader) or an administrator: its case ids are 12345's.
        _expect(201, owner=403, maintainer=403, other=403, reader=201),
    ),
    Case(
        "accept a complaint",
        "POST /api/v1/complaints/{reference}/status",
        lambda c, w, h: c.post(
            f"/api/v1/complaints/{w.extra['complaint']}/status",
            headers=h,
            json={"status": "accepted", "version": 1},
        ),
        # The unit it was routed to answers for itself; the case system holds a reader token.
        _expect(200, owner=200, maintainer=200, reader=200),
        needs=("complaint",),
    ),
    Case(
        "return a complaint",
        "POST /api/v1/complaints/{reference}/status",
        lambda c, w, h: c.post(
            f"/api/v1/complaints/{w.extra['complaint']}/status",
            headers=h,
            json={"status": "returned", "version": 1, "reason": "不属本单位"},
        ),
        _expect(200, owner=200, maintainer=200, reader=200),
        needs=("complaint",),
    ),
    Case(
        "close a complaint",
        "POST /api/v1/complaints/{reference}/status",
        lambda c, w, h: c.post(
            f"/api/v1/complaints/{w.extra['complaint']}/status",
            headers=h,
            json={"status": "closed", "version": 1},
        ),
        _expect(200, reader=200),
        needs=("complaint",),
    ),
    Case(
        "return a complaint by Open311",
        "POST /open311/v2/servicerequestupdates.{fmt}",
        lambda c, w, h: c.post(
            "/open311/v2/servicerequestupdates.json",
            data={
                "api_key": h.get("Authorization", "").removeprefix("Bearer "),
                "service_request_id": w.extra["complaint"],
                "status": "NOT_COUNCILS_RESPONSIBILITY",
                "description": "不属本单位",
            },
        ),
        {**_expect(200, owner=200, maintainer=200, reader=200), "anonymous": 403},
        needs=("complaint",),
    ),
    Case(
        "open a dispute",
        "POST /api/v1/disputes",
        lambda c, w, h: c.post(
            "/api/v1/disputes",
            headers=h,
            json={
                "subject_kind": "asset",
                "subject_id": w.code,
                "reason": "非我单位资产",
                "unit_id": w.owner,
            },
        ),
        # A named unit objects for itself only (the maintainer may not speak for the owner).
        _expect(201, owner=201),
    ),
    Case(
        "review a dispute",
        "POST /api/v1/disputes/{dispute_id}/review",
        lambda c, w, h: c.post(
            f"/api/v1/disputes/{w.extra['dispute']}/review", headers=h, json={"version": 1}
        ),
        _expect(200),
        needs=("dispute",),
    ),
    Case(
        "decide a dispute",
        "POST /api/v1/disputes/{dispute_id}/decision",
        lambda c, w, h: c.post(
            f"/api/v1/disputes/{w.extra['dispute']}/decision",
            headers=h,
            json={"version": 2, "outcome": "rejected", "reason": "资料表明为该单位资产"},
        ),
        _expect(200),
        needs=("dispute", "dispute_review"),
    ),
    Case(
        "withdraw a dispute",
        "POST /api/v1/disputes/{dispute_id}/withdraw",
        lambda c, w, h: c.post(
            f"/api/v1/disputes/{w.extra['dispute']}/withdraw", headers=h, json={"version": 1}
        ),
        _expect(200, owner=200),
        needs=("dispute",),
    ),
    Case(
        "add evidence to a dispute",
        "POST /api/v1/disputes/{dispute_id}/evidence",
        lambda c, w, h: c.post(
            f"/api/v1/disputes/{w.extra['dispute']}/evidence",
            headers=h,
            data={"version": "1", "note": "补充移交合同"},
            files={"evidence_1": ("合同.pdf", b"%PDF-1.7\n%%EOF\n", "application/pdf")},
        ),
        # The dispute is the owner's: the maintainer, named by the asset too, is not a party to it.
        _expect(200, owner=200),
        needs=("dispute",),
    ),
    Case(
        "subscribe a webhook",
        "POST /api/v1/webhooks",
        lambda c, w, h: c.post(
            "/api/v1/webhooks", headers=h, json={"url": "https://cases.example.cn/h", "events": ["*"]}
        ),
        _expect(201),
    ),
    Case(
        "change a webhook",
        "PATCH /api/v1/webhooks/{subscription_id}",
        lambda c, w, h: c.patch(f"/api/v1/webhooks/{w.extra['webhook']}", headers=h, json={"enabled": False}),
        _expect(200),
        needs=("webhook",),
    ),
    Case(
        "delete a webhook",
        "DELETE /api/v1/webhooks/{subscription_id}",
        lambda c, w, h: c.delete(f"/api/v1/webhooks/{w.extra['webhook']}", headers=h),
        _expect(200),
        needs=("webhook",),
    ),
    Case(
        "redeliver a webhook",
        "POST /api/v1/webhooks/{subscription_id}/redeliver",
        lambda c, w, h: c.post(
            f"/api/v1/webhooks/{w.extra['webhook']}/redeliver", headers=h, json={"event_id": w.extra["event"]}
        ),
        _expect(200),
        needs=("webhook",),
    ),
    Case(
        "accept proposal",
        "POST /api/v1/proposals/{proposal_id}/accept",
        lambda c, w, h: c.post(f"/api/v1/proposals/{w.extra['proposal']}/accept", headers=h),
        {**_expect(200, maintainer=200), "other": 404},  # other units do not see it
        needs=("proposal",),
    ),
    Case(
        "decline proposal",
        "POST /api/v1/proposals/{proposal_id}/decline",
        lambda c, w, h: c.post(f"/api/v1/proposals/{w.extra['proposal']}/decline", headers=h),
        {**_expect(200, maintainer=200), "other": 404},
        needs=("proposal",),
    ),
    Case(
        "acknowledge a hot-spot warning",
        "POST /api/v1/hotspots/{warning_id}/acknowledge",
        lambda c, w, h: c.post(f"/api/v1/hotspots/{w.extra['hotspot']}/acknowledge", headers=h),
        _expect(200, owner=200),  # the owner is the unit the complaints named responsible
        needs=("hotspot",),
    ),
]


def _import(client: TestClient, headers: dict[str, str]) -> Any:
    body = _geojson_upload([lamp(114.3470, 22.6960)])
    response = client.post(
        "/api/v1/imports", headers=headers, files={"file": ("l.geojson", io.BytesIO(body))}
    )
    if response.status_code == 202:
        # Wait for the job, so what it writes is seen (and does not outlive the test).
        for _ in range(200):
            if client.get(response.json()["url"], headers=headers).json().get("done"):
                break
            time.sleep(0.05)
    return response


def _reset(engine: Engine, seeded_at: str) -> None:
    with engine.begin() as conn:
        tables = (
            conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        )
        conn.execute(
            text(f"TRUNCATE {', '.join(t for t in tables if t not in _KEEP)} RESTART IDENTITY CASCADE")
        )
        conn.execute(text("DELETE FROM component_classes WHERE created_at > :t"), {"t": seeded_at})
        conn.execute(text("DELETE FROM complaint_categories WHERE name LIKE '测试%'"))


def _build(
    client: TestClient, db: Engine, settings: Settings, admin: Actor, needs: tuple[str, ...], tmp: Path
) -> World:
    owner = make_unit(db, POWER, admin, kind="utility").id
    maintainer = make_unit(db, WATER, admin, kind="utility").id
    other = make_unit(db, GAS, admin, kind="utility").id
    make_unit(db, CITY, admin, kind="government")
    asset = make_asset(db, admin, owner_id=owner, maintainer_id=maintainer)
    secrets: dict[str, dict[str, str]] = {
        "admin": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
        "anonymous": {},
    }
    with transaction(db) as session:
        for role, unit_id in (("owner", owner), ("maintainer", maintainer), ("other", other)):
            secret = tokens.create_token(session, role, "unit", admin, unit_id=unit_id)
            secrets[role] = {"Authorization": f"Bearer {secret}"}
        secrets["reader"] = {
            "Authorization": f"Bearer {tokens.create_token(session, 'reader', 'reader', admin)}"
        }
        if "victim" in needs:
            tokens.create_token(session, "victim", "reader", admin)
    world = World(owner, maintainer, other, asset.code, asset.version, secrets)
    auth = secrets["admin"]
    if "category" in needs:
        assert (
            client.put("/api/v1/categories/测试类别", headers=auth, json={"classes": ["0118"]}).status_code
            == 201
        )
    if "zone" in needs:
        zone = client.post(
            "/api/v1/zones",
            headers=auth,
            json={"level": "community", "name": "六联社区", "geometry": _polygon(_BOX), "unit_id": owner},
        )
        assert zone.status_code == 201, zone.text
        world.extra["zone"] = zone.json()["id"]
    if "rule" in needs:
        rule = client.post(
            "/api/v1/rules",
            headers=auth,
            json={"zone": "六联社区", "level": "community", "class": "0118", "unit_id": owner},
        )
        assert rule.status_code == 201, rule.text
        world.extra["rule"] = rule.json()["id"]
    if "batch" in needs:
        path = write_geojson(tmp / "batch.geojson", [lamp(114.3475, 22.6965)])
        report = run_import(db, path, Actor("token:owner", unit_id=owner), settings, ImportOptions())
        assert report.created == 1
        world.extra["batch"] = report.batch_id
    if "label" in needs:
        printed = client.post("/api/v1/labels", headers=auth, json={"codes": [asset.code], "format": "svg"})
        assert printed.status_code == 200, printed.text
    if "complaint" in needs:
        filed = client.post(
            "/open311/v2/requests.json",
            data={"api_key": ADMIN_TOKEN, "service_code": "路灯不亮", "attribute[asset_code]": asset.code},
        )
        assert filed.status_code == 200, filed.text
        world.extra["complaint"] = filed.json()[0]["service_request_id"]
    if "dispute" in needs:
        with transaction(db) as session:
            opened = disputes.open_dispute(
                session,
                Actor("token:owner", unit_id=owner),
                subject_kind="asset",
                subject_id=asset.code,
                reason="非我单位资产",
                settings=settings,
            )
            if "dispute_review" in needs:
                disputes.start_review(session, admin, opened["id"], version=1, settings=settings)
            world.extra["dispute"] = opened["id"]
    if "webhook" in needs:
        hook = client.post(
            "/api/v1/webhooks", headers=auth, json={"url": "https://cases.example.cn/h", "events": ["*"]}
        )
        assert hook.status_code == 201, hook.text
        world.extra["webhook"] = hook.json()["id"]
        with db.connect() as conn:  # the asset's registration
            world.extra["event"] = conn.execute(text("SELECT max(id) FROM event_outbox")).scalar_one()
    if "hotspot" in needs:
        for _ in range(3):  # three complaints about the asset in a week: a 高频 warning (defaults)
            posted = client.post(
                "/open311/v2/requests.json",
                data={
                    "api_key": ADMIN_TOKEN,
                    "service_code": "路灯不亮",
                    "attribute[asset_code]": asset.code,
                },
            )
            assert posted.status_code == 200, posted.text
        (warning,) = client.get("/api/v1/hotspots", headers=auth).json()["items"]
        world.extra["hotspot"] = warning["id"]
    if "proposal" in needs:
        with transaction(db) as session:
            owner_actor = Actor("token:owner", unit_id=owner)
            change = UnitsChange(version=asset.version, owner_id=maintainer, reason="handing over")
            _, (proposal,) = assets.hand_over(session, asset.code, change, owner_actor)
            world.extra["proposal"] = proposal.id
    return world


def _fingerprint(db: Engine) -> str:
    with db.connect() as conn:
        return str(conn.execute(_FINGERPRINT).scalar_one())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_write_endpoint_answers_each_caller_as_the_policy_says(
    case: Case,
    client: TestClient,
    db: Engine,
    owner_engine: Engine,
    settings: Settings,
    admin: Actor,
    _seeded_at: str,
    tmp_path: Path,
) -> None:
    assert set(case.expect) == set(ROLES)
    world = _build(client, db, settings, admin, case.needs, tmp_path)
    answers: dict[str, int] = {}
    try:
        for role in ROLES:  # refusals first: an allowed call changes the world, which is then rebuilt
            before = _fingerprint(db)
            response = case.call(client, world, world.headers[role])
            answers[role] = response.status_code
            after = _fingerprint(db)
            if response.status_code < 400:
                assert after != before, (
                    f"{case.name} as {role}: answered {response.status_code}, changed nothing"
                )
                _reset(owner_engine, _seeded_at)
                world = _build(client, db, settings, admin, case.needs, tmp_path)
            else:
                assert after == before, f"{case.name} as {role}: refused ({response.status_code}) but wrote"
                body = response.json()
                # The project's envelope, or Open311's own [{code, description}] under /open311.
                assert "error" in body or (case.endpoint.startswith("POST /open311/") and body[0]["code"])
    finally:
        _reset(owner_engine, _seeded_at)
    assert answers == case.expect


def test_the_table_covers_every_write_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    writes = {
        f"{m.upper()} {p}" for p, ops in paths.items() for m in ops if m in ("post", "put", "patch", "delete")
    }
    # The scan page's report form is open to anyone by design (a passer-by reports what they see);
    # its guards (signed form token, per-address limit, caps) are tested in tests/test_scan.py.
    public_forms = {"POST /c/{code}/report"}
    assert writes - public_forms == {case.endpoint for case in CASES}


@dataclass
class _Owned:
    owner_id: int | None
    maintainer_id: int | None


def test_the_policy_is_a_pure_function_of_actor_action_and_target() -> None:
    from common.errors import Forbidden, Unauthorized
    from registry.access import ANONYMOUS, Action, authorize, require

    asset = _Owned(owner_id=1, maintainer_id=2)
    owner, maintainer, stranger = Actor("o", unit_id=1), Actor("m", unit_id=2), Actor("s", unit_id=3)
    assert Actor("a", admin=True).role == "admin" and Actor("r").role == "reader" and owner.role == "unit"
    assert [authorize(a, Action.EDIT_ASSET, asset) for a in (owner, maintainer, stranger)] == [
        True,
        True,
        False,
    ]
    assert [authorize(a, Action.HAND_OVER, asset) for a in (owner, maintainer, stranger)] == [
        True,
        False,
        False,
    ]
    assert authorize(owner, Action.EDIT_UNIT_CONTACT, 1) and not authorize(owner, Action.EDIT_UNIT_CONTACT, 2)
    assert not authorize(Actor("r"), Action.EDIT_ASSET, asset) and authorize(Actor("r"), Action.READ_FULL)
    with pytest.raises(Unauthorized):
        require(ANONYMOUS, Action.EDIT_ASSET, asset)
    with pytest.raises(Forbidden, match="asset X"):
        require(stranger, Action.DECOMMISSION, asset, what="asset X")
    with pytest.raises(ValueError):
        Actor("broken", role="unit")
