"""`/docs`: the OpenAPI document in Swagger UI, served from our own files.

Swagger UI 5.35.0 is vendored in `static/swagger-ui/` (see its VERSION note:
package, licence, hashes), so the page works on a host without internet and
loads nothing from a CDN. FastAPI's `get_swagger_ui_html` is not used: its
page starts the UI with an inline script, which the Content-Security-Policy
of every page (`worker.web.headers`) refuses; `static/swagger-ui/init.js`
does the same start-up from a file. So `/docs` has the same policy as the
rest: same-origin scripts and styles only. ReDoc is not served.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

ASSETS = "/static/swagger-ui"
"""Where the vendored files are served (the static mount of `worker.web.app`)."""

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/init.js"></script>
</body>
</html>
"""


def docs_router(title: str, openapi_url: str) -> APIRouter:
    """The `/docs` route, showing the document at `openapi_url`."""
    html = _PAGE.format(
        title=escape(f"{title} API"), assets=ASSETS, openapi_url=escape(openapi_url)
    )
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return HTMLResponse(html)

    return router
