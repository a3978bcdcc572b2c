"""The OpenAPI document lists the error answers of every operation, in the one error envelope."""

from __future__ import annotations

from fastapi.testclient import TestClient

ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}


def _document(client: TestClient) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_every_operation_lists_its_errors_in_the_envelope(client: TestClient) -> None:
    document = _document(client)
    assert set(document["components"]["schemas"]["ErrorEnvelope"]["properties"]) == {"error"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    operations = [(p, m, op) for p, item in document["paths"].items() for m, op in item.items()]
    assert len(operations) > 30
    for path, method, operation in operations:
        errors = {int(s): r for s, r in operation["responses"].items() if int(s) >= 400}
        assert {400, 503} <= set(errors), (method, path)
        for status, answer in errors.items():
            assert answer["content"]["application/json"]["schema"] == ENVELOPE, (method, path, status)


def test_the_statuses_follow_what_the_operation_does(client: TestClient) -> None:
    paths = _document(client)["paths"]

    def statuses(path: str, method: str) -> set[int]:
        return {int(s) for s in paths[path][method]["responses"] if int(s) >= 400}

    assert statuses("/api/v1/assets", "post") == {400, 401, 403, 404, 409, 422, 503}
    assert statuses("/api/v1/zones/{zone_id}", "get") == {400, 401, 404, 422, 503}
    assert statuses("/api/v1/assets/{code}/decommission", "post") == {400, 401, 403, 404, 409, 422, 503}
    assert 401 not in statuses("/api/v1/health", "get")
    assert 401 not in statuses("/api/v1/classes", "get")
