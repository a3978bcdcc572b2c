"""The CLI as a Chinese dispatcher reads it: Chinese labels, tables, local times; one-line file errors."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import Engine

from cli import i18n
from cli.main import app
from common.settings import Settings
from importers.pipeline import ImportOptions, run_import
from registry import assets
from registry.db import Actor, transaction
from registry.schemas import UnitsChange
from tests.conftest import ADMIN_TOKEN
from tests.helpers import make_asset, make_unit
from tests.test_cli import run
from tests.test_importers_read import write_shapefile
from tests.test_resolve import add_zone, box

HANDED_OVER = dt.datetime(2026, 12, 6, 1, 0, tzinfo=dt.UTC)  # 2026-12-06 09:00 in Shanghai
TIMES_NOTE = "（时间为 Asia/Shanghai 本地时间，UTC+08:00）"


@pytest.fixture
def env(migrated_url: str) -> dict[str, str]:
    """The console script's environment: the test database, the deployment defaults (zh, Shanghai)."""
    base = {k: v for k, v in os.environ.items() if k not in ("SMARTCODE_LANG", "SMARTCODE_TIMEZONE")}
    return {**base, "SMARTCODE_DATABASE_URL": migrated_url, "SMARTCODE_API_TOKEN": ADMIN_TOKEN}


