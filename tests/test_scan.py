"""The scan page ``/c/{code}``, its report form and the complaint record (HTTP, real database)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.report_limit import SlidingWindowLimiter
from api.routes.scan import RevokedLabels
from common.errors import InvalidInput
from common.settings import Settings
from qr.signing import keys_from_settings
from registry import complaints
from registry.db import Actor, transaction
from registry.labels import (
    IssuedLabel,
    LabelSelection,
    issue_labels,
    label_status,
    revoke_label,
    select_assets,
)
from tests.helpers import make_asset, make_unit
from tests.test_resolve import pt

# Smallest headers the type check accepts; the rest of the bytes is not inspected.
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32


@pytest.fixture
def lamp(db: Engine, admin: Actor):  # type: ignore[no-untyped-def]
    """A street lamp 3 m east of PINGSHAN: owner the power company, maintainer a contractor."""
    power = make_unit(db, "深圳供电局有限公司", admin, kind="utility", phone="95598")
    crew = make_unit(db, "坪山照明养护队", admin, kind="contractor", phone="0755-8888 1234")
    return make_asset(db, admin, owner_id=power.id, maintainer_id=crew.id, geometry=pt(3))


def print_label(
    engine: Engine, settings: Settings, actor: Actor, code: str, *, base_url: str = "http://testserver"
) -> IssuedLabel:
    """Issue (or reprint) the label of one asset with the deployment's keys; its URL and signature."""
    with transaction(engine) as session:
        chosen = select_assets(session, LabelSelection(codes=(code,)), actor)
        (label,) = issue_labels(
            session, chosen, actor, keys=keys_from_settings(settings.labels), base_url=base_url
        )
    return label


def _form(page: str) -> dict[str, str]:
    """The hidden fields of the report form as the page served them."""
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    return fields


def _main_attrs(page: str) -> dict[str, str]:
    tag = re.search(r"<main [^>]*>", page)
    assert tag is not None
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag.group(0)))


