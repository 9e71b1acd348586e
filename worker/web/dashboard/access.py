"""Who is looking at the dashboard, and whether they may act.

Built on `worker.web.session` (the signed cookie, the CSRF token) and
`worker.web.auth` (roles, the open local mode): pages take `Viewer` (any
valid session; in the open local mode one is issued on the first visit, so
actions carry a CSRF token there too), actions take `Actor` (a session, its
CSRF token on the request, and the admin role). A page without a session
raises `LoginRequired`, which `install` turns into a redirect to `/login`
(for htmx's polling, an `HX-Redirect` so the whole page goes, not a box).
The read role sees every page without its buttons, and each action refuses
it here, server-side, whatever the page showed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from worker.web.auth import authenticate
from worker.web.errors import ApiError
from worker.web.roles import Role, Tokens
from worker.web.session import Session, SessionCodec, csrf_ok, current_session


@dataclass(frozen=True)
class Viewer:
    """A person with a session: their role and the CSRF token their forms carry."""

    role: Role
    csrf: str
    open: bool
    """No token is configured (the open local mode): there is no login."""
    new_cookie: str | None = None
    """A session cookie to set with this response (the open mode's first visit)."""

    @property
    def can_act(self) -> bool:
        """Whether buttons that change state are shown (and would be accepted)."""
        return self.role >= Role.ADMIN


class LoginRequired(Exception):
    """The request has no valid session: send the person to the login page."""

    def __init__(self, back_to: str) -> None:
        super().__init__(back_to)
        self.back_to = back_to


def _tokens(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.invoicer.tokens
    return tokens


def _back_to(request: Request) -> str:
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


async def viewer(request: Request) -> Viewer:
    """FastAPI dependency of every page: the viewer, or `LoginRequired`."""
    session = current_session(request)
    if _tokens(request).open:
        await authenticate(request)  # loopback names only
        if session is None:
            codec: SessionCodec = request.app.state.sessions
            value, session = codec.issue(Role.ADMIN)
            return Viewer(Role.ADMIN, session.csrf, open=True, new_cookie=value)
        return Viewer(session.role, session.csrf, open=True)
    if session is None:
        raise LoginRequired(_back_to(request))
    return Viewer(session.role, session.csrf, open=False)


async def _checked_session(request: Request) -> tuple[Session, bool]:
    if _tokens(request).open:
        await authenticate(request)  # loopback names, same-site requests only
    session = current_session(request)
    if session is None:
        raise LoginRequired(request.headers.get("hx-current-url") or "/")
    if not await csrf_ok(request, session):
        raise ApiError(
            403,
            "csrf_failed",
            "this action did not carry the page's CSRF token",
            fix="reload the page and try again",
        )
    return session, _tokens(request).open


async def person(request: Request) -> Viewer:
    """FastAPI dependency of log out: a session and its CSRF token, any role."""
    session, open_ = await _checked_session(request)
    return Viewer(session.role, session.csrf, open=open_)


async def actor(request: Request) -> Viewer:
    """FastAPI dependency of every action: a session, its CSRF token, the admin role."""
    session, open_ = await _checked_session(request)
    if session.role < Role.ADMIN:
        raise ApiError(
            403,
            "forbidden",
            "the read token may only look; this action changes state",
            fix="log in with INVOICER_ADMIN_TOKEN to act",
        )
    return Viewer(session.role, session.csrf, open=open_)


Looking = Annotated[Viewer, Depends(viewer)]
"""A page's parameter: who looks (any role)."""
Acting = Annotated[Viewer, Depends(actor)]
"""An action's parameter: who acts (admin, with the page's CSRF token)."""
Leaving = Annotated[Viewer, Depends(person)]
"""Log out's parameter: a session with its CSRF token."""


def login_url(back_to: str) -> str:
    """`/login`, coming back to `back_to` (a path of ours) afterwards."""
    return "/login" if back_to in ("", "/") else f"/login?next={quote(back_to, safe='')}"


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    target = login_url(exc.back_to)
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def install_login_redirect(app: FastAPI) -> None:
    """Turn `LoginRequired` into the redirect to the login page."""
    app.add_exception_handler(LoginRequired, _to_login)
