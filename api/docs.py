"""``/docs``: Swagger UI from files the app serves itself (``api/static/swagger-ui``), never from a CDN.

On an intranet without internet access a CDN-loaded page stays blank. ReDoc is not offered: it would
need its own bundle and web fonts.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"
ASSETS_PATH = "/static/swagger-ui"


def install(app: FastAPI) -> None:
    """Serve the Swagger UI assets and the ``/docs`` page using them (the app is made with docs_url=None)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=SWAGGER_DIR), name="swagger-ui")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        """The interactive API documentation."""
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            # The validator badge is an image from validator.swagger.io: nothing may leave the intranet.
            swagger_ui_parameters={"validatorUrl": None},
        )
