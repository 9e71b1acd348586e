"""Rendering the dashboard: the templates, their filters, flash messages, CSV downloads.

One Jinja2 environment (autoescaped, so nothing a user or Redis hands us
runs in the page) over `templates/`: `page` renders a whole page (nav, the
viewer's CSRF token for htmx, the flash of the last action),
`fragment` the part of a page htmx polls. Templates receive only what a
route hands them: never the settings, so no API key, token or Redis URL can
reach a page. After an action, `back` redirects to a page (Post/Redirect/Get)
with a one-time flash message in a short-lived cookie.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from worker.ledger import State
from worker.times import iso_ms
from worker.web.dashboard.access import Viewer
from worker.web.session import COOKIE, MAX_AGE_S

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
FLASH_COOKIE = "invoicer_flash"
POLL_S = 2
"""How often live parts of a page refresh themselves."""


def duration(seconds: float | None) -> str:
    """`1h02m`, `4m10s`, `12s`, `done`, or `-` when nothing is moving."""
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "done"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def when(at_ms: int | float | None) -> str:
    """A millisecond timestamp as ISO 8601 UTC, or `-`."""
    return "-" if not at_ms else iso_ms(int(at_ms))


def ago(at_ms: int | float | None) -> str:
    """How long ago, for a person: `4s ago`, `3m ago`, `2h ago`."""
    if not at_ms:
        return "never"
    seconds = max(0, int(time.time() - at_ms / 1000))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def thousands(value: int | float | None) -> str:
    """`12,345`; floats to one decimal."""
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


TEMPLATES.env.filters.update(duration=duration, when=when, ago=ago, thousands=thousands)
TEMPLATES.env.globals.update(poll_s=POLL_S, State=State)


def page(
    request: Request, viewer: Viewer, template: str, status: int = 200, **data: object
) -> Response:
    """A whole page: `template` with the viewer, the nav and any flash message."""
    flash = request.cookies.get(FLASH_COOKIE)
    context = {
        "viewer": viewer,
        "flash": unquote(flash) if flash else None,
        "path": request.url.path,
        **data,
    }
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    if viewer.new_cookie:
        response.set_cookie(
            COOKIE,
            viewer.new_cookie,
            max_age=MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response


def fragment(request: Request, viewer: Viewer, template: str, **data: object) -> HTMLResponse:
    """The live part of a page, for htmx to swap in."""
    return TEMPLATES.TemplateResponse(request, template, {"viewer": viewer, **data})


def back(to: str, message: str) -> Response:
    """After an action: go to `to` (a path of ours) and show `message` there once."""
    response = RedirectResponse(to, status_code=303)
    response.set_cookie(
        FLASH_COOKIE, quote(message), max_age=60, httponly=True, samesite="strict", path="/"
    )
    return response


def csv_download(
    rows: AsyncIterator[str], filename: str, *, media_type: str = "text/csv"
) -> StreamingResponse:
    """A file (CSV by default) the browser saves as `filename`, streamed as it is produced."""
    return StreamingResponse(
        rows,
        media_type=f"{media_type}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
