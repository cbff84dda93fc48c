"""Swagger UI at /docs from files served by the service itself (the `fastapi-swagger`
package ships Swagger UI's release), so it works offline and no third-party script runs on
the page where people type their password."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

STATIC = "/docs/static"
# Everything from this origin; data: images are Swagger UI's inline icons.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{title}} - Swagger UI</title>
<link rel="icon" type="image/png" href="{STATIC}/favicon-32x32.png">
<link rel="stylesheet" href="{STATIC}/swagger-ui.css">
<link rel="stylesheet" href="{STATIC}/notes.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{STATIC}/swagger-ui-bundle.js"></script>
<script src="{STATIC}/init.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve /docs and its files, and send `/` there; the app is made with docs_url=None
    and redoc_url=None."""
    page = _PAGE.replace("{title}", app.title)

    async def swagger_ui(_: Request) -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})

    async def root(_: Request) -> RedirectResponse:
        # A browser pointed at the bare address lands somewhere useful instead of a 404.
        return RedirectResponse("/docs", status_code=307)

    app.add_route("/", root, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.mount(
        STATIC,
        StaticFiles(packages=[("notes_api.core", "swagger"), ("fastapi_swagger", "resources")]),
        name="swagger-static",
    )
