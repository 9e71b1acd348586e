"""The `Invoicer-Signature` header: Stripe's scheme, so receivers can reject replays.

`Invoicer-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`,
keyed with `INVOICER_WEBHOOK_SECRET`. A receiver recomputes the HMAC over the
raw body, compares in constant time, and refuses a `t` older than its
tolerance (five minutes by default): a captured request replayed later fails.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Invoicer-Signature"
TOLERANCE_S = 300


def signature(secret: str, body: bytes, at: int | None = None) -> str:
    """The header value for `body`, signed now (or at `at`, unix seconds)."""
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether `header` signs `body` with `secret`, within `tolerance_s` of now."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))
