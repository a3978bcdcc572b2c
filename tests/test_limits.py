"""Limits on what one asset may carry (defect 9): attribute size, text length, vertices, geometry type,
request bodies; through the API and the importers alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from common.settings import Settings
from registry.limits import MAX_ATTRIBUTES_BYTES, MAX_VERTICES
from tests.helpers import PINGSHAN
from tests.test_import_pipeline import lamp, problem, run, shaped, write_geojson

ASSETS = "/api/v1/assets"
LON, LAT = PINGSHAN


def lamp_body(**fields: Any) -> dict[str, Any]:
    """A street lamp (class 0118) to register."""
    return {"class_code": "0118", "geometry": {"type": "Point", "coordinates": [LON, LAT]}, **fields}


def line(vertices: int) -> dict[str, Any]:
    """A LineString of ``vertices`` points eastwards from 坪山中心区."""
    return {"type": "LineString", "coordinates": [[LON + i * 1e-6, LAT] for i in range(vertices)]}


def test_the_api_refuses_oversized_fields_and_geometries_that_do_not_fit_the_class(
    client: TestClient, auth: dict[str, str], db: Engine
) -> None:
    big = {"blob": "x" * (MAX_ATTRIBUTES_BYTES + 1)}
    answer = client.post(ASSETS, json=lamp_body(attributes=big), headers=auth)
    assert answer.status_code == 422 and "at most 64 KiB" in answer.text
    assert client.post(ASSETS, json=lamp_body(note="n" * 5000), headers=auth).status_code == 422
    assert client.post(ASSETS, json=lamp_body(source_id="s" * 500), headers=auth).status_code == 422

    many = {"type": "MultiPoint", "coordinates": [[LON + i * 1e-6, LAT] for i in range(200)]}
    answer = client.post(ASSETS, json=lamp_body(geometry=many), headers=auth)
    assert answer.status_code == 400 and "expects a point geometry (Point), got MultiPoint" in answer.text
    one = {"type": "MultiPoint", "coordinates": [[LON, LAT]]}
    created = client.post(ASSETS, json=lamp_body(geometry=one), headers=auth)
    assert created.status_code == 201, created.text

    cable = {"class_code": "2105", "geometry": line(MAX_VERTICES + 1)}
    answer = client.post(ASSETS, json=cable, headers=auth)
    assert answer.status_code == 400 and f"at most {MAX_VERTICES:,}" in answer.text
    assert client.post(ASSETS, json={**cable, "geometry": line(500)}, headers=auth).status_code == 201

    with db.connect() as conn:
        kinds = conn.execute(text("SELECT GeometryType(geom) FROM assets ORDER BY id")).scalars().all()
    assert kinds == ["POINT", "LINESTRING"]  # the one-point MultiPoint was stored as its Point


def test_request_bodies_over_the_cap_are_refused_before_they_are_read(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    limit = settings.api.max_body_kb * 1024
    payload = b'{"class_code": "0118", "note": "' + b"x" * limit + b'"}'
    answer = client.post(ASSETS, content=payload, headers={**auth, "content-type": "application/json"})
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]["message"]

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        yield payload[: limit // 2]
        yield payload[limit // 2 :]

    answer = client.post(ASSETS, content=chunks(), headers={**auth, "content-type": "application/json"})
    assert answer.status_code == 413


def test_an_import_rejects_oversized_rows_with_row_and_field(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    features = [
        lamp(114.3466, 22.6953),  # 1: fine
        lamp(114.3470, 22.6960, REMARK="x" * (MAX_ATTRIBUTES_BYTES + 10)),  # 2: attributes too big
        shaped({"type": "MultiPoint", "coordinates": [[114.35, 22.70], [114.351, 22.70]]}),  # 3: two lamps
        shaped({"type": "MultiPoint", "coordinates": [[114.352, 22.70]]}),  # 4: one lamp, as a MultiPoint
        shaped(line(MAX_VERTICES + 1), OBJNAME="架空线缆"),  # 5: too many vertices
    ]
    report = run(db, settings, write_geojson(tmp_path / "limits.geojson", features))
    assert report.counts() == {"read": 5, "created": 2, "updated": 0, "unchanged": 0, "rejected": 3}
    assert problem(report, 2)["field"] == "attributes" and "at most 64 KiB" in problem(report, 2)["reason"]
    assert problem(report, 3)["field"] == "geometry"
    assert "expects a point geometry (Point), got MultiPoint" in problem(report, 3)["reason"]
    assert (
        problem(report, 5)["field"] == "geometry"
        and f"{MAX_VERTICES + 1:,} vertices" in problem(report, 5)["reason"]
    )
    with db.connect() as conn:
        kinds = conn.execute(text("SELECT GeometryType(geom) FROM assets")).scalars().all()
    assert kinds == ["POINT", "POINT"]