def ok(*args: str, env: dict[str, str]) -> str:
    """Run the command, expect success, return its standard output."""
    result = run(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert "{'" not in result.stdout and "('" not in result.stdout  # no Python dicts or tuples
    return result.stdout


@pytest.fixture
def handed_over(db: Engine, admin: Actor) -> Any:
    """A lamp of 供电局, handed over to the 路灯管理所 at 2026-12-06T01:00Z."""
    power = make_unit(db, "深圳供电局有限公司", admin, phone="95598")
    lamps = make_unit(db, "坪山区路灯管理所", admin)
    lamp = make_asset(db, admin, owner_id=power.id, installed_on=dt.date(2026, 1, 1), source_id="ledger:LD-7")
    with transaction(db) as session:
        assets.change_units(
            session,
            lamp.code,
            UnitsChange(
                version=lamp.version, owner_id=lamps.id, effective_at=HANDED_OVER, reason="移交路灯管理所"
            ),
            admin,
        )
    return lamp


def test_history_is_two_tables_in_chinese_with_local_times(handed_over: Any, env: dict[str, str]) -> None:
    out = ok("show", handed_over.code, "--history", env=env)
    assert "版本记录" in out and "责任期" in out
    assert "记录时间" in out and "操作人" in out and "变更内容" in out and "权属单位" in out
    # The responsibility period that began at 01:00 UTC shows as 09:00 local, the zone said once.
    assert "2026-12-06 09:00" in out and "2026-12-06T01:00" not in out
    assert out.count(TIMES_NOTE) == 1
    assert "移交路灯管理所" in out and "深圳供电局有限公司" in out and "坪山区路灯管理所" in out
    # Each version's recording time is shown in local time too.
    versions = json.loads(ok("show", handed_over.code, "--history", "--json", env=env))
    assert len(versions) == 2 and versions[1]["recorded_at"].endswith("+00:00")  # JSON unchanged
    recorded = dt.datetime.fromisoformat(versions[1]["recorded_at"])
    assert (recorded + dt.timedelta(hours=8)).strftime("%Y-%m-%d %H:%M") in out
    english = ok("--lang", "en", "show", handed_over.code, "--history", env=env)
    assert "versions" in english and "responsibility periods" in english and "2026-12-06 09:00" in english
    assert "(times are local to Asia/Shanghai, UTC+08:00)" in english and "版本记录" not in english


def test_an_asset_reads_as_labelled_lines(handed_over: Any, env: dict[str, str]) -> None:
    out = ok("show", handed_over.code, env=env)
    lines = {line.split("  ", 1)[0].strip(): line for line in out.splitlines()}
    assert "路灯（0118）" in lines["设施类型"]
    assert "坪山区路灯管理所" in lines["权属单位"] and "LD-7" in lines["原编号"]
    assert TIMES_NOTE in out
    at = ok("show", handed_over.code, "--at", "2026-12-06T00:30:00+00:00", env=env)
    assert "深圳供电局有限公司" in at and "2026-12-06 08:30" in at


def test_the_english_environment_setting_is_honoured(handed_over: Any, env: dict[str, str]) -> None:
    out = ok("show", handed_over.code, env={**env, "SMARTCODE_LANG": "en"})
    assert "owner" in out and "权属单位" not in out
    bad = run("--lang", "fr", "show", handed_over.code, env=env)
    assert bad.returncode != 0 and "fr" in bad.stderr


def test_import_batches_list_and_show_as_tables(
    db: Engine, settings: Settings, env: dict[str, str], tmp_path: Path
) -> None:
    features = [
        {
            "type": "Feature",
            "properties": {"OBJNAME": "路灯", "DEPTNAME2": "深圳供电局有限公司", "OBJSTATE": "完好"},
            "geometry": {"type": "Point", "coordinates": [114.3466 + i * 0.0004, 22.6953]},
        }
        for i in range(3)
    ]
    path = tmp_path / "路灯台账.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False))
    report = run_import(db, path, Actor(name="test-import", admin=True), settings, ImportOptions())
    listed = ok("import", "list", env=env)
    header, _, row = listed.splitlines()[:3]
    assert header.split() == ["编号", "状态", "开始时间", "文件", "读取", "新建", "更新", "未变", "拒绝"]
    assert "已提交" in row and "路灯台账.geojson" in row and row.split()[-5:] == ["3", "3", "0", "0", "0"]
    # Columns line up although 中文 takes two columns: the file name starts under its header.
    assert i18n.width(row[: row.index("路灯台账")]) == i18n.width(header[: header.index("文件")])
    assert TIMES_NOTE in listed
    shown = ok("import", "show", str(report.batch_id), env=env)
    assert "已提交" in shown and "读取" in shown and "新建" in shown and "开始时间" in shown
    assert json.loads(ok("import", "show", str(report.batch_id), "--json", env=env))["status"] == "committed"


def test_zones_list_is_a_table_without_brackets(db: Engine, admin: Actor, env: dict[str, str]) -> None:
    office = make_unit(db, "坪山街道办事处", admin)
    add_zone(db, admin, "street", "坪山街道", box(-500, -500, 500, 500), unit_id=office.id)
    out = ok("zones", "list", env=env)
    assert "[" not in out and "…" not in out
    assert "级别" in out and "街道" in out and "坪山街道办事处" in out and "至今" in out


def test_resolve_speaks_chinese_and_english_on_demand(handed_over: Any, env: dict[str, str]) -> None:
    out = ok("resolve", "--code", handed_over.code, env=env)
    assert out.splitlines()[0].startswith("已确定（依据：按智慧码")
    assert "权属单位" in out and "坪山区路灯管理所" in out and "依据：" in out
    assert "智慧码 440310-0118-" in out and "RESOLVED" not in out
    english = ok("--lang", "en", "resolve", "--code", handed_over.code, env=env)
    assert english.startswith("RESOLVED  (decided by: code") and "why:" in english
    assert "  - code 440310-0118-" in english
    machine = json.loads(ok("resolve", "--code", handed_over.code, "--json", env=env))
    assert (machine["status"], machine["rule"]) == ("resolved", "code")


def test_a_street_fallback_reads_in_chinese(db: Engine, admin: Actor, env: dict[str, str]) -> None:
    office = make_unit(db, "坪山街道办事处", admin, phone="0755-28000000")
    add_zone(db, admin, "street", "坪山街道", box(-500, -500, 500, 500), unit_id=office.id)
    out = ok("resolve", "--at", "114.3466,22.6953", "--category", "占道经营", env=env)
    assert out.startswith("属地兜底（依据：街道属地；记录号")
    assert "第1步 最近设施：跳过" in out and "第4步 属地兜底：街道 坪山街道 → 坪山街道办事处" in out
    assert "位置（经度 114.346600，纬度 22.695300），时间 当前" in out


# --- a file that is not there is one line ---------------------------------------------------------------


def _file_commands(tmp: Path) -> list[list[str]]:
    existing = tmp / "lamps.csv"
    existing.write_text("OBJNAME,X,Y\n路灯,114.3466,22.6953\n", encoding="utf-8")
    return [
        ["import", str(tmp / "missing.csv")],
        ["import", str(tmp)],  # a directory
        ["import", str(existing), "--mapping", str(tmp / "missing.toml")],
        ["import", str(existing), "--dry-run", "--report", str(tmp / "no-such-dir" / "r.json")],
        ["zones", "import", str(tmp / "missing.geojson"), "--level", "street", "--name-field", "name"],
        ["rules", "import", str(tmp / "missing.csv")],
        ["categories", "load", str(tmp / "missing.toml")],
        ["export", "--output", str(tmp / "no-such-dir" / "assets.csv")],
    ]


@pytest.mark.parametrize("index", range(8))
def test_a_missing_or_unusable_file_is_one_line_and_a_failure(
    index: int, env: dict[str, str], tmp_path: Path, db: Engine
) -> None:
    command = _file_commands(tmp_path)[index]
    result = run(*command, env=env)
    assert result.returncode == 1, (command, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("错误："), result.stderr
    assert ("missing" in lines[0]) or ("no-such-dir" in lines[0]) or ("目录" in lines[0])


def test_a_missing_file_in_english(env: dict[str, str], tmp_path: Path) -> None:
    result = run("--lang", "en", "import", str(tmp_path / "missing.csv"), env=env)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == f"error: no such file: {tmp_path / 'missing.csv'}"


def test_tables_count_chinese_characters_as_two_columns() -> None:
    table = i18n.table(["名称", "n"], [["坪山街道", 1], ["ab", 22]], right=(1,))
    lines = table.splitlines()
    assert [i18n.width(line) for line in lines] == [12, 12, 12, 12]
    assert lines[2] == "坪山街道   1" and lines[3] == "ab        22"


# --- help: Chinese first, English beside; English alone for an English reader -------------------------

CJK = re.compile(r"[\u4e00-\u9fff]")


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_every_command_and_option_has_its_help_in_chinese_first() -> None:
    root = typer.main.get_command(app)
    i18n.localise_help(root, "zh")
    commands = _commands(root)
    assert len(commands) > 50 and ("db", "replica", "status") in [path for path, _ in commands]
    missing = []
    for path, command in commands:
        items = [("(command)", command), *((p.name, p) for p in command.get_params(typer.Context(command)))]
        for name, item in items:
            zh, sep, en = (item.help or "").partition(" / ")
            if not (sep and CJK.search(zh) and re.search("[a-z]", en)):
                missing.append(f"smartcode {' '.join(path)} {name}: {item.help!r}")
    assert not missing, "\n".join(missing)


def _help(*args: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "SMARTCODE_LANG"}
    result = run(*args, "--help", env={**base, "COLUMNS": "250", **env})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_help_is_bilingual_and_english_for_an_english_reader() -> None:
    both = _help("import")
    assert "试运行：全部检查，不写入 / check everything, write nothing" in both
    assert "显示本帮助并退出 / show this message and exit." in both
    english = _help("--lang", "en", "import")
    assert "check everything, write nothing" in english and "试运行" not in english
    assert "show this message and exit." in english and "显示本帮助" not in english
    # The root's own help is read before --lang is acted on unless --lang comes first.
    root = _help("--lang", "en")
    assert "upgrade the schema" in root and "升级数据库结构" not in root and "显示本帮助" not in root
    assert "升级数据库结构 / upgrade the schema" in _help()
    from_setting = _help("db", "replica", SMARTCODE_LANG="en")
    assert "print JSON for machines" not in from_setting  # a group: its subcommands, not their options
    assert "start the standby" in from_setting and "启动备库" not in from_setting
    assert "启动备库，补上主库期间写入的内容 / start the standby" in _help("db", "replica")


def test_the_import_report_of_a_dbf_with_a_guessed_encoding_says_how_in_chinese(
    db: Engine, env: dict[str, str], tmp_path: Path
) -> None:
    shp = write_shapefile(tmp_path / "路灯.shp", encoding="GBK", names=["路灯"] * 3)
    (tmp_path / "路灯.cpg").write_text("ANSI 1234")  # a code page no one knows: the bytes decide
    out = run("import", str(shp), "--dry-run", env=env).stdout
    assert "  说明：编码 GBK：.cpg 文件中的编码 'ANSI 1234' 无法识别；文本不是 UTF-8，但可按 GBK 解码" in out
    assert "unknown" not in out
    english = run("--lang", "en", "import", str(shp), "--dry-run", env=env).stdout
    assert (
        "  note: encoding GBK: .cpg value 'ANSI 1234' is unknown; text is not UTF-8 but decodes as GBK"
        in english
    )
    assert "无法识别" not in english


# --- Typer's and Click's own words: headings, usage lines, usage errors -------------------------------


def test_help_headings_and_markers_are_chinese_first() -> None:
    root = _help()
    assert "用法 / Usage: smartcode [OPTIONS] COMMAND" in root
    assert "选项 / Options" in root and "命令 / Commands" in root
    show = _help("show")
    assert "参数 / Arguments" in show and "[必填]" in show and "[required]" not in show
    assert "[默认：no-history]" in show and "[default:" not in show
    english = _help("--lang", "en", "show")
    assert "Usage: smartcode show" in english and "Arguments" in english and "[required]" in english
    assert "用法" not in english and "必填" not in english and "默认" not in english


def _usage_error(*args: str, **env: str) -> list[str]:
    """Run a mistyped command: exit status 2, nothing on stdout; the lines of the error box, unframed."""
    base = {k: v for k, v in os.environ.items() if k != "SMARTCODE_LANG"}
    result = run(*args, env={**base, "COLUMNS": "250", **env})
    assert result.returncode == 2, (args, result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    return [line.strip("│╭╮╰╯─ ") for line in result.stderr.splitlines()]


def _chinese_then_english(lines: list[str], chinese: str, english: str) -> None:
    assert chinese in lines and english in lines, lines
    assert lines.index(chinese) + 1 == lines.index(english)  # Click's original right under the Chinese


def test_a_mistyped_option_is_said_in_chinese_first() -> None:
    lines = _usage_error("show", "4403100118000123", "--histroy")
    # Click 8.4 and later quote the name and word the suggestion their own way; the Chinese follows.
    said = next(line for line in lines if line.replace("'", "").startswith("没有这个选项：--histroy（"))
    assert "--history" in said and lines[lines.index(said) + 1].startswith("No such option")
    assert any(line.startswith("用法 / Usage: smartcode show [OPTIONS] ") for line in lines)
    assert "运行 'smartcode show --help' 查看帮助。" in lines and "错误 / Error" in lines
    assert not any(line.startswith("Try ") for line in lines)
    # At the root too, where --lang is not read yet.
    lines = _usage_error("--langs", "en")
    said = lines[lines.index("错误 / Error") + 1].replace("'", "")
    assert said.startswith("没有这个选项：--langs（可能是 --lang")


def test_a_missing_argument_or_option_is_said_in_chinese_first() -> None:
    name = "'text'" if "{text}" in _help("code") else "'TEXT'"  # Typer 0.26 and later: 'text'
    _chinese_then_english(_usage_error("code"), f"缺少参数 {name}", f"Missing argument {name}.")
    lines = _usage_error("labels", "print", "--code", "4403100118000123")
    _chinese_then_english(lines, "缺少选项 '--output' 或 '-o'", "Missing option '--output' / '-o'.")


def test_a_bad_value_names_the_option_in_chinese_first(tmp_path: Path) -> None:
    lines = _usage_error("labels", "print", "-o", str(tmp_path / "l.pdf"), "--unit", "seven")
    said = next(line for line in lines if line.startswith("'--unit' 的值无效："))
    assert lines[lines.index(said) + 1].startswith("Invalid value for '--unit': ")
    # Typer 0.29 converts through Pydantic, which does not repeat the value; Click and earlier Typer did.
    assert said in ("'--unit' 的值无效：应为整数", "'--unit' 的值无效：'seven' 不是有效的整数")
    lines = _usage_error("code", "1", "2")
    assert lines[lines.index("多余的参数：2") + 1].startswith("Got unexpected extra argument")
    lines = _usage_error("--lang", "fr", "code", "1")
    assert "'--lang' 的值无效：没有 'fr' 这种界面语言：请用 zh（中文）或 en（英文）" in lines


def test_an_english_reader_gets_clicks_own_words() -> None:
    for env in ({"SMARTCODE_LANG": "en"}, {}):
        args = ("code",) if env else ("--lang", "en", "code")
        lines = _usage_error(*args, **env)
        assert "Error" in lines and any(line.startswith("Missing argument ") for line in lines)
        assert not any(CJK.search(line) for line in lines), lines


_SCRATCH_APP = '''
import enum, sys
import typer
from cli import i18n

class Colour(str, enum.Enum):
    red = "red"
    green = "green"

app = typer.Typer(cls=i18n.LocalisedGroup, rich_markup_mode=None if sys.argv.pop(1) == "plain" else "rich")

@app.command()
def paint(colour: Colour = typer.Option(Colour.red, "--colour", help="颜色 / colour"), n: int = 1) -> None:
    """上色 / paint."""

@app.command()
def other() -> None:
    """另一个 / another."""

app()
'''


@pytest.mark.parametrize("drawing", ["rich", "plain"])
def test_a_bad_choice_and_the_plain_formatter(drawing: str, tmp_path: Path) -> None:
    script = tmp_path / "paint.py"
    script.write_text(_SCRATCH_APP, encoding="utf-8")
    base = {k: v for k, v in os.environ.items() if k != "SMARTCODE_LANG"}

    def paint(*args: str) -> Any:
        command = [sys.executable, str(script), drawing, *args]
        return subprocess.run(
            command, capture_output=True, text=True, env={**base, "COLUMNS": "250"}, timeout=120, check=False
        )

    bad = paint("paint", "--colour", "blue")
    assert bad.returncode == 2 and bad.stdout == "", bad.stderr
    said = next(line.strip("│ ") for line in bad.stderr.splitlines() if "的值无效" in line)
    assert said.startswith("错误：" if drawing == "plain" else "'--colour'")
    assert said.endswith("'--colour' 的值无效：'blue' 不是可选的值，可选：'red', 'green'")
    assert "'blue' is not one of 'red', 'green'" in bad.stderr
    help_text = paint("paint", "--help").stdout
    assert "用法 / Usage: " in help_text and "选项 / Options" in help_text and "[默认：" in help_text
    if drawing == "plain":
        assert "运行 '" in bad.stderr and "Try '" not in bad.stderr and "Error:" not in bad.stderr


@pytest.mark.parametrize(
    ("english", "chinese"),
    [  # the wordings of the Click releases before Typer carried its own (8.1, 8.2 and later)
        ("Invalid value for '--n': 'x' is not a valid float.", "'--n' 的值无效：'x' 不是有效的数字"),
        ("Invalid value for '--r': 9 is not in the range 1<=x<=5.", "'--r' 的值无效：9 不在范围 1<=x<=5 内"),
        ("No such option: --histroy Did you mean --history?", "没有这个选项：--histroy（可能是 --history）"),
        (
            "No such option '--hist'. (Did you mean one of: '--history', '--no-history'?)",
            "没有这个选项：'--hist'（可能是 '--history', '--no-history'）",
        ),
        ("No such command 'pront'. Did you mean 'print'?", "没有这个命令：'pront'（可能是 'print'）"),
        ("Got unexpected extra arguments (a b)", "多余的参数：a b"),
        ("Got unexpected extra argument (a)", "多余的参数：a"),
        ("Missing option '--c'. Choose from:\n\tred,\n\tgreen.", "缺少选项 '--c'，可选：red, green"),
        ("Invalid value for 'FILE': Path 'x.csv' does not exist.", "'FILE' 的值无效：路径 'x.csv' 不存在"),
        ("Option '--at' requires 2 arguments.", "选项 '--at' 需要 2 个值"),
        ("Something Click says one day.", "命令行用法有误"),
    ],
)
def test_clicks_other_wordings_are_said_too(english: str, chinese: str) -> None:
    from cli import click_words

    assert click_words.chinese(english) == chinese
    assert click_words.reworded(english) == f"{chinese}\n{english}"


def test_a_chinese_message_no_rule_knows_is_kept_whole() -> None:
    from cli import click_words

    said = "数据库不可用 / database unavailable"
    assert click_words.reworded(said) == said
