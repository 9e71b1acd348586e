"""The server-rendered dashboard (people): one module of routes per tab, one template each.

- `/login`, `/logout` (`login.py`): paste the admin or the read token once;
- `/` overview (`overview.py`), `/batches` (`batches.py`), `/dead-letters`
  (`dead_letters.py`), `/invoices?number=` search (`search.py`);
- `access.py`: who looks (`Viewer`) and who may act (`Actor`: admin, CSRF);
- `render.py`: the Jinja2 templates (`templates/`), flash messages, CSV;
- `chart.py`: the overview's chart as server-side SVG.

Pages are rendered on the server and keep themselves current with htmx
(vendored in `worker/web/static/`, see its NOTICE) polling a fragment of
the page every few seconds; no front-end build step, nothing fetched from
the internet. Every number is read through the modules the CLI and the API
use (`worker.status`, `worker.report`, `worker.dlq`, `worker.ledger`,
`worker.limits`, `worker.pauses`, `worker.fleet`, `worker.cancel`, `worker.activity`): the
dashboard holds no rule of its own, and reads only maintained counters and
indexes, so its pages cost the same for 100 or 100,000 invoices.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from worker.web.dashboard import batches, dead_letters, login, overview, search
from worker.web.dashboard.access import install_login_redirect

router = APIRouter(include_in_schema=False)
for _module in (login, overview, batches, dead_letters, search):
    router.include_router(_module.router)


def install(app: FastAPI) -> None:
    """Add the dashboard's pages to `app`, and its redirect to the login page."""
    app.include_router(router)
    install_login_redirect(app)