def test_page_shows_the_asset_its_parties_and_the_verdict(client: TestClient, lamp: Any) -> None:
    page = client.get(f"/c/{lamp.code}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "深圳供电局有限公司" in html and 'href="tel:95598"' in html
    assert 'href="tel:0755-88881234"' in html  # blanks dropped from the number to dial
    assert "完好" in html and lamp.code[:6] + "-" + lamp.code[6:10] in html
    attrs = _main_attrs(html)
    assert attrs["data-label-status"] == "unsigned"
    # A typed code without a signature gets the passer-by view: no registered position.
    assert "data-lat" not in attrs and "data-lon" not in attrs
    # No external asset: everything the page needs is in it, and it stays small.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert len(page.content) < 40_000
    # Only categories about street lamps, plus the page's own.
    options = re.findall(r'<option value="([^"]+)"', html)
    assert "路灯不亮" in options and "井盖破损" not in options and complaints.LABEL_CATEGORY in options


def test_a_genuine_label_also_gets_the_position(
    client: TestClient, db: Engine, settings: Settings, admin: Actor, lamp: Any
) -> None:
    label = print_label(db, settings, admin, lamp.code)
    html = client.get(label.url.removeprefix("http://testserver")).text
    attrs = _main_attrs(html)
    assert attrs["data-label-status"] == "valid" and "标签有效" in html
    # The registered position, for the distance check in the phone (3 m east of PINGSHAN).
    assert float(attrs["data-lon"]) == pytest.approx(114.3466, abs=1e-4)
    assert float(attrs["data-lat"]) == pytest.approx(22.6953, abs=1e-4)
    fields = _form(html)
    assert fields["s"] == label.signature
    posted = client.post(f"/c/{lamp.code}/report", data={**fields, "category": "路灯不亮"})
    assert posted.status_code == 200
    with db.connect() as conn:
        assert conn.execute(text("SELECT label_status FROM complaints")).scalar() == "valid"


def test_a_revoked_label_says_so(
    client: TestClient, db: Engine, settings: Settings, admin: Actor, lamp: Any
) -> None:
    label = print_label(db, settings, admin, lamp.code)
    with transaction(db) as session:
        revoke_label(session, lamp.code, admin, kind="stolen", reason="标签被撕走")
    html = client.get(label.url.removeprefix("http://testserver")).text
    attrs = _main_attrs(html)
    assert attrs["data-label-status"] == "revoked" and "标签已作废" in html and "data-lat" not in attrs


@pytest.mark.parametrize("revocation_check_s", [0.0, 0.3])
def test_the_page_verdict_is_label_status(
    client: TestClient,
    db: Engine,
    settings: Settings,
    admin: Actor,
    auth: dict[str, str],
    lamp: Any,
    revocation_check_s: float,
) -> None:
    # The page decides on its own async connection, with the revocations looked up each time (0) or
    # cached for a while; it must say what registry.labels says, at the latest once the cache expired.
    client.app.state.scan.revoked = RevokedLabels(revocation_check_s)  # type: ignore[attr-defined]
    label = print_label(db, settings, admin, lamp.code)
    keys = keys_from_settings(settings.labels)
    signatures = [label.signature, None, "1.AAAAAAAAAAAA", "garbage", label.signature.lower()]

    def compare(expected: set[str]) -> None:
        seen = set()
        for signature in signatures:
            params = {"s": signature} if signature is not None else {}
            page = _main_attrs(client.get(f"/c/{lamp.code}", params=params).text)["data-label-status"]
            with transaction(db) as session:
                assert page == label_status(session, lamp.code, signature, keys=keys).status.value
            seen.add(page)
        assert seen == expected

    compare({"valid", "unsigned", "failed"})
    with transaction(db) as session:
        revoke_label(session, lamp.code, admin, kind="counterfeit", reason="发现仿冒标签")
    time.sleep(revocation_check_s * 1.2)
    compare({"revoked", "unsigned", "failed"})
    gone = client.post(
        f"/api/v1/assets/{lamp.code}/decommission", json={"reason": "路灯拆除", "version": 1}, headers=auth
    )
    assert gone.status_code == 200, gone.text
    compare({"decommissioned", "failed"})


def test_a_signature_that_cannot_be_verified_fails(client: TestClient, lamp: Any) -> None:
    html = client.get(f"/c/{lamp.code}", params={"s": "forged"}).text
    attrs = _main_attrs(html)
    assert attrs["data-label-status"] == "failed" and "data-lat" not in attrs
    assert "标签未通过验证" in html and "举报标签问题" in html
    # The report form offers the label category first-hand and carries the signature back.
    assert f'<option value="{complaints.LABEL_CATEGORY}" selected>' in html
    assert _form(html)["s"] == "forged"


def test_decommissioned_asset(client: TestClient, auth: dict[str, str], lamp: Any) -> None:
    gone = client.post(
        f"/api/v1/assets/{lamp.code}/decommission", json={"reason": "路灯拆除", "version": 1}, headers=auth
    )
    assert gone.status_code == 200, gone.text
    html = client.get(f"/c/{lamp.code}").text
    assert _main_attrs(html)["data-label-status"] == "decommissioned" and "已注销" in html


def test_unknown_and_malformed_codes_answer_in_chinese(client: TestClient, lamp: Any) -> None:
    bad = client.get("/c/12345")
    assert bad.status_code == 400 and "编码格式有误" in bad.text and "<html" in bad.text
    typo = lamp.code[:-1] + str((int(lamp.code[-1]) + 1) % 10)
    page = client.get(f"/c/{typo}")
    assert page.status_code == 400 and "校验" in page.text
    assert f'href="/c/{lamp.code}"' in page.text  # the registered code one typo away


def test_unregistered_well_formed_code_is_404(client: TestClient, lamp: Any) -> None:
    from registry.codes import SmartCode

    code = str(SmartCode("440310", "0118", 999_999))
    page = client.get(f"/c/{code}")
    assert page.status_code == 404 and "未找到该部件" in page.text


def test_report_records_a_complaint_with_its_resolution(
    client: TestClient, db: Engine, auth: dict[str, str], lamp: Any
) -> None:
    html = client.get(f"/c/{lamp.code}").text
    fields = _form(html)
    fields.update(lat="22.6953", lon="114.3466", accuracy="12")
    posted = client.post(
        f"/c/{lamp.code}/report",
        data={**fields, "category": "路灯不亮", "description": "晚上不亮", "contact": "13800000000"},
        files={"photo": ("lamp.jpg", JPEG, "image/jpeg")},
    )
    assert posted.status_code == 200, posted.text
    reference = re.search(r'data-reference="([^"]+)"', posted.text)
    assert reference is not None and re.fullmatch(r"SC-\d{8}-\d{6,}", reference.group(1))
    assert "深圳供电局有限公司" in posted.text and "报事已受理" in posted.text
    with db.connect() as conn:
        row = conn.execute(
            text(
                "SELECT c.source, c.asset_code, c.category, c.status, c.owner_id, c.maintainer_id, "
                "c.resolution_rule, c.distance_m, c.label_status, c.reporter, p.content_type, p.size_bytes, "
                "ST_X(c.geom), ST_Y(c.geom) "
                "FROM complaints c JOIN complaint_photos p ON p.complaint_id = c.id "
                "WHERE c.reference = :r"
            ),
            {"r": reference.group(1)},
        ).one()
        history = conn.execute(text("SELECT status, actor FROM complaint_history")).all()
    assert row.source == "scan" and row.asset_code == lamp.code and row.category == "路灯不亮"
    assert (
        row.status == "received" and row.owner_id == lamp.owner_id and row.maintainer_id == lamp.maintainer_id
    )
    assert row.resolution_rule == "code" and row.label_status == "unsigned"
    assert row.distance_m == pytest.approx(3, abs=0.5) and row.reporter == {"phone": "13800000000"}
    assert row.content_type == "image/jpeg" and row.size_bytes == len(JPEG)
    assert (row[12], row[13]) == pytest.approx((114.3466, 22.6953))
    assert history == [("received", "scan-page")]

    # Staff read it back through the API (token); the history per asset lists it.
    listed = client.get(f"/api/v1/assets/{lamp.code}/complaints")
    assert listed.status_code == 401
    items = client.get(f"/api/v1/assets/{lamp.code}/complaints", headers=auth).json()["items"]
    assert [i["reference"] for i in items] == [reference.group(1)]
    one = client.get(f"/api/v1/complaints/{reference.group(1)}", headers=auth).json()
    assert one["resolution"]["owner"]["name"] == "深圳供电局有限公司" and one["photos"] == 1
    assert one["reporter"] == {"phone": "13800000000"} and one["history"][0]["status"] == "received"
    assert one["resolution"]["explanation"]


def test_report_without_javascript_fields_still_records(client: TestClient, db: Engine, lamp: Any) -> None:
    # No position, no photo: what a browser with JavaScript off sends.
    fields = _form(client.get(f"/c/{lamp.code}").text)
    posted = client.post(
        f"/c/{lamp.code}/report",
        data={"t": fields["t"], "category": complaints.OTHER_CATEGORY, "description": "灯杆贴满小广告"},
    )
    assert posted.status_code == 200, posted.text
    with db.connect() as conn:
        row = conn.execute(text("SELECT geom IS NULL, distance_m, description FROM complaints")).one()
    assert row == (True, None, "灯杆贴满小广告")


def test_far_position_is_flagged(client: TestClient, db: Engine, lamp: Any) -> None:
    fields = _form(client.get(f"/c/{lamp.code}").text)
    fields.update(lat="22.6953", lon="114.3486")  # about 200 m east
    posted = client.post(f"/c/{lamp.code}/report", data={**fields, "category": complaints.POSITION_CATEGORY})
    assert posted.status_code == 200 and "距登记位置约" in posted.text
    with db.connect() as conn:
        distance = conn.execute(text("SELECT distance_m FROM complaints")).scalar()
    assert distance is not None and distance > 150


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"t": "123.forged"}, "表单已失效"),
        ({"t": ""}, "表单已失效"),
        ({"t": "9" * 5000 + ".x"}, "表单已失效"),
        ({"t": "١٢٣.x"}, "表单已失效"),
        ({"category": "井盖破损"}, "请选择问题类别"),
        ({"lat": "nan", "lon": "114.3"}, "位置数据无效"),
    ],
)
def test_bad_reports_are_refused_and_nothing_is_recorded(
    client: TestClient, db: Engine, lamp: Any, change: dict[str, str], expected: str
) -> None:
    fields = _form(client.get(f"/c/{lamp.code}").text)
    posted = client.post(f"/c/{lamp.code}/report", data={**fields, "category": "路灯不亮", **change})
    assert posted.status_code == 400 and expected in posted.text and "<html" in posted.text
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM complaints")).scalar() == 0


