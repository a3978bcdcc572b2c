"""Imports through the API (upload, job polling, rollback, unit tokens) and ``smartcode import``."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from common.settings import Settings
from registry import tokens
from registry.db import Actor, transaction
from tests.conftest import ADMIN_TOKEN
from tests.helpers import make_asset, make_unit
from tests.test_cli import run as run_cli
from tests.test_import_pipeline import CITY, POWER, WATER, lamp, three_lamps, write_geojson

IMPORTS = "/api/v1/imports"


def upload(client: TestClient, headers: dict[str, str], path: Path, **form: Any) -> Any:
    """POST the file as multipart; returns the response."""
    with path.open("rb") as handle:
        return client.post(IMPORTS, headers=headers, files={"file": (path.name, handle)}, data=form)


def wait(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    """Poll the job until it is done."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = client.get(f"{IMPORTS}/{job_id}", headers=headers).json()
        if body["done"]:
            return body  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("import job did not finish")


def test_upload_poll_and_roll_back(
    client: TestClient, auth: dict[str, str], db: Engine, tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "lamps.geojson", three_lamps())
    response = upload(client, auth, path)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert response.headers["location"].endswith(job_id)
    job = wait(client, auth, job_id)
    assert job["status"] == "committed" and job["progress"]["rows"] == 3
    assert job["report"]["counts"]["created"] == 3 and job["report"]["file"] == "lamps.geojson"
    batch = client.get(f"{IMPORTS}/{job['batch_id']}", headers=auth).json()
    assert batch["status"] == "committed" and batch["counts"]["created"] == 3
    assert client.get(IMPORTS, headers=auth).json()["items"][0]["id"] == job["batch_id"]

    rolled = client.post(f"{IMPORTS}/{job_id}/rollback", headers=auth)
    assert rolled.status_code == 200 and rolled.json()["decommissioned"] == 3
    again = client.post(f"{IMPORTS}/{job['batch_id']}/rollback", headers=auth)
    assert again.status_code == 409 and "rolled_back" in again.json()["error"]["message"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM assets WHERE in_use")).scalar_one() == 0


def test_dry_run_and_strict_through_the_api(client: TestClient, auth: dict[str, str], tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "lamps.geojson", [*three_lamps(), lamp(114.35, 22.70, OBJNAME="飞碟")])
    dry = wait(client, auth, upload(client, auth, path, dry_run="true").json()["id"])
    assert dry["status"] == "dry_run" and dry["report"]["counts"]["created"] == 3
    strict = wait(client, auth, upload(client, auth, path, strict="true").json()["id"])
    assert strict["status"] == "refused" and strict["report"]["counts"]["rejected"] == 1
    problem = strict["report"]["problems"][0]
    assert problem["field"] == "OBJNAME" and problem["value"] == "飞碟"
    assert (
        problem["reason"].startswith("未知的设施类型 '飞碟'") and "unknown class '飞碟'" in problem["reason"]
    )


def test_a_dry_run_through_the_api_answers_the_outcome_the_import_would_have(
    client: TestClient, auth: dict[str, str], db: Engine, tmp_path: Path
) -> None:
    bad = write_geojson(tmp_path / "ufos.geojson", [lamp(114.35, 22.70, OBJNAME="飞碟")])
    dry = wait(client, auth, upload(client, auth, bad, dry_run="true").json()["id"])
    real = wait(client, auth, upload(client, auth, bad).json()["id"])
    assert dry["status"] == real["status"] == "rejected"
    assert dry["report"]["dry_run"] is True and dry["batch_id"] is None
    mixed = write_geojson(tmp_path / "mixed.geojson", [*three_lamps(), lamp(114.35, 22.70, OBJNAME="飞碟")])
    strict = wait(client, auth, upload(client, auth, mixed, dry_run="true", strict="true").json()["id"])
    assert strict["status"] == "refused" and strict["report"]["counts"]["rejected"] == 1
    with db.connect() as conn:
        assert conn.execute(text("SELECT status FROM import_batches")).scalars().all() == ["rejected"]
        assert conn.execute(text("SELECT count(*) FROM assets")).scalar_one() == 0


def test_imports_need_a_writing_token(
    client: TestClient, auth: dict[str, str], db: Engine, tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "lamps.geojson", three_lamps())
    assert upload(client, {}, path).status_code == 401
    with transaction(db) as session:
        reader = tokens.create_token(session, "reader", "reader", Actor("test", admin=True))
    assert upload(client, {"Authorization": f"Bearer {reader}"}, path).status_code == 403
    assert client.get(f"{IMPORTS}/nonesuch", headers=auth).status_code == 404


def test_a_unit_token_imports_only_its_own_assets(
    client: TestClient, auth: dict[str, str], db: Engine, tmp_path: Path, admin: Actor
) -> None:
    power = make_unit(db, POWER, admin, kind="utility")
    water = make_unit(db, WATER, admin, kind="utility")
    make_unit(db, CITY, admin, kind="government")  # the supervisor the rows name: a unit creates none
    theirs = make_asset(db, admin, code="4403100118000300", owner_id=water.id)
    with transaction(db) as session:
        token = tokens.create_token(session, "power", "unit", admin, unit_id=power.id)
    headers = {"Authorization": f"Bearer {token}"}
    features = [
        lamp(114.3466, 22.6953),  # 1: owned by the token's unit
        lamp(114.3470, 22.6960, DEPTNAME2=""),  # 2: no owner given: the token's unit
        lamp(114.3480, 22.6970, DEPTNAME2=WATER),  # 3: someone else's
        lamp(114.3490, 22.6980, OBJCODE="4403100118000300"),  # 4: an asset the water group owns
    ]
    job = wait(
        client,
        headers,
        upload(client, headers, write_geojson(tmp_path / "mine.geojson", features)).json()["id"],
    )
    assert job["status"] == "committed", job
    counts = job["report"]["counts"]
    assert counts["created"] == 2 and counts["rejected"] == 2
    reasons = {p["row"]: p["reason"] for p in job["report"]["problems"]}
    assert "may only import assets of its own unit" in reasons[3]
    assert f"asset {theirs.code} belongs to another unit" in reasons[4]
    with db.connect() as conn:
        owners = (
            conn.execute(text("SELECT DISTINCT owner_id FROM assets WHERE batch_id IS NOT NULL"))
            .scalars()
            .all()
        )
        assert owners == [power.id]
    # Its batch is its own to see and roll back; the administrator's are not.
    assert client.get(f"{IMPORTS}/{job['batch_id']}", headers=headers).status_code == 200
    admin_job = wait(
        client,
        auth,
        upload(client, auth, write_geojson(tmp_path / "a.geojson", [lamp(114.36, 22.71)])).json()["id"],
    )
    assert client.post(f"{IMPORTS}/{admin_job['batch_id']}/rollback", headers=headers).status_code == 403
    assert client.get(f"{IMPORTS}/{admin_job['id']}", headers=headers).status_code == 404


def test_the_import_command(db: Engine, settings: Settings, migrated_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "SMARTCODE_DATABASE_URL": migrated_url, "SMARTCODE_API_TOKEN": ADMIN_TOKEN}
    assert "--dry-run" in run_cli("import", "--help").stdout
    path = write_geojson(tmp_path / "lamps.geojson", three_lamps())
    report_path = tmp_path / "report.json"
    result = run_cli("import", str(path), "--report", str(report_path), env=env)
    assert result.returncode == 0, result.stderr
    assert "新建 3" in result.stdout and "已提交（批次 1）" in result.stdout
    report = json.loads(report_path.read_text("utf-8"))
    assert report["counts"] == {"read": 3, "created": 3, "updated": 0, "unchanged": 0, "rejected": 0}

    bad = write_geojson(tmp_path / "bad.geojson", [lamp(114.35, 22.70, ORDATE="2019-02-30")])
    refused = run_cli("import", str(bad), "--strict", "--report", str(report_path), env=env)
    assert refused.returncode == 1 and "--strict 拒绝整个批次" in refused.stderr
    problems = json.loads(report_path.read_text("utf-8"))["problems"]
    assert problems[0]["row"] == 1 and problems[0]["field"] == "installed"
    assert "没有这一天" in problems[0]["reason"] and "no such date" in problems[0]["reason"]
    english = run_cli("--lang", "en", "import", str(bad), "--strict", env=env)
    assert english.returncode == 1 and "--strict refuses the whole batch" in english.stderr
    assert "no such date" in english.stdout and "没有这一天" not in english.stdout

    rolled = run_cli("import", "rollback", "1", "--json", env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["decommissioned"] == 3


def test_progress_line_only_on_a_terminal() -> None:
    from importers.progress import TerminalProgress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen, pipe = Tty(), io.StringIO()
    for stream in (screen, pipe):
        progress = TerminalProgress(stream, min_interval=0)
        progress("reading", 50_000, 200_000)
        progress("writing", 200_000, 200_000)
        progress.close()
    assert pipe.getvalue() == ""
    assert "读取" in screen.getvalue() and "50,000/200,000 行" in screen.getvalue()
    assert screen.getvalue().endswith("\n")
    english = Tty()
    progress = TerminalProgress(english, min_interval=0, lang="en")
    progress("reading", 50_000, 200_000)
    assert "reading" in english.getvalue() and "50,000/200,000 rows" in english.getvalue()
