"""The OpenAPI viewer at ``/schema``, working offline: Swagger UI served from a package, not a CDN.

Litestar's Swagger plugin loads its script and style from a CDN by default, so on a machine without
internet access ``/schema`` was a blank page. The swagger-ui-bundle-v2 package ships Swagger UI's files
(the 5.x line, which reads the OpenAPI 3.1 documents Litestar produces); they are served here under
``/schema/assets``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

__all__ = ["ASSETS_PATH", "openapi_config", "schema_assets"]

ASSETS_PATH: Final = "/schema/assets"


def openapi_config(title: str, version: str) -> OpenAPIConfig:
    """The OpenAPI document's settings, with Swagger UI (at ``/schema`` and ``/schema/swagger``) offline."""
    viewer = SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
        path="/swagger",
    )
    return OpenAPIConfig(title=title, version=version, render_plugins=[viewer])


def schema_assets() -> Router:
    """The route serving Swagger UI's files from the installed package."""
    return create_static_files_router(
        ASSETS_PATH, directories=[Path(str(swagger_ui_path))], include_in_schema=False
    )
