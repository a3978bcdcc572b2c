"""``/docs`` works without internet access: every asset it loads comes from the service itself."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_docs_page_loads_only_local_assets(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "SwaggerUIBundle" in html
    external = re.findall(r"""(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)""", html)
    assert external == [], external
    assert "cdn.jsdelivr.net" not in html and "fastapi.tiangolo.com" not in html
    assets = re.findall(r"""(?:src|href)\s*=\s*["'](/[^"']+)""", html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 100, asset
    assert client.get("/openapi.json").status_code == 200


def test_the_page_sends_nothing_to_the_swagger_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text


def test_swagger_files_ship_with_the_package() -> None:
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "static/swagger-ui/*" in package_data["api"]
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "README.md"):
        assert (root / "api" / "static" / "swagger-ui" / name).is_file(), name
