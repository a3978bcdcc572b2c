"""Printed labels: every QR of a generated sheet decodes to a URL whose signature the registry accepts."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image
from shapely.geometry import box
from sqlalchemy import Engine

from common.settings import Settings
from gis.area import ServiceArea
from qr.signing import keys_from_settings
from registry import tokens, zones
from registry.db import Actor, transaction
from registry.labels import LabelStatus, label_status
from tests.conftest import ADMIN_TOKEN
from tests.helpers import COUNTY, PINGSHAN, make_asset, make_unit, point
from tests.test_cli import run

OWNER = "深圳市坪山区城市照明管理所"
PHONE = "0755-84661234"


def _decode_pdf(data: bytes, dpi: int = 200) -> tuple[list[str], list[str]]:
    """Every QR code found on every page (rendered at ``dpi``), and each page's text."""
    document = pdfium.PdfDocument(data)
    urls: list[str] = []
    texts: list[str] = []
    for page in document:
        image = page.render(scale=dpi / 72, grayscale=True).to_pil()
        urls += [found.text for found in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]
        texts.append(page.get_textpage().get_text_range())
    return urls, texts


def _zone_with_assets(db: Engine, admin: Actor, count: int) -> list[Any]:
    owner = make_unit(db, OWNER, admin, phone=PHONE)
    lon, lat = PINGSHAN
    made = [
        make_asset(db, admin, owner_id=owner.id, geometry=point(lon + i * 0.0001, lat)) for i in range(count)
    ]
    make_asset(db, admin, geometry=point(lon + 0.03, lat))  # outside the zone
    with transaction(db) as session:
        zones.save_zone(
            session,
            admin,
            zones.ZoneInput(
                level="community",
                name="坪山社区",
                geometry=box(lon - 0.001, lat - 0.001, lon + 0.01, lat + 0.001),
            ),
            area=ServiceArea.from_settings(),
            county=COUNTY,
        )
    return made


def _check_all_valid(db: Engine, settings: Settings, urls: list[str]) -> None:
    keys = keys_from_settings(settings.labels)
    with transaction(db) as session:
        for url in urls:
            assert url.startswith(settings.labels.public_base_url + "/c/")
            code, signature = url.split("/c/")[1].split("?s=")
            assert label_status(session, code, signature, keys=keys).status is LabelStatus.VALID


