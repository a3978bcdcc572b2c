"""A utility's own ledger as it sends it: its column names, its unit spellings, GBK CSV and Excel.

Every file here is written the way utilities export them (CSV in GBK or UTF-8 with a BOM, XLSX from
openpyxl) with their own headers, and imported without a mapping file.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import Engine, text

from common.settings import Settings
from importers.headers import header_key, match_headers, suggest_for_file
from importers.pipeline import ImportRefused, ImportRejected
from importers.profiles import default_profile, parse_profile
from registry.db import transaction
from registry.units import add_alias
from tests.conftest import ADMIN_TOKEN
from tests.test_cli import run as cli
from tests.test_import_pipeline import ADMIN, CITY, POWER, WATER, run

TOWER = "中国铁塔股份有限公司深圳市分公司"
HEADER = ["编号", "名称", "权属单位", "养护单位", "主管部门", "经度(°)", "纬度（°）", "建设日期", "备注"]


def lamps(n: int = 5, owner: str = POWER) -> list[list[Any]]:
    """``n`` street lamps in 坪山中心区 with the utility's own numbers."""
    return [
        [
            f"LD-{i:03d}",
            "路灯",
            owner,
            WATER,
            CITY,
            114.3466 + i * 0.0004,
            22.6953 + i * 0.0003,
            "2019-05-01",
            "",
        ]
        for i in range(n)
    ]


def write_csv(path: Path, header: list[str], rows: list[list[Any]], encoding: str) -> Path:
    """A CSV as a utility's system exports it (GBK, or UTF-8 with a BOM)."""
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    """An Excel ledger with a title row above the header."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["坪山区路灯台账"])
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def register(db: Engine, settings: Settings, *names: str) -> None:
    """Register units as an administrator would have."""
    with db.begin() as conn:
        for name in names:
            conn.execute(
                text(
                    "INSERT INTO units (name, kind, aliases, verified, county_code) "
                    "VALUES (:n, 'other', '{}', true, :c)"
                ),
                {"n": name, "c": settings.area.county_code},
            )


def responsibility(db: Engine) -> list[tuple[Any, ...]]:
    """(source id, owner, maintainer, supervisor) of every asset."""
    with db.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT a.source_id, o.name, m.name, s.name FROM assets a "
                    "LEFT JOIN units o ON o.id = a.owner_id LEFT JOIN units m ON m.id = a.maintainer_id "
                    "LEFT JOIN units s ON s.id = a.supervisor_id ORDER BY a.source_id"
                )
            ).tuples()
        )


def mapped(report: dict[str, Any]) -> dict[str, str]:
    """column -> field from a report's mapping."""
    return {m["column"]: m["field"] for m in report["columns"]["mapped"]}


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig"])
def test_a_csv_ledger_with_its_own_headers_sets_owner_maintainer_and_supervisor(
    db: Engine, settings: Settings, tmp_path: Path, encoding: str
) -> None:
    register(db, settings, POWER, WATER, CITY)
    path = write_csv(tmp_path / "路灯台账.csv", HEADER, lamps(), encoding)
    report = run(db, settings, path).as_dict()
    assert report["status"] == "committed" and report["counts"]["created"] == 5, report["problems"]
    assert mapped(report) == {
        "编号": "source_id",
        "名称": "class_name",
        "权属单位": "owner",
        "养护单位": "maintainer",
        "主管部门": "supervisor",
        "建设日期": "installed",
        "备注": "note",
    }
    assert report["columns"]["coordinates"] == {"x": "经度(°)", "y": "纬度（°）"}
    # Nothing about owners or columns; only that WGS84 was assumed (no registered assets to compare).
    assert [w.split("，")[0] for w in report["warnings"]] == ["坐标系是推定的 wgs84（经纬度）"]
    assert responsibility(db)[0] == ("szcg:LD-000", POWER, WATER, CITY)


