"""The server-rendered dashboard (people): its routes, in `router`, included by the app.

Pages live here (one module of routes, one template per tab under
`templates/`), read through the same modules as the API, log in through
`worker.web.session` and check CSRF there; static files go in
`worker/web/static/` (served at `/static/`).
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
