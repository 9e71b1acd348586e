"""`/login` and `/logout`: a person pastes the admin or the read token once.

The token is checked by `Tokens.role_of` (constant time) and then forgotten:
the session cookie `worker.web.session` issues holds the role, never the
token. The login form has its own CSRF defence (a double-submit cookie), so
another site cannot log a visitor in under a token of its choosing.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from worker.web.dashboard.access import Leaving, viewer
from worker.web.dashboard.render import TEMPLATES
from worker.web.roles import Tokens
from worker.web.session import (
    SessionCodec,
    clear_session_cookie,
    current_session,
    set_session_cookie,
)

router = APIRouter()
LOGIN_COOKIE = "invoicer_login"


def _safe_next(target: str | None) -> str:
    """Only a path of ours: never `//evil.example` or `https://...`."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def _form(request: Request, *, next_: str, error: str | None, status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(24)
    context = {"next": next_, "error": error, "login_csrf": nonce}
    response = TEMPLATES.TemplateResponse(request, "login.html", context, status_code=status)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=900,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/login",
    )
    return response


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    """The login form (or straight on, with a session or nothing to log in to)."""
    tokens: Tokens = request.app.state.invoicer.tokens
    if tokens.open or current_session(request) is not None:
        if tokens.open:
            await viewer(request)  # loopback names only
        return RedirectResponse(_safe_next(next), status_code=303)
    return _form(request, next_=_safe_next(next), error=None)


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Check the token; on success set the session cookie and go on."""
    target = _safe_next(next)
    tokens: Tokens = request.app.state.invoicer.tokens
    if tokens.open:
        return RedirectResponse(target, status_code=303)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        message = "the login form expired; it has been reloaded: paste the token again"
        return _form(request, next_=target, error=message, status=403)
    role = tokens.role_of(token.strip())
    if role is None:
        message = "that is not a token this server accepts (INVOICER_ADMIN_TOKEN or _READ_TOKEN)"
        return _form(request, next_=target, error=message, status=401)
    codec: SessionCodec = request.app.state.sessions
    value, _ = codec.issue(role)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, value, secure=request.url.scheme == "https")
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, who: Leaving) -> Response:
    """End the session (the cookie goes; nothing is kept server-side)."""
    response = RedirectResponse("/login" if not who.open else "/", status_code=303)
    clear_session_cookie(response)
    return response
