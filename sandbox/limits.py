"""Per-client-IP rate limits and the Stax 4xx block (docs/sandbox.md, "Stax limits").

A sliding window log per IP: a request is allowed while fewer than `limit`
accepted requests fall in the last `window_s`. Separately, failed (4xx)
responses are logged per IP; more than `failed_limit` of them in a window
block the IP for `block_s`, during which every request gets 429. Pure
bookkeeping with an injectable clock; no I/O.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _IpState:
    accepted: deque[float] = field(default_factory=deque)
    failed: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0


class IpLimiter:
    """Rate limit plus failure block, per client IP."""

    def __init__(
        self,
        *,
        limit: int | None,
        failed_limit: int | None,
        window_s: float,
        block_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._limit = limit
        self._failed_limit = failed_limit
        self._window_s = window_s
        self._block_s = block_s
        self._clock = clock
        self._ips: dict[str, _IpState] = {}

    @property
    def active(self) -> bool:
        """False when neither limit is configured (nothing to check)."""
        return self._limit is not None or self._failed_limit is not None

    def admit(self, ip: str) -> float | None:
        """Count a request from `ip`; `None` if allowed, else seconds to wait."""
        now = self._clock()
        state = self._ips.setdefault(ip, _IpState())
        if state.blocked_until > now:
            return state.blocked_until - now
        if self._limit is None:
            return None
        _expire(state.accepted, now - self._window_s)
        if len(state.accepted) >= self._limit:
            return state.accepted[0] + self._window_s - now
        state.accepted.append(now)
        return None

    def record_failure(self, ip: str) -> None:
        """Log a failed (4xx) response; block the IP once there are too many."""
        if self._failed_limit is None:
            return
        now = self._clock()
        state = self._ips.setdefault(ip, _IpState())
        _expire(state.failed, now - self._window_s)
        state.failed.append(now)
        if len(state.failed) > self._failed_limit:
            state.blocked_until = now + self._block_s
            state.failed.clear()

    def blocked(self) -> dict[str, float]:
        """Blocked IPs and the seconds left on each block."""
        now = self._clock()
        return {ip: s.blocked_until - now for ip, s in self._ips.items() if s.blocked_until > now}


def _expire(log: deque[float], cutoff: float) -> None:
    while log and log[0] <= cutoff:
        log.popleft()


def retry_after_header(wait_s: float) -> tuple[bytes, bytes]:
    """A `Retry-After` header: whole seconds, rounded up, at least 1."""
    return (b"retry-after", str(max(1, math.ceil(wait_s))).encode())
