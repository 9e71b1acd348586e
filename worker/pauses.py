"""Pauses of a provider account: the flag every worker checks before a request.

One Redis key per account (`Keys.pause`), set with a TTL for a pause that
ends (a 429's Retry-After, the failure budget spent) or without one for a
pause only an operator ends (`invoicer resume`, after a 401/403). Its value
is JSON (reason, when it was set); a plain string set by hand with
`redis-cli` is read as the reason. Read with Redis's own clock, like the
limiter's timeline. `AccountPauses` sets pauses from how requests end (the
limiter, `worker.limits`, tells it, and honours them); `invoicer pause` /
`resume`, status and the dashboard use the functions here.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

import redis.asyncio as aioredis

from jobs.errors import ConfigurationError, InvoiceError, RateLimited
from jobs.models import Provider
from worker.keys import Keys, account_name
from worker.lua import limit_source
from worker.replies import text
from worker.settings import ProviderSettings

log = logging.getLogger("invoicer.limits")

WINDOW_MS = 60_000
"""The failure budget's sliding window (Stax counts failures per minute)."""
MIN_PAUSE_S = 1.0
"""A 429 without a usable Retry-After still pauses this long."""

# worker/lua/limit_pause.lua, limit_probe.lua and limit_failure.lua (see each
# file's header for its KEYS, ARGV and reply).
PAUSE_LUA = limit_source("pause")
PROBE_LUA = limit_source("probe")
_FAILURE_LUA = limit_source("failure")

ProbeReply = Sequence[int | bytes | str | None]
"""What `PROBE_LUA` returns: PTTL, Redis time (ms), and the flag when set."""


@dataclass(frozen=True)
class PauseState:
    """Why a provider account is paused, and until when (Redis server time)."""

    reason: str
    until_ms: int | None
    """`None`: until an operator resumes it."""
    set_at_ms: int | None = None
    """`None` when the flag was set by hand outside invoicer."""
    remaining_s: float | None = None
    """Seconds left when read (Redis's own count); `None` with no end."""
    kind: str | None = None
    """"unreachable": set because the provider could not be reached, ended
    by the workers' own probe (`worker.reachability`); `None` otherwise."""

    @property
    def indefinite(self) -> bool:
        """True when only `resume` ends this pause."""
        return self.until_ms is None


def parse_pause(raw: bytes | str, pttl_ms: int, now_ms: int) -> PauseState:
    """Parse the pause flag (its PTTL and Redis time beside it); a plain string
    (set with redis-cli) is its reason."""
    reason = text(raw)
    until_ms = None if pttl_ms < 0 else now_ms + pttl_ms
    remaining_s = None if pttl_ms < 0 else pttl_ms / 1000
    try:
        data = json.loads(reason)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return PauseState(reason=reason, until_ms=until_ms, remaining_s=remaining_s)
    set_at, kind = data.get("set_at_ms"), data.get("kind")
    return PauseState(
        reason=str(data.get("reason", "")),
        until_ms=until_ms,
        set_at_ms=int(set_at) if _finite(set_at) else None,
        remaining_s=remaining_s,
        kind=kind if isinstance(kind, str) else None,
    )


def _finite(value: object) -> TypeGuard[int | float]:
    # JSON takes 1e999 for infinity: a hand-set flag must not crash a reader.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


async def pause_provider(
    redis: aioredis.Redis,
    keys: Keys,
    provider: Provider,
    account: str,
    reason: str,
    ttl_s: float | None = None,
) -> bool:
    """Pause one provider account for every worker (`ttl_s=None`: until resumed).

    Never shortens a longer pause, and an indefinite pause is only ended by
    `resume_provider`. Returns True if this call took effect (the account was
    not paused, or its pause was shorter and now lasts longer); False if an
    equal or longer pause already held (its reason is kept).
    """
    ttl_ms = -1 if ttl_s is None else max(1, math.ceil(ttl_s * 1000))
    script = redis.register_script(PAUSE_LUA)
    result = await script(keys=[keys.pause(provider, account)], args=[reason, ttl_ms])
    return int(result) > 0


async def resume_provider(
    redis: aioredis.Redis, keys: Keys, provider: Provider, account: str
) -> bool:
    """End any pause of the account (and re-arm its one-time report).

    Returns True if it was paused. The failure window is kept: the provider
    still counts those failures.
    """
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.pause(provider, account))
        pipe.delete(keys.pause_reported(provider, account))
        removed, _ = await pipe.execute()
    return int(removed) == 1