def test_an_excel_ledger_with_other_spellings_and_a_title_row(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    register(db, settings, POWER, WATER, CITY)
    header = ["设施编号", "设施类型", "产权单位", "管养单位", "主管单位", "lng", "lat", "设施状态"]
    rows = [[r[0], r[1], r[2], r[3], r[4], r[5], r[6], "正常"] for r in lamps(3)]
    report = run(db, settings, write_xlsx(tmp_path / "ledger.xlsx", header, rows)).as_dict()
    assert report["counts"]["created"] == 3, report["problems"]
    assert mapped(report)["产权单位"] == "owner" and mapped(report)["管养单位"] == "maintainer"
    assert mapped(report)["设施状态"] == "state"
    assert [r[1:] for r in responsibility(db)] == [(POWER, WATER, CITY)] * 3


def test_headers_match_after_normalisation_and_by_their_words() -> None:
    assert header_key(" 权属单位（名称） ") == "权属单位" and header_key("经度 (°)") == "经度"
    found = match_headers(["ＩＤ", "路灯的权属单位", "日常养护单位名称", "杆高(m)"], default_profile())
    assert found.columns == {"source_id": "ＩＤ", "owner": "路灯的权属单位", "maintainer": "日常养护单位名称"}
    assert found.ignored == ["杆高(m)"] and found.warnings == []


def test_a_name_column_of_asset_names_is_not_the_class_and_class_names_it(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    register(db, settings, POWER, WATER, CITY)
    rows = [[r[0], f"坪山大道{i}号灯", *r[2:]] for i, r in enumerate(lamps(2))]
    path = write_csv(tmp_path / "named.csv", HEADER, rows, "gbk")
    report = run(db, settings, path, class_="路灯").as_dict()
    assert report["counts"]["created"] == 2, report["problems"]
    assert "名称" in report["columns"]["ignored"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT class_code FROM assets")).scalar_one() == "0118"


def test_an_unmapped_unit_column_is_a_warning_first_and_strict_refuses(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    register(db, settings, POWER, WATER, CITY)
    header = ["编号", "名称", "资产归口单位", "经度", "纬度"]
    rows = [[r[0], r[1], POWER, r[5], r[6]] for r in lamps(2)]
    path = write_csv(tmp_path / "owners.csv", header, rows, "utf-8-sig")
    dry = run(db, settings, path, dry_run=True).as_dict()
    assert list(dry)[:3] == ["batch_id", "status", "warnings"]
    assert "no column gives the owner" in dry["warnings"][0]
    assert any("资产归口单位" in w and "looks like a unit" in w for w in dry["warnings"])
    with pytest.raises(ImportRefused) as refused:
        run(db, settings, path, strict=True)
    assert refused.value.report is not None and refused.value.report["status"] == "refused"
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM assets")).scalar_one() == 0


def test_a_near_miss_of_a_registered_unit_is_held_until_an_alias_settles_it(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    register(db, settings, TOWER, WATER, CITY)
    path = write_csv(tmp_path / "tower.csv", HEADER, lamps(2, owner="中国铁塔深圳分公司"), "gbk")
    with pytest.raises(ImportRejected) as rejected:
        run(db, settings, path)
    report = rejected.value.report
    assert report is not None and report["units_held"] == {"中国铁塔深圳分公司": [TOWER]}
    assert report["units_created"] == [] and "smartcode units alias add" in report["problems"][0]["reason"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM units")).scalar_one() == 3
        assert conn.execute(text("SELECT status FROM import_batches")).scalar_one() == "rejected"
    with transaction(db) as session:
        add_alias(session, TOWER, "中国铁塔深圳分公司", ADMIN)
    again = run(db, settings, path).as_dict()
    assert again["counts"]["created"] == 2 and again["units_created"] == []
    assert {r[1] for r in responsibility(db)} == {TOWER}


def test_a_genuinely_new_unit_is_created_by_an_administrator_and_listed(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    register(db, settings, TOWER, WATER, CITY)
    path = write_csv(tmp_path / "new.csv", HEADER, lamps(1, owner="深圳市燃气集团股份有限公司"), "gbk")
    report = run(db, settings, path).as_dict()
    assert report["units_created"] == ["深圳市燃气集团股份有限公司"] and report["units_held"] == {}


def test_create_units_creates_a_near_miss_the_administrator_vouches_for(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    register(db, settings, "深圳供电局有限公司", WATER, CITY)
    path = write_csv(tmp_path / "typo.csv", HEADER, lamps(1, owner="深圳供电居有限公司"), "gbk")
    with pytest.raises(ImportRejected):
        run(db, settings, path)
    report = run(db, settings, path, create_units=True).as_dict()
    assert report["units_created"] == ["深圳供电居有限公司"]


def test_a_re_import_that_changes_nothing_says_so_and_leaves_no_batch(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    register(db, settings, POWER, WATER, CITY)
    path = write_csv(tmp_path / "lamps.csv", HEADER, lamps(3), "gbk")
    first = run(db, settings, path)
    again = run(db, settings, path)
    assert again.status == "unchanged" and again.batch_id is None and again.counts()["unchanged"] == 3
    with db.connect() as conn:
        assert conn.execute(text("SELECT id FROM import_batches")).scalars().all() == [first.batch_id]


def test_the_cli_exits_non_zero_when_every_row_is_rejected(
    db: Engine, settings: Settings, tmp_path: Path, migrated_url: str
) -> None:
    register(db, settings, POWER, WATER, CITY)
    rows = [[r[0], "不是部件", *r[2:]] for r in lamps(2)]
    path = write_csv(tmp_path / "bad.csv", HEADER, rows, "gbk")
    env = {**os.environ, "SMARTCODE_DATABASE_URL": migrated_url, "SMARTCODE_API_TOKEN": ADMIN_TOKEN}
    result = cli("import", str(path), env=env)
    assert result.returncode == 1 and "bad.csv: 全部拒绝" in result.stdout, result.stderr
    # The stored report, read back, speaks the reader's language too.
    batch = json.loads(cli("import", "list", "--json", env=env).stdout)[0]["id"]
    shown = cli("--lang", "en", "import", "show", str(batch), env=env).stdout
    assert "row 2 class_name: no class: give the class name" in shown and "没有设施类型" not in shown
    shown = cli("import", "show", str(batch), env=env).stdout
    assert "第 2 行 class_name：没有设施类型" in shown and "no class" not in shown
    alias = cli("units", "alias", "add", POWER, "深圳供电局", "--json", env=env)
    assert alias.returncode == 0 and "深圳供电局" in json.loads(alias.stdout)["aliases"]


def test_a_dry_run_exits_as_the_import_would_when_every_row_is_rejected_or_strict_refuses(
    db: Engine, settings: Settings, tmp_path: Path, migrated_url: str
) -> None:
    register(db, settings, POWER, WATER, CITY)
    bad = write_csv(tmp_path / "bad.csv", HEADER, [[r[0], "不是部件", *r[2:]] for r in lamps(2)], "gbk")
    with pytest.raises(ImportRejected) as rejected:
        run(db, settings, bad, dry_run=True)
    report = rejected.value.report
    assert report is not None and report["status"] == "rejected" and report["dry_run"] is True
    assert report["counts"]["rejected"] == 2 and [p["row"] for p in report["problems"]] == [2, 3]
    env = {**os.environ, "SMARTCODE_DATABASE_URL": migrated_url, "SMARTCODE_API_TOKEN": ADMIN_TOKEN}
    dry = cli("import", str(bad), "--dry-run", env=env)
    assert dry.returncode == 1 and "bad.csv: 全部拒绝" in dry.stdout, dry.stderr
    assert "全部 2 行都被拒绝" in dry.stderr
    rows = lamps(3)
    rows[1][5] = ""  # row 3: no longitude
    mixed = write_csv(tmp_path / "mixed.csv", HEADER, rows, "gbk")
    assert cli("import", str(mixed), "--dry-run", env=env).returncode == 0
    strict = cli("import", str(mixed), "--dry-run", "--strict", env=env)
    assert strict.returncode == 1 and "mixed.csv: 已拒绝（未写入）" in strict.stdout, strict.stderr
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM import_batches")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM assets")).scalar_one() == 0


def test_mapping_suggest_writes_a_profile_the_importer_reads(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "路灯台账.csv", HEADER, lamps(2), "gbk")
    suggested = suggest_for_file(path)
    profile = parse_profile(suggested, "suggested.toml")
    head = suggested.splitlines()[0]
    assert head.startswith("# 为 ") and "请逐行核对，再用 --mapping 传入 / mapping profile suggested" in head
    assert profile.fields.owner == ["权属单位"] and profile.fields.maintainer == ["养护单位"]
    assert profile.fields.x == ["经度(°)"] and profile.fields.source_id == ["编号"]


def test_an_unbalanced_quote_costs_its_own_row_only(db: Engine, settings: Settings, tmp_path: Path) -> None:
    register(db, settings, POWER, WATER, CITY)
    path = write_csv(tmp_path / "quote.csv", HEADER, lamps(20), "gbk")
    lines = path.read_bytes().split(b"\r\n")
    lines[7] = lines[7].replace(b"LD-006", b'"LD-006')  # row 8 (the header is row 1)
    path.write_bytes(b"\r\n".join(lines))
    report = run(db, settings, path).as_dict()
    assert report["counts"]["read"] == 20 and report["counts"]["created"] == 19
    assert report["problems"][0]["row"] == 8 and "unbalanced quote" in report["problems"][0]["reason"]


def test_a_short_row_and_bad_bytes_are_named_and_the_rows_after_them_read(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    register(db, settings, POWER, WATER, CITY)
    path = write_csv(tmp_path / "broken.csv", HEADER, lamps(6), "gbk")
    lines = path.read_bytes().split(b"\r\n")
    lines[2] = b",".join(lines[2].split(b",")[:3])  # row 3: three cells of nine
    lines[4] = lines[4].replace("路灯".encode("gbk"), b"\xff\xfe")  # row 5: not GBK
    path.write_bytes(b"\r\n".join(lines))
    report = run(db, settings, path, encoding="gbk").as_dict()
    assert report["counts"]["read"] == 6 and report["counts"]["created"] == 4
    reasons = {(p["row"], p["reason"]) for p in report["problems"]}
    assert (3, "行不完整：3 个单元格，表头有 9 列 / short row: 3 cells for 9 columns") in reasons
    assert any(row == 5 and "编码错误" in reason and "encoding" in reason for row, reason in reasons)


def test_a_mistyped_unit_in_a_rules_file_is_refused_not_made_up_and_dry_run_writes_nothing(
    db: Engine, settings: Settings, tmp_path: Path, migrated_url: str
) -> None:
    register(db, settings, "坪山区城市管理和综合执法局")
    rules_csv = tmp_path / "rules.csv"
    rules_csv.write_text(
        "zone,level,class,category,unit,priority\n"
        ",,路灯,,坪山区城市管理和综合执怯局,1\n"  # 法 mistyped as 怯
        ",,0114,,某单位,0\n"
        ",,0101,,坪山区城市管里和综合执法局,0\n",  # 理 mistyped as 里
        encoding="utf-8-sig",
    )
    env = {**os.environ, "SMARTCODE_DATABASE_URL": migrated_url, "SMARTCODE_API_TOKEN": ADMIN_TOKEN}
    result = cli("rules", "import", str(rules_csv), env=env)
    assert result.returncode == 1
    assert (
        "第 2 行：单位 '坪山区城市管理和综合执怯局' 未登记，但与已登记的 坪山区城市管理和综合执法局 相近"
        in result.stderr
    )
    assert "第 4 行：" in result.stderr  # every error, not the first
    english = cli("--lang", "en", "rules", "import", str(rules_csv), env=env)
    assert "row 2: unit '坪山区城市管理和综合执怯局' is not registered but close to" in english.stderr
    assert "row 4:" in english.stderr and "第 4 行" not in english.stderr
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM units")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM responsibility_rules")).scalar_one() == 0
    fixed = rules_csv.read_text(encoding="utf-8-sig").replace("执怯", "执法").replace("管里", "管理")
    rules_csv.write_text(fixed, encoding="utf-8")
    dry = cli("rules", "import", str(rules_csv), "--dry-run", "--json", env=env)
    assert dry.returncode == 0 and json.loads(dry.stdout)["dry_run"] is True
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM responsibility_rules")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM units")).scalar_one() == 1


def test_import_dry_run_shows_the_column_mapping_and_warnings_first(
    db: Engine, settings: Settings, tmp_path: Path, migrated_url: str
) -> None:
    register(db, settings, POWER, WATER, CITY)
    header = ["编号", "名称", "权属单位", "经度", "纬度", "资产归口单位"]
    rows = [[r[0], r[1], r[2], r[5], r[6], POWER] for r in lamps(2)]
    path = write_csv(tmp_path / "lamps.csv", header, rows, "gbk")
    env = {**os.environ, "SMARTCODE_DATABASE_URL": migrated_url, "SMARTCODE_API_TOKEN": ADMIN_TOKEN}
    result = cli("import", str(path), "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("警告") and "资产归口单位" in lines[0] and "像是单位名称" in lines[0]
    assert "  列 权属单位 → 权属单位（owner，已知列名）" in lines
    assert "  列 经度、纬度 → 经度、纬度（x、y）" in lines
    english = cli("--lang", "en", "import", str(path), "--dry-run", env=env).stdout.splitlines()
    assert english[0].startswith("WARNING") and "looks like a unit" in english[0]
    assert "  column 权属单位 -> owner (known name)" in english
    assert "  columns 经度, 纬度 -> x, y" in english
