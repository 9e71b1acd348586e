"""The shared pace of one provider account: request slots, pauses, the 4xx budget.

Owns every decision about *when* a request may leave for a provider, for all
worker processes on all hosts at once, through Redis:

- a rate limit: one Lua call reserves the next request slot on a GCRA
  timeline ("theoretical arrival time") kept in Redis and read with Redis's
  own clock (`TIME`), so hosts with skewed clocks share one timeline; an
  `aiolimiter.AsyncLimiter` per process sits in front so a process with
  hundreds of waiting jobs does not hammer Redis;
- pauses (`worker.pauses`): a 429 pauses the account for its Retry-After, a
  401/403 pauses it until an operator resumes it (reported once across every
  process), and a budget of failed (4xx) requests pauses it before Stax's
  ten-failures-a-minute one-hour IP block;
- reachability (`worker.reachability`): a streak of failed connections
  pauses it until a probe gets an answer.

It never calls a provider, never retries and never touches the ledger: it only
says "go", "wait" or "stop" (`RateLimited`). Key names come from `worker.keys`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import redis.asyncio as aioredis
from aiolimiter import AsyncLimiter

from jobs.errors import InvoiceError, ProviderUnreachable, RateLimited
from jobs.ports import Limiter
from worker.keys import Keys, account_name
from worker.lua import limit_source
from worker.pauses import WINDOW_MS, AccountPauses, PauseState, parse_pause
from worker.reachability import Reachability
from worker.retry_policy import PAUSE_RECHECK_S
from worker.settings import ProviderSettings

log = logging.getLogger("invoicer.limits")

SAFETY = 0.02
"""Slots are spaced 2% wider than the limit: the provider's clock and our
sleeps are not exact, and going over costs a 429 (or an hour's block)."""
LATE_TOLERANCE_S = 0.01
"""How late after its slot a request may still leave (see `acquire`)."""
LOCAL_PAUSE_CACHE_S = 1.0
"""A seen pause is trusted locally this long, so a paused process does not ask
Redis for every job; short, so a hand `resume` is noticed within a second."""

# The scripts live in worker/lua/limit_*.lua (see each file's header for its
# KEYS, ARGV and reply); all share worker/lua/limit_common.lua.
_RESERVE_LUA = limit_source("reserve")
_BUDGET_LUA = limit_source("budget")


@dataclass(frozen=True)
class _Slot:
    """One reservation attempt on the shared timeline (Redis server time)."""

    granted: bool
    wait_s: float
    at_s: float
    """When the slot is (or would have been), in Redis server seconds."""


class ProviderLimiter:
    """`jobs.ports.Limiter` for one provider account, shared through Redis.

    Args:
        redis: the shared Redis (decoded responses or not).
        keys: key names under the installation's prefix.
        settings: the account's `rate_per_minute` (None: unlimited) and
            `failed_per_minute` (None: no failure budget).
        max_wait_s: the longest `acquire` waits for a slot before it raises
            `RateLimited`; keep it well under arq's job timeout, which is final.
        clock: wall clock for the short local cache of a seen pause.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        settings: ProviderSettings,
        *,
        max_wait_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._who = account_name(settings.provider, settings.account)
        rate = settings.rate_per_minute
        self._interval_us = round(60e6 * (1 + SAFETY) / rate) if rate else 0
        # aiolimiter needs max_rate >= 1 to grant one; keep the same rate.
        self._local = AsyncLimiter(max(1.0, rate), 60 * max(1.0, rate) / rate) if rate else None
        self._pauses = AccountPauses(redis, keys, settings)
        self.reachability = Reachability(redis, keys, settings)
        """Whether the account can be reached; its probe is driven by the worker runtime."""
        self._reserve_script = redis.register_script(_RESERVE_LUA)
        self._budget_script = redis.register_script(_BUDGET_LUA)
        self._seen_pause: tuple[float, str, float | None] | None = None

    @property
    def pause_key(self) -> str:
        """The Redis key of this account's pause flag."""
        return self._pauses.key

    @property
    def _pause_key(self) -> str:
        return self._pauses.key

    @property
    def probes_pause(self) -> bool:
        """True when `acquire` reads the pause flag in a call of its own (no
        rate limit); a caller that just read it can use `with_pause_read`."""
        return self._local is None

    def with_pause_read(self, pause: PauseState | None) -> Limiter:
        """This limiter for one job whose pause flag was read a moment ago
        (with its ledger claim): the first `acquire` decides on `pause`
        instead of asking Redis again; later ones ask as usual."""
        return _PauseRead(self, pause) if self.probes_pause else self

    async def acquire(self) -> None:
        """Wait for this account's next request slot (at most `max_wait_s`).

        Raises:
            RateLimited: the account is paused (`retry_after_s` is the time
                left, or `PAUSE_RECHECK_S` for a pause with no end), or no
                slot is free within `max_wait_s` (`retry_after_s` is the wait).
        """
        self._raise_if_seen_paused()
        if self._local is None:
            await self._check_pause()
            return
        started_s = time.monotonic()
        await self._local_slot()
        while True:
            left_s = max(0.0, self._max_wait_s - (time.monotonic() - started_s))
            slot = await self._reserve(max_wait_s=left_s)  # refuses while paused
            if slot.wait_s <= 0:
                return
            due_s = time.monotonic() + slot.wait_s
            await asyncio.sleep(slot.wait_s)
            # A pause set while we slept (a 429, the failure budget spent by
            # another request) must stop this one too: Stax blocks the IP
            # after ten failures, whoever sent them.
            await self._check_pause()
            # A request sent well after its slot would bunch up with the
            # on-time ones behind it (a stalled event loop, a process
            # starting): the provider counts arrivals, so a late slot is
            # given up. Checked last, so no await stands between this check
            # and the request leaving.
            if time.monotonic() - due_s <= LATE_TOLERANCE_S:
                return

    async def _check_pause(self) -> None:
        paused = await self._pauses.state()
        if paused is not None:
            self._raise_paused(paused)

    async def _local_slot(self) -> None:
        assert self._local is not None
        try:
            async with asyncio.timeout(self._max_wait_s):
                await self._local.acquire()
        except TimeoutError:
            raise RateLimited(
                f"{self._who}: no local slot within {self._max_wait_s:g}s",
                retry_after_s=self._max_wait_s,
            ) from None

    async def _reserve(self, *, max_wait_s: float | None = None) -> _Slot:
        """Reserve the next shared slot; returns it (tests read `at_s`).

        Raises:
            RateLimited: paused, or the slot is more than `max_wait_s` away
                (then nothing is reserved).
        """
        limit_s = self._max_wait_s if max_wait_s is None else max_wait_s
        keys = [self._pause_key, self._tat_key]
        args = [self._interval_us, round(limit_s * 1e6)]
        status, value, extra, *now_ms = await self._reserve_script(keys=keys, args=args)
        if int(status) < 0:
            self._raise_paused(parse_pause(extra, int(value), int(now_ms[0])))
        slot = _Slot(granted=int(status) == 1, wait_s=int(value) / 1e6, at_s=int(extra) / 1e6)
        if not slot.granted:
            raise RateLimited(
                f"{self._who}: next request slot in {slot.wait_s:.1f}s", retry_after_s=slot.wait_s
            )
        return slot

    @property
    def _tat_key(self) -> str:
        return self._keys.rate_tat(self._settings.provider, self._settings.account)

    def _raise_if_seen_paused(self) -> None:
        if self._seen_pause is None:
            return
        trusted_until_s, message, ends_at_s = self._seen_pause
        now_s = self._clock()
        if now_s >= trusted_until_s:
            self._seen_pause = None
            return
        left_s = PAUSE_RECHECK_S if ends_at_s is None else max(0.05, ends_at_s - now_s)
        raise RateLimited(message, retry_after_s=left_s)

    def _raise_paused(self, state: PauseState) -> NoReturn:
        """Remember the pause briefly (this process only), then raise it."""
        now_s = self._clock()
        left_s = state.remaining_s
        retry_after_s = PAUSE_RECHECK_S if left_s is None else max(0.05, left_s)
        message = f"{self._who} paused: {state.reason}"
        ends_at_s = None if left_s is None else now_s + left_s
        self._seen_pause = (now_s + min(LOCAL_PAUSE_CACHE_S, retry_after_s), message, ends_at_s)
        raise RateLimited(message, retry_after_s=retry_after_s)

    async def record(self, error: InvoiceError | None) -> None:
        """Learn from how a request ended: any answer ends a streak of failed
        connections, a failed one counts in it (`worker.reachability`), and
        errors set pauses (`worker.pauses.AccountPauses.learn`)."""
        if error is None or error.status is not None:
            await self.reachability.answered()
        elif isinstance(error, ProviderUnreachable):
            await self.reachability.failed(error)
        if error is not None:
            await self._pauses.learn(error)

    async def pause(self, reason: str, *, ttl_s: float | None) -> bool:
        """Pause this account for every worker; see `worker.pauses.pause_provider`."""
        return await self._pauses.pause(reason, ttl_s=ttl_s)

    async def resume(self) -> bool:
        """End this account's pause; see `worker.pauses.resume_provider`."""
        self._seen_pause = None
        return await self._pauses.resume()

    async def pause_state(self) -> PauseState | None:
        """This account's pause, or `None`."""
        return await self._pauses.state()

    async def budget(self) -> dict[str, float | int | None]:
        """The limiter's numbers for `status` and the dashboard (Redis time).

        Keys: `rate_per_minute`, `interval_s` (spacing of slots),
        `next_slot_in_s`, `failed_per_minute`, `failures_last_minute`,
        `paused` (0/1), `pause_remaining_s` (None: no pause, or no end).
        """
        provider, account = self._settings.provider, self._settings.account
        keys = [self._keys.failures(provider, account), self._tat_key, self._pause_key]
        now_us, failures, tat_us, pttl = await self._budget_script(keys=keys, args=[WINDOW_MS])
        now_us, tat_us, pttl = int(now_us), int(tat_us), int(pttl)
        return {
            "rate_per_minute": self._settings.rate_per_minute,
            "interval_s": self._interval_us / 1e6 if self._interval_us else None,
            "next_slot_in_s": max(0, tat_us - now_us) / 1e6,
            "failed_per_minute": self._settings.failed_per_minute,
            "failures_last_minute": int(failures),
            "paused": int(pttl != -2),
            "pause_remaining_s": pttl / 1000 if pttl >= 0 else None,
        }


class _PauseRead:
    """`jobs.ports.Limiter` for one job: `ProviderLimiter` with its first pause
    probe already answered (see `ProviderLimiter.with_pause_read`)."""

    def __init__(self, limiter: ProviderLimiter, pause: PauseState | None) -> None:
        self._limiter = limiter
        self._pause = pause
        self._fresh = True

    async def acquire(self) -> None:
        """As `ProviderLimiter.acquire`, without a round trip the first time."""
        if not self._fresh:
            await self._limiter.acquire()
            return
        self._fresh = False
        if self._pause is not None:
            self._limiter._raise_paused(self._pause)

    async def record(self, error: InvoiceError | None) -> None:
        """As `ProviderLimiter.record`."""
        await self._limiter.record(error)