async def pause_state(
    redis: aioredis.Redis, keys: Keys, provider: Provider, account: str
) -> PauseState | None:
    """The account's pause, or `None` when requests may flow."""
    script = redis.register_script(PROBE_LUA)
    reply: ProbeReply = await script(keys=[keys.pause(provider, account)])
    return probe_reply(reply)


def probe_reply(reply: ProbeReply) -> PauseState | None:
    """The pause a run of `PROBE_LUA` found, or `None`."""
    raw = reply[2] if len(reply) > 2 else None
    return pause_from_read(int(reply[0] or 0), int(reply[1] or 0), raw)


def pause_from_read(pttl_ms: int, now_ms: int, raw: int | bytes | str | None) -> PauseState | None:
    """The pause that a read of the flag found (PTTL, Redis time, GET), or `None`."""
    if pttl_ms == -2 or raw is None or isinstance(raw, int):
        return None
    return parse_pause(raw, pttl_ms, now_ms)


class AccountPauses:
    """The pause flag of one provider account, and what sets it: a 429, a
    refused key (401/403: reported once across every process), and the budget
    of failed (4xx) requests (Stax blocks the IP after ten in a minute).

    Args:
        settings: the account, and its `failed_per_minute` (None: no budget).
    """

    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: ProviderSettings) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._who = account_name(settings.provider, settings.account)
        self.key = keys.pause(settings.provider, settings.account)
        """The Redis key of the flag."""
        self._probe_script = redis.register_script(PROBE_LUA)
        self._failure_script = redis.register_script(_FAILURE_LUA)

    async def state(self) -> PauseState | None:
        """The account's pause, or `None`."""
        return probe_reply(await self._probe_script(keys=[self.key]))

    async def pause(self, reason: str, *, ttl_s: float | None) -> bool:
        """Pause the account for every worker; see `pause_provider`."""
        provider, account = self._settings.provider, self._settings.account
        return await pause_provider(self._redis, self._keys, provider, account, reason, ttl_s)

    async def resume(self) -> bool:
        """End the account's pause; see `resume_provider`."""
        provider, account = self._settings.provider, self._settings.account
        return await resume_provider(self._redis, self._keys, provider, account)

    async def learn(self, error: InvoiceError) -> None:
        """Learn from how a request ended in `error`.

        A 429 pauses the account for its Retry-After; a `ConfigurationError`
        (401/403) pauses it until resumed and is logged at ERROR once across
        every process; every 4xx answer (429 and 401/403 included: the
        provider may count them) spends the failure budget, which pauses the
        account when spent. 5xx answers change nothing.
        """
        if isinstance(error, ConfigurationError):
            await self._pause_for_configuration(error)
        if isinstance(error, RateLimited) and error.status == 429:
            ttl_s = max(MIN_PAUSE_S, error.retry_after_s)
            if await self.pause(f"429 from provider, Retry-After {ttl_s:g}s", ttl_s=ttl_s):
                log.warning("%s paused for %.1fs: 429 from the provider", self._who, ttl_s)
        if error.status is not None and 400 <= error.status < 500:
            await self._count_failure()

    async def _pause_for_configuration(self, error: ConfigurationError) -> None:
        status = str(error.status) if error.status is not None else "configuration"
        variable = self._variable_to_fix(error)
        reason = f"{status}: {error.message} (check {variable})"
        await self.pause(reason, ttl_s=None)
        reported_key = self._keys.pause_reported(self._settings.provider, self._settings.account)
        # SET NX: exactly one process (the first) reports; `resume` re-arms it.
        if await self._redis.set(reported_key, reason, nx=True):
            log.error(
                "%s paused until resumed by hand: %s; fix %s, restart the workers, then run "
                "`invoicer resume %s`; its invoices stay queued",
                self._who,
                reason,
                variable,
                self._settings.provider.value,
            )

    def _variable_to_fix(self, error: ConfigurationError) -> str:
        # A 404 on create is a wrong base URL; a 401/403 a refused key.
        if error.setting == "base_url" or error.status == 404:
            return self._settings.base_url_variable
        return self._settings.key_variable

    async def _count_failure(self) -> None:
        limit = self._settings.failed_per_minute or 0
        keys = [
            self._keys.failures(self._settings.provider, self._settings.account),
            self.key,
        ]
        reason = f"failure budget spent: {limit} failed (4xx) requests within 60s"
        args: list[int | str] = [limit, WINDOW_MS, uuid.uuid4().hex, reason]
        count, paused, ttl_ms = await self._failure_script(keys=keys, args=args)
        if int(paused) > 0:
            log.warning(
                "%s paused for %.1fs: %d failed requests in the last minute",
                self._who,
                int(ttl_ms) / 1000,
                int(count),
            )
