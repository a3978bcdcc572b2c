"""The ``smartcode`` console script: help everywhere, JSON for machines, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from common.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.helpers import make_asset

SMARTCODE = str(Path(sys.executable).parent / "smartcode")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script as a user would."""
    return subprocess.run(
        [SMARTCODE, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.parametrize(
    "command",
    [[], ["db"], ["db", "start"], ["migrate"], ["serve"], ["show"], ["token"], ["demo"], ["resolve"]],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_code_check_prints_text_and_json() -> None:
    text_out = run("code", "4403100118000123")
    assert text_out.returncode == 0
    assert any(  # labelled lines, Chinese by default
        line.startswith("印刷格式") and "440310-0118-000123-" in line for line in text_out.stdout.splitlines()
    )
    parsed = json.loads(run("code", "440310 0118 000123", "--json").stdout)
    assert parsed["serial"] == 123 and len(parsed["code"]) == 17


def test_errors_are_one_line_on_stderr_with_nonzero_status() -> None:
    result = run("code", "4403100118")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().startswith("错误：编码 '4403100118' 有 10 位数字")
    assert len(result.stderr.strip().splitlines()) == 1
    english = run("--lang", "en", "code", "4403100118")
    assert english.stderr.strip().startswith("error: code '4403100118' has 10 digits; expected 16 or 17")
    assert len(english.stderr.strip().splitlines()) == 1


def test_show_reads_the_configured_database(db: Engine, settings: Settings, migrated_url: str, admin) -> None:
    lamp = make_asset(db, admin)
    env = {**os.environ, "SMARTCODE_DATABASE_URL": migrated_url, "SMARTCODE_API_TOKEN": ADMIN_TOKEN}
    result = run("show", lamp.code, "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["class"]["name"] == "路灯"
    missing = run("show", "4403100118000999" + "0", env=env)
    assert missing.returncode == 1 and missing.stderr.startswith("错误：")
