"""The OpenAPI pages (Swagger UI) served from a package's files, never from a CDN.

FastAPI's own /docs loads Swagger UI's JavaScript and CSS from a CDN, so on a machine offline (the adapter
binds 127.0.0.1; the HMI needs no network either) the page stays blank. fastapi-offline ships the same
Swagger UI (5.x: it renders FastAPI's OpenAPI 3.1) as package data; PAS serves those files itself."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS = Path(str(files("fastapi_offline") / "static"))
"""swagger-ui-bundle.js, swagger-ui.css and favicon.png."""


def offline_docs(app: FastAPI, docs_url: str, assets_url: str) -> None:
    """Serve Swagger UI for `app` (created with docs_url=None, redoc_url=None) at docs_url, its files at
    assets_url."""
    app.mount(assets_url, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - API",
                                   swagger_js_url=f"{assets_url}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets_url}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets_url}/favicon.png")