def test_cli_sheet_every_qr_decodes_and_verifies(
    db: Engine, settings: Settings, migrated_url: str, admin: Actor, tmp_path: Path
) -> None:
    made = _zone_with_assets(db, admin, 27)  # 3x8 a sheet: two pages, the second part-filled
    env = {
        **os.environ,
        "SMARTCODE_DATABASE_URL": migrated_url,
        "SMARTCODE_API_TOKEN": ADMIN_TOKEN,
        "SMARTCODE_LABELS_KEY_FILE": str(settings.labels.key_file),
    }
    out = tmp_path / "sheet.pdf"
    result = run("labels", "print", "--zone", "坪山社区", "-o", str(out), "--json", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["labels"] == 27 and summary["new"] == 27 and summary["pages"] == 2
    data = out.read_bytes()
    assert b"/FontFile2" in data  # the CJK font is embedded, not left to the reader
    urls, texts = _decode_pdf(data)
    assert sorted(urls) == sorted(set(urls)) and len(urls) == 27
    assert {url.split("/c/")[1].split("?")[0] for url in urls} == {asset.code for asset in made}
    _check_all_valid(db, settings, urls)
    first = made[0].code
    printed = f"{first[:6]}-{first[6:10]}-{first[10:16]}-{first[16]}"
    page_one = texts[0]
    for words in ("扫码报事", "路灯", OWNER, PHONE, printed):
        assert words in page_one.replace("\r\n", "").replace("\n", ""), words
    # Reprinting (here from a file of codes, one per line) gives the very same URLs.
    listing = tmp_path / "codes.txt"
    listing.write_text("\n".join(asset.code for asset in made[:5]) + "\n")
    again = tmp_path / "again.pdf"
    result = run(
        "labels", "print", "--codes-file", str(listing), "--single", "-o", str(again), "--json", env=env
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reprinted"] == 5
    reprinted, _ = _decode_pdf(again.read_bytes(), dpi=300)
    assert len(reprinted) == 5 and set(reprinted) <= set(urls)


def test_single_labels_and_png_decode(
    db: Engine, settings: Settings, admin: Actor, client: TestClient
) -> None:
    made = _zone_with_assets(db, admin, 3)
    token = _token(db, admin, "admin-labels", "admin")
    headers = {"Authorization": f"Bearer {token}"}
    answer = client.post(
        "/api/v1/labels",
        json={"codes": [a.code for a in made], "single": True, "format": "pdf"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pdf"
    document = pdfium.PdfDocument(answer.content)
    width, height = document[0].get_size()
    assert (round(width / 72 * 25.4), round(height / 72 * 25.4)) == (50, 30)
    urls, _ = _decode_pdf(answer.content, dpi=300)
    assert len(urls) == 3
    _check_all_valid(db, settings, urls)
    png = client.post(
        "/api/v1/labels", json={"codes": [made[0].code], "format": "png", "single": True}, headers=headers
    )
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    (found,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
    assert found.text in urls
    svg = client.post("/api/v1/labels", json={"codes": [made[0].code], "format": "svg"}, headers=headers)
    assert svg.status_code == 200 and "扫码报事" in svg.text and "Noto Sans CJK SC" in svg.text
    too_many = client.post(
        "/api/v1/labels",
        json={"codes": [a.code for a in made], "format": "png", "single": True},
        headers=headers,
    )
    assert too_many.status_code == 400 and "PDF" in too_many.json()["error"]["message"]


def _token(db: Engine, admin: Actor, name: str, role: str, unit_id: int | None = None) -> str:
    with transaction(db) as session:
        return tokens.create_token(session, name, role, admin, unit_id=unit_id)


def test_api_unit_token_prints_only_its_own_assets_and_decommissioned_are_refused(
    db: Engine, settings: Settings, admin: Actor, client: TestClient, auth: dict[str, str]
) -> None:
    water = make_unit(db, "坪山水务有限公司", admin)
    gas = make_unit(db, "坪山燃气有限公司", admin)
    own = make_asset(db, admin, owner_id=water.id)
    foreign = make_asset(db, admin, owner_id=gas.id)
    unit_headers = {"Authorization": f"Bearer {_token(db, admin, 'water', 'unit', water.id)}"}
    reader_headers = {"Authorization": f"Bearer {_token(db, admin, 'reader', 'reader')}"}
    by_class = client.post("/api/v1/labels", json={"classes": ["0118"]}, headers=unit_headers)
    assert by_class.status_code == 200, by_class.text
    urls, _ = _decode_pdf(by_class.content)
    assert [url.split("/c/")[1].split("?")[0] for url in urls] == [own.code]
    refused = client.post("/api/v1/labels", json={"codes": [foreign.code]}, headers=unit_headers)
    assert refused.status_code == 403
    assert (
        client.post("/api/v1/labels", json={"codes": [own.code]}, headers=reader_headers).status_code == 403
    )
    assert client.post("/api/v1/labels", json={"codes": [own.code]}).status_code == 401
    # Decommissioned: no new label, with a message saying why.
    gone = client.post(
        f"/api/v1/assets/{own.code}/decommission", json={"version": 1, "reason": "拆除"}, headers=auth
    )
    assert gone.status_code == 200, gone.text
    conflict = client.post("/api/v1/labels", json={"codes": [own.code]}, headers=auth)
    assert conflict.status_code == 409 and "已注销" in conflict.json()["error"]["message"]


def test_api_revoke_then_reprint_is_a_new_edition(
    db: Engine, settings: Settings, admin: Actor, client: TestClient, auth: dict[str, str]
) -> None:
    asset = make_asset(db, admin)
    first, _ = _decode_pdf(client.post("/api/v1/labels", json={"codes": [asset.code]}, headers=auth).content)
    revoked = client.post(
        f"/api/v1/labels/{asset.code}/revoke",
        json={"kind": "counterfeit", "reason": "仿冒标签"},
        headers=auth,
    )
    assert revoked.status_code == 200 and revoked.json()["revoke_kind"] == "counterfeit"
    second, _ = _decode_pdf(client.post("/api/v1/labels", json={"codes": [asset.code]}, headers=auth).content)
    assert first != second and "?s=1.2." in second[0]
    keys = keys_from_settings(settings.labels)
    with transaction(db) as session:
        old = label_status(session, asset.code, first[0].split("?s=")[1], keys=keys)
        new = label_status(session, asset.code, second[0].split("?s=")[1], keys=keys)
    assert old.status is LabelStatus.REVOKED and old.words == "标签已作废"
    assert new.status is LabelStatus.VALID
    editions = client.get(f"/api/v1/labels/{asset.code}", headers=auth).json()["editions"]
    assert [e["edition"] for e in editions] == [1, 2] and editions[0]["revoked_by"] == "admin"