def test_a_token_for_another_code_is_refused(client: TestClient, db: Engine, admin: Actor, lamp: Any) -> None:
    other = make_asset(db, admin, geometry=pt(20))
    token = _form(client.get(f"/c/{other.code}").text)["t"]
    posted = client.post(f"/c/{lamp.code}/report", data={"t": token, "category": "路灯不亮"})
    assert posted.status_code == 400 and "表单已失效" in posted.text


@pytest.mark.parametrize(
    ("content", "ok"),
    [(PNG, True), (JPEG, True), (WEBP, True), (b"GIF89a" + b"\x00" * 20, False), (b"<svg/>", False)],
)
def test_photos_are_type_checked_by_their_bytes(
    client: TestClient, db: Engine, lamp: Any, content: bytes, ok: bool
) -> None:
    fields = _form(client.get(f"/c/{lamp.code}").text)
    # The claimed type and name say JPEG every time: only the bytes count.
    posted = client.post(
        f"/c/{lamp.code}/report",
        data={**fields, "category": "路灯不亮"},
        files={"photo": ("x.jpg", content, "image/jpeg")},
    )
    assert (posted.status_code == 200) is ok, posted.text
    if not ok:
        assert "JPEG、PNG 或 WebP" in posted.text


def test_oversized_photo_is_refused(client: TestClient, db: Engine, lamp: Any) -> None:
    fields = _form(client.get(f"/c/{lamp.code}").text)
    big = JPEG + b"\x00" * complaints.PHOTO_MAX_BYTES
    posted = client.post(
        f"/c/{lamp.code}/report",
        data={**fields, "category": "路灯不亮"},
        files={"photo": ("big.jpg", big, "image/jpeg")},
    )
    assert posted.status_code == 413 and "MB" in posted.text
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM complaints")).scalar() == 0


