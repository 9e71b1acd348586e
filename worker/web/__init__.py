"""`invoicer web`: the HTTP intake API, the operator API, `/metrics` and the dashboard.

One FastAPI application, built by `create_app(settings, redis)`: it reads the
environment never (settings are passed in) and owns no rule of its own. Every
route reads and acts through the modules the CLI uses: `worker.api` (intake),
`worker.ledger`, `worker.status`, `worker.report`, `worker.dead_letter`,
`worker.limits`, `worker.cancel`.

Layout:
- `app.py`: the factory; wires middleware, error handlers, routers, static files.
- `context.py`: `WebContext`, what every route gets (settings, Redis, keys).
- `auth.py`: bearer tokens and roles (`INVOICER_ADMIN_TOKEN` acts,
  `INVOICER_READ_TOKEN` reads), the open local mode, the bind rule.
- `session.py`: the signed session cookie and CSRF token for the dashboard.
- `errors.py`: `ApiError` and the one JSON error body (`{"error": {...}}`).
- `headers.py`: security headers on every response.
- `docs.py`: `/docs`, Swagger UI from the vendored `static/swagger-ui/`.
- `upload.py`: an uploaded file (raw body or form) streamed to a temporary file.
- `routes/`: one module per API resource under `/v1`, plus `health.py`
  (`/healthz`) and `metrics.py` (`/metrics`).
- `dashboard/`: the server-rendered pages (their templates under
  `dashboard/templates/`); `static/`: files served at `/static/`.
"""

from __future__ import annotations

from worker.web.app import create_app

__all__ = ["create_app"]
