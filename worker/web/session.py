"""The dashboard's session cookie and CSRF token: the interface the pages build on.

A person logs in by pasting the admin or the read token once; the dashboard
then calls `issue(role)` and sets the value as an HTTP-only, SameSite=Strict
cookie (`set_session_cookie`). The cookie holds the role, a CSRF token and an
expiry, signed with an HMAC key derived from the configured tokens, so
changing a token ends every session; it never holds a token. Every
state-changing request made with the cookie must carry the session's CSRF
token, as the `X-CSRF-Token` header or the `csrf_token` form field
(`worker.web.auth` checks it; pages put `Session.csrf` in their forms).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from fastapi import Request, Response

from worker.web.roles import Role, Tokens

COOKIE = "invoicer_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
MAX_AGE_S = 12 * 3600
"""A session lasts a working day."""


@dataclass(frozen=True)
class Session:
    """A logged-in person: what they may do, their CSRF token, until when."""

    role: Role
    csrf: str
    expires_at: int


class SessionCodec:
    """Signs and checks session cookie values."""

    def __init__(self, key: bytes, *, max_age_s: int = MAX_AGE_S) -> None:
        self._key = key
        self.max_age_s = max_age_s

    @classmethod
    def of(cls, tokens: Tokens) -> SessionCodec:
        """A codec keyed by the configured tokens (random in open mode: no login there)."""
        material = f"{tokens.admin or ''}\x00{tokens.read or ''}".encode()
        if tokens.open:
            material = secrets.token_bytes(32)
        return cls(hashlib.sha256(b"invoicer-session\x00" + material).digest())

    def issue(self, role: Role, *, now: float | None = None) -> tuple[str, Session]:
        """A new session for `role`: the cookie value and the session it encodes."""
        at = int(time.time() if now is None else now)
        session = Session(role=role, csrf=secrets.token_urlsafe(24), expires_at=at + self.max_age_s)
        body = json.dumps({"r": int(role), "c": session.csrf, "e": session.expires_at})
        payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        return f"{payload}.{self._sign(payload)}", session

    def read(self, value: str, *, now: float | None = None) -> Session | None:
        """The session of a cookie value; `None` if forged, malformed or expired."""
        payload, _, signature = value.partition(".")
        if not signature or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(role=Role(data["r"]), csrf=str(data["c"]), expires_at=int(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= int(time.time() if now is None else now):
            return None
        return session

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def set_session_cookie(response: Response, value: str, *, secure: bool) -> None:
    """Set the session cookie: HTTP-only, SameSite=Strict, Secure over HTTPS."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    """Log out."""
    response.delete_cookie(COOKIE, path="/")


def current_session(request: Request) -> Session | None:
    """The request's valid session, if it has one."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    codec: SessionCodec = request.app.state.sessions
    return codec.read(value)


async def csrf_ok(request: Request, session: Session) -> bool:
    """Whether the request carries `session`'s CSRF token (header, or form field)."""
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        field = form.get(CSRF_FIELD)
        presented = field if isinstance(field, str) else None
    return presented is not None and hmac.compare_digest(presented, session.csrf)