def test_a_body_declared_too_large_gets_a_page(client: TestClient, lamp: Any) -> None:
    fields = _form(client.get(f"/c/{lamp.code}").text)
    huge = JPEG + b"\x00" * (complaints.PHOTO_MAX_BYTES + 512 * 1024)
    posted = client.post(
        f"/c/{lamp.code}/report",
        data={**fields, "category": "路灯不亮"},
        files={"photo": ("big.jpg", huge, "image/jpeg")},
    )
    assert posted.status_code == 413 and "<html" in posted.text and "照片不能超过" in posted.text


def test_reports_are_rate_limited_per_address(client: TestClient, lamp: Any) -> None:
    client.app.state.scan.limiter = SlidingWindowLimiter(2, 600)  # type: ignore[attr-defined]
    fields = _form(client.get(f"/c/{lamp.code}").text)
    answers = [
        client.post(f"/c/{lamp.code}/report", data={**fields, "category": "路灯不亮"}).status_code
        for _ in range(3)
    ]
    assert answers == [200, 200, 429]


def test_limiter_window_slides() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(2, 10, clock=lambda: now[0])
    assert limiter.allow("a") and limiter.allow("a") and not limiter.allow("a")
    assert limiter.allow("b") and limiter.retry_after("a") > 0
    now[0] = 10.5
    assert limiter.allow("a")


def test_complaint_record_is_append_only(client: TestClient, db: Engine, lamp: Any) -> None:
    fields = _form(client.get(f"/c/{lamp.code}").text)
    client.post(f"/c/{lamp.code}/report", data={**fields, "category": "路灯不亮"})
    for statement in (
        "UPDATE complaints SET description = 'rewritten'",
        "DELETE FROM complaints",
        "UPDATE complaint_history SET actor = 'someone else'",
        "DELETE FROM complaint_history",
    ):
        with (
            pytest.raises(Exception, match=r"never|append-only|kept as it arrived|permission denied"),
            db.begin() as conn,
        ):
            conn.execute(text(statement))
    # A status change (issue 15's job; only 'received' exists yet, so a new status time and actor
    # stand for it) is allowed and lands in the history by itself.
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE complaints SET status_at = now() + interval '1 minute', status_by = 'case-system', "
                "status_reason = '签收', version = version + 1"
            )
        )
    with db.connect() as conn:
        history = conn.execute(text("SELECT version, actor, reason FROM complaint_history ORDER BY id")).all()
    assert [tuple(h) for h in history] == [(1, "scan-page", None), (2, "case-system", "签收")]


def test_photo_sniffing() -> None:
    assert complaints.sniff_image(PNG) == "image/png"
    assert complaints.sniff_image(WEBP) == "image/webp"
    with pytest.raises(InvalidInput):
        complaints.check_photo(b"")
    with pytest.raises(InvalidInput):
        complaints.sniff_image(b"RIFF\x00\x00\x00\x00WAVE")
