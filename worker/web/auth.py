"""Who may do what over HTTP: bearer tokens, two roles, and the open local mode.

- `INVOICER_ADMIN_TOKEN` may read and act (enqueue, cancel, requeue,
  discard, pause, resume); `INVOICER_READ_TOKEN` may only read. A request
  shows one as `Authorization: Bearer <token>`, or (the dashboard) through
  its signed session cookie (`worker.web.session`), with the session's CSRF
  token in `X-CSRF-Token` on anything that changes state.
- With neither token set the application is *open*: every request may act,
  and so `invoicer web` listens only on a loopback address (`bind_refusal`).
  Open mode still refuses requests whose `Host` is not a loopback name (a
  DNS-rebinding page cannot reach it) and state-changing requests another
  site's page sent (`Origin` / `Sec-Fetch-Site`).

Tokens are compared in constant time; no token ever appears in a response,
a log line or an error message.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request

from worker.web.errors import ApiError
from worker.web.roles import SAFE_METHODS, Role, Tokens
from worker.web.session import csrf_ok, current_session

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for `127.0.0.0/8`, `::1` and `localhost`."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, tokens: Tokens) -> str | None:
    """Why `invoicer web` must not listen on `host`, or `None` if it may."""
    if tokens.open and not is_loopback(host):
        return (
            f"refusing to listen on {host} with no token set: anyone who can reach it "
            "could enqueue and cancel invoices; set INVOICER_ADMIN_TOKEN (and "
            "INVOICER_READ_TOKEN for read-only users), or listen on 127.0.0.1"
        )
    return None


async def authenticate(request: Request) -> Role:
    """The caller's role; raises `ApiError` 401 (no or unknown token) or 403 (open mode refusal)."""
    tokens: Tokens = request.app.state.invoicer.tokens
    if tokens.open:
        _check_local(request)
        return Role.ADMIN
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if header:
        if scheme.lower() != "bearer" or not presented.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <token>'")
        role = tokens.role_of(presented.strip())
        if role is None:
            raise _unauthorized("the bearer token is not one this server accepts")
        return role
    return await _session_role(request)


async def _session_role(request: Request) -> Role:
    """The dashboard's way in: a signed session, and its CSRF token on every change."""
    session = current_session(request)
    if session is None:
        raise _unauthorized("this endpoint needs a bearer token")
    if request.method not in SAFE_METHODS and not await csrf_ok(request, session):
        raise ApiError(
            403,
            "csrf_failed",
            "this action did not carry the page's CSRF token",
            fix="reload the page and try again",
        )
    return session.role


def require(needed: Role) -> Any:
    """A FastAPI dependency that lets through callers with at least `needed`."""

    async def check(request: Request) -> Role:
        role = await authenticate(request)
        if role < needed:
            raise ApiError(
                403,
                "forbidden",
                "the read token may only read; this request changes state",
                fix="use INVOICER_ADMIN_TOKEN for actions",
            )
        return role

    return Depends(check)


READER = require(Role.READ)
"""Route dependency (`dependencies=[READER]`): any valid token, or the open local mode."""
ADMIN = require(Role.ADMIN)
"""Route dependency (`dependencies=[ADMIN]`): the admin token, or the open local mode."""
Reader = Annotated[Role, READER]
"""A route parameter of this type gets the caller's role, at least READ."""
Admin = Annotated[Role, ADMIN]
"""A route parameter of this type gets the caller's role, which is ADMIN."""


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        message,
        fix="send Authorization: Bearer <INVOICER_READ_TOKEN or INVOICER_ADMIN_TOKEN>",
        headers={"WWW-Authenticate": 'Bearer realm="invoicer"'},
    )


def _check_local(request: Request) -> None:
    host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
    if host and not is_loopback(host):
        raise ApiError(
            403,
            "forbidden",
            f"with no token set this server answers only to loopback names, not {host!r}",
            fix="use http://127.0.0.1:<port>/, or set INVOICER_ADMIN_TOKEN",
        )
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    cross = site is not None and site not in ("same-origin", "none")
    if origin and origin != "null":
        cross = cross or not is_loopback(urlsplit(origin).hostname or "")
    if cross:
        raise ApiError(
            403,
            "forbidden",
            "a page from another site may not change state on this server",
            fix="send the request from the dashboard, curl or your own program",
        )
