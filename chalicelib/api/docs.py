"""API layer: `GET /docs`, Swagger UI over `GET /openapi.json`, with its files served by the API (no CDN).

Swagger UI's files come from the `openapi-ui-bundles` package (Swagger UI 5, which reads OpenAPI
3.1). It is a development dependency, not a Lambda one: on AWS every route needs a SigV4-signed
request, which a browser does not send, so the deployed /docs says where the document is instead
of shipping 1.6 MB of JavaScript in every function's package.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from chalicelib.domain.errors import EsdeployError

ASSET_TYPES = {"swagger-ui.css": "text/css; charset=utf-8", "swagger-ui-bundle.js": "text/javascript; charset=utf-8"}

# Relative URLs, so that the page works at /docs locally and at /<stage>/docs behind API Gateway;
# resolved against the page's own URL, they differ with a trailing slash (`docs_page(at_path)`).
# The icon is inline: a browser then does not ask for /favicon.ico.
_SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>esdeploy API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{assets}swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({{url: "{document}", dom_id: "#swagger-ui", deepLinking: true}});</script>
</body></html>
"""

_PLAIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>esdeploy API</title>
<link rel="icon" href="data:,"></head>
<body><h1>esdeploy API</h1>
<p>The OpenAPI 3.1 document of this API is at <a href="{document}">openapi.json</a> (send it signed,
like every request to this stage). Swagger UI is not part of the Lambda package: browse the document
with <code>esdeploy local</code>'s <code>/docs</code>, or load <code>docs/openapi.json</code> from the
esdeploy repository into any OpenAPI viewer. <code>docs/api.md</code> has a recorded request and answer for
every route.</p>
</body></html>
"""


class AssetNotFoundError(EsdeployError):
    """Not a file of Swagger UI that /docs serves."""


def _swagger_files() -> Path | None:
    spec = importlib.util.find_spec("openapi_ui_bundles")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "swagger_ui" / "vendor"


def docs_page(at_path: str = "/docs") -> str:
    """The page as asked for at `at_path`: at `/docs/` a browser resolves `docs/x` to `/docs/docs/x`
    and `openapi.json` to `/docs/openapi.json`, so the links are made for where the page is."""
    in_folder = at_path.endswith("/")
    assets, document = ("", "../openapi.json") if in_folder else ("docs/", "openapi.json")
    page = _SWAGGER_PAGE if _swagger_files() is not None else _PLAIN_PAGE
    return page.format(assets=assets, document=document)


def docs_asset(name: str) -> tuple[str, str]:
    """(content type, text) of one of Swagger UI's files."""
    folder = _swagger_files()
    if name not in ASSET_TYPES or folder is None:
        raise AssetNotFoundError(f"no such file of Swagger UI: `{name}`")
    return ASSET_TYPES[name], (folder / name).read_text(encoding="utf-8")
