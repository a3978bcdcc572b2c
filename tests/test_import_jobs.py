"""Import jobs in the database (they survive a restart) and uploads received only when allowed and small
enough (token first, size cap, bounded concurrency), through the real app."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.uploads import UploadSlots
from common.errors import InvalidInput
from common.settings import ImportSettings, Settings
from importers.pipeline import ImportOptions, run_import
from registry.db import Actor
from tests.conftest import ADMIN_TOKEN
from tests.test_import_api import IMPORTS, upload, wait
from tests.test_import_pipeline import three_lamps, write_geojson

MIB = 1024 * 1024


@pytest.fixture
def small(settings: Settings) -> Settings:
    """Settings with 1 MiB upload caps (so an oversized upload is cheap to send)."""
    caps = ImportSettings(max_upload_mb=1, max_zone_upload_mb=1, max_rules_upload_mb=1)
    return settings.model_copy(update={"imports": caps})


def _job_row(db: Engine, job_id: str) -> Any:
    with db.connect() as conn:
        return conn.execute(text("SELECT * FROM import_jobs WHERE id = :id"), {"id": job_id}).one()


def test_a_queued_job_survives_a_restart_and_a_running_one_is_marked_interrupted(
    db: Engine, settings: Settings, migrated_url: str, auth: dict[str, str], tmp_path: Path
) -> None:
    # A server that queued a job and stopped before its worker ran it (no lifespan: no worker).
    first = create_app(settings, url=migrated_url)
    queued = upload(TestClient(first), auth, write_geojson(tmp_path / "lamps.geojson", three_lamps()))
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["id"]
    first.state.services.engine.dispose()
    assert _job_row(db, job_id).state == "queued"
    upload_path = Path(_job_row(db, job_id).upload_path)
    assert upload_path.is_file()

    # A job that was running when its server died: its row says running, nobody holds its lock.
    dead_id = uuid.uuid4().hex
    dead_folder = settings.embedded.var_dir / "uploads" / dead_id
    dead_folder.mkdir(parents=True)
    (dead_folder / "big.geojson").write_text("{}", "utf-8")
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO import_jobs (id, state, file_name, upload_path, actor, actor_name, started_at) "
                "VALUES (:id, 'running', 'big.geojson', :p, CAST(:a AS jsonb), 'test', now())"
            ),
            {"id": dead_id, "p": str(dead_folder / "big.geojson"), "a": '{"name": "test", "admin": true}'},
        )

    with TestClient(create_app(settings, url=migrated_url)) as client:
        done = wait(client, auth, job_id)
        assert done["status"] == "committed" and done["report"]["counts"]["created"] == 3
        deadline = time.monotonic() + 10
        while _job_row(db, dead_id).state == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        dead = client.get(f"{IMPORTS}/{dead_id}", headers=auth).json()
        listed = client.get(IMPORTS, headers=auth).json()
    assert dead["state"] == "interrupted" and dead["status"] == "interrupted" and dead["done"]
    assert "nothing of it was written" in dead["error"]["message"]
    assert not dead_folder.exists() and not upload_path.parent.exists()
    assert {job["id"] for job in listed["jobs"]} == {job_id, dead_id}
    # Where uploads wait on the server is never shown.
    assert str(settings.embedded.var_dir) not in str(done) + str(dead) + str(listed)


def test_a_job_of_a_live_server_is_not_taken_for_interrupted(
    db: Engine, settings: Settings, migrated_url: str
) -> None:
    app = create_app(settings, url=migrated_url)
    worker = app.state.import_jobs.worker
    with db.begin() as conn:
        seq = conn.execute(
            text(
                "INSERT INTO import_jobs (id, state, file_name, upload_path, actor, actor_name) "
                "VALUES ('live', 'running', 'x.geojson', '/nonexistent/x.geojson', '{}', 't') RETURNING seq"
            )
        ).scalar_one()
    with db.connect() as holder:
        holder.execute(
            text("SELECT pg_advisory_lock(CAST(:k AS int), CAST(:s AS int))"), {"k": 0x494A4F42, "s": seq}
        )
        assert worker.recover() == []
        holder.execute(text("SELECT pg_advisory_unlock_all()"))
    assert worker.recover() == [seq]
    app.state.services.engine.dispose()


# -- uploads: token first, size caps, slots ----------------------------------------------------------


class _Body:
    """A request body of ``total`` bytes handed out in 64 KiB chunks, counting what the app pulled."""

    def __init__(self, total: int, prefix: bytes = b"") -> None:
        self.total, self.prefix, self.pulled = total, prefix, 0

    def chunks(self) -> Iterator[bytes]:
        yield self.prefix
        sent = len(self.prefix)
        while sent < self.total:
            size = min(64 * 1024, self.total - sent)
            sent += size
            yield b"x" * size


def _asgi_post(
    app: FastAPI, path: str, headers: dict[str, str], body: _Body
) -> tuple[int, dict[str, str], bytes]:
    """POST straight through ASGI, so that what the app reads of the body is what it pulled."""
    chunks = body.chunks()

    async def receive() -> dict[str, Any]:
        try:
            chunk = next(chunks)
        except StopIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        body.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    response: dict[str, Any] = {"body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response["status"] = message["status"]
            response["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            response["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return response["status"], response["headers"], response["body"]


UPLOADS = ["/api/v1/imports", "/api/v1/zones/import", "/api/v1/rules/import"]
_MULTIPART = {"content-type": "multipart/form-data; boundary=xyz"}
_PREFIX = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'


@pytest.mark.parametrize("path", UPLOADS)
def test_an_anonymous_upload_is_refused_before_its_body_is_read(
    db: Engine, settings: Settings, migrated_url: str, path: str
) -> None:
    app = create_app(settings, url=migrated_url)
    body = _Body(300 * MIB, _PREFIX)
    status, headers, _ = _asgi_post(app, path, {**_MULTIPART, "content-length": str(body.total)}, body)
    assert status == 401 and headers.get("www-authenticate") == "Bearer"
    assert body.pulled == 0
    wrong = _Body(300 * MIB, _PREFIX)
    status, _, _ = _asgi_post(app, path, {**_MULTIPART, "authorization": "Bearer not-a-token-at-all"}, wrong)
    assert status == 401 and wrong.pulled == 0
    app.state.services.engine.dispose()


@pytest.mark.parametrize("path", UPLOADS)
def test_an_oversized_upload_is_refused_with_413(
    db: Engine, small: Settings, migrated_url: str, path: str
) -> None:
    app = create_app(small, url=migrated_url)
    token = {**_MULTIPART, "authorization": f"Bearer {ADMIN_TOKEN}"}
    declared = _Body(300 * MIB, _PREFIX)
    status, _, answer = _asgi_post(app, path, {**token, "content-length": str(declared.total)}, declared)
    assert status == 413 and declared.pulled == 0 and b"1 MiB" in answer
    # Without a declared length, the reading stops just past the cap.
    chunked = _Body(300 * MIB, _PREFIX)
    status, _, _ = _asgi_post(app, path, token, chunked)
    assert status == 413 and chunked.pulled <= MIB + 128 * 1024
    uploads = small.embedded.var_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    app.state.services.engine.dispose()


def test_uploads_beyond_the_slots_are_told_to_come_back(
    db: Engine, settings: Settings, migrated_url: str, auth: dict[str, str], tmp_path: Path
) -> None:
    app = create_app(settings, url=migrated_url)
    app.state.upload_slots = slots = UploadSlots(1)
    assert slots.acquire()  # someone else's upload is arriving
    path = write_geojson(tmp_path / "lamps.geojson", three_lamps())
    client = TestClient(app)
    busy = upload(client, auth, path)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
    slots.release()
    assert upload(client, auth, path).status_code == 202
    app.state.services.engine.dispose()


def test_upload_names_and_options_that_cannot_work_are_input_errors(
    client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "lamps.geojson", three_lamps())
    for name in ("..", ".", "/", "../.."):
        with path.open("rb") as handle:
            answer = client.post(IMPORTS, headers=auth, files={"file": (name, handle)})
        assert answer.status_code == 400, (name, answer.text)
        assert "is not a file name" in answer.json()["error"]["message"]
    with path.open("rb") as handle:
        zones = client.post(
            "/api/v1/zones/import",
            headers=auth,
            files={"file": ("..", handle)},
            data={"level": "contract", "name_field": "NAME"},
        )
    assert zones.status_code == 400 and "is not a file name" in zones.json()["error"]["message"]
    rot13 = upload(client, auth, path, encoding="rot13")
    assert rot13.status_code == 400 and "unknown text encoding 'rot13'" in rot13.json()["error"]["message"]
    local = upload(client, auth, path, profile="pyproject.toml")
    assert local.status_code == 400 and "built-in profile" in local.json()["error"]["message"]
    assert upload(client, auth, path, dry_run="perhaps").status_code == 422
    missing = client.post(IMPORTS, headers=auth, data={"profile": "szcg"}, files={"other": ("a.txt", b"x")})
    assert missing.status_code == 422


def test_rot13_is_not_a_text_encoding_for_the_importer(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "lamps.csv"
    path.write_text("OBJNAME,X,Y\n路灯,114.3466,22.6953\n", "utf-8")
    for encoding in ("rot13", "hex", "base64", "zlib"):
        with pytest.raises(InvalidInput, match="unknown encoding"):
            run_import(db, path, Actor("t", admin=True), settings, ImportOptions(encoding=encoding))


def test_an_uploaded_profile_extending_a_server_file_fails_without_telling_it(
    client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    secret = tmp_path / "secret.toml"
    secret.write_text('name = "s"\ntoken_value = "hunter2-hunter2"\n', "utf-8")
    path = write_geojson(tmp_path / "lamps.geojson", three_lamps())
    for base in (str(secret), "/etc/passwd"):
        profile = f'name = "mine"\nextends = "{base}"\n'.encode()
        with path.open("rb") as handle:
            queued = client.post(
                IMPORTS,
                headers=auth,
                files={"file": ("lamps.geojson", handle), "mapping": ("m.toml", profile)},
            )
        assert queued.status_code == 202, queued.text
        job = wait(client, auth, queued.json()["id"])
        assert job["status"] == "failed" and job["error"]["type"] == "InvalidInput"
        shown = str(job["error"])
        assert "extends must name a built-in profile" in shown
        for leak in ("token_value", "hunter2", str(tmp_path), "/etc/", "uploads"):
            assert leak not in shown
