"""Riding out a Redis that is away: one log line per outage, backoff, carry on.

A Redis restart, a failover or a network blip makes every Redis call of a
worker fail for a few seconds: arq's poll loop, each job's ledger steps, the
heartbeat, the reaper, the limiter. None of them may stop the process, and a
hundred jobs must not log a hundred tracebacks. Every place that meets such an
error reports it to the process's one `Outage`, which logs when Redis went
away and, once a call succeeds again, after how long it came back, and says
how long to wait before trying again (exponential, capped).

What an interrupted job leaves behind is safe without any help from here: its
ledger record keeps its lease until it expires, then the reaper or the next
claim takes over (looking the invoice up first if a request may have left).
That Redis may also have *lost* writes when it comes back is `worker.epoch`'s
business (docs/operations.md, "Redis").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ReadOnlyError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.epoch import EpochError

log = logging.getLogger("invoicer.redis")
job_log = logging.getLogger("invoicer.worker")

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # refused, reset, closed; also BusyLoadingError (LOADING)
    RedisTimeoutError,
    ReadOnlyError,  # a failover in progress: we still talk to the old primary
    EpochError,  # Redis changed instance again and again while we checked it
)
"""Errors that say Redis is away (for now), not that a call was wrong. redis-py
raises its own for every socket error; Python's `TimeoutError` is not one of
them (it is also what `asyncio.wait_for` raises for anything slow)."""

FIRST_WAIT_S = 0.1
MAX_WAIT_S = 2.0
"""Retry at least this often while Redis is away: a restart is noticed within it."""

MIN_RETRY_S = 1.0
"""A job that met an outage runs again no sooner than this."""

T = TypeVar("T")


def is_outage(error: BaseException) -> bool:
    """Whether `error` means Redis could not be reached (rather than a bug)."""
    return isinstance(error, OUTAGE_ERRORS)


def _describe(error: BaseException) -> str:
    if isinstance(error, BusyLoadingError):
        return "loading its data"
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}"[:200]


class Outage:
    """Whether this process can reach Redis, and what it logged about it.

    Every failed call reports with `failed` (which returns how long to wait),
    every successful one with `ok`: the first failure logs one warning, the
    first success after it one line with the outage's length. Shared by
    everything in a process that uses its Redis client.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._since: float | None = None
        self._since_wall = 0.0
        self._wait_s = FIRST_WAIT_S
        self.outages = 0
        """Outages seen since the process started (for tests and status)."""

    @property
    def down(self) -> bool:
        """A call failed and none has succeeded since."""
        return self._since is not None

    def failed(self, error: BaseException) -> float:
        """Note a failed call; returns how long the caller should wait before retrying."""
        if self._since is None:
            self._since, self._since_wall = self._clock(), time.time()
            self._wait_s = FIRST_WAIT_S
            self.outages += 1
            log.warning("Redis unreachable (%s): waiting for it", _describe(error))
            return self._wait_s
        self._wait_s = min(MAX_WAIT_S, self._wait_s * 2)
        return self._wait_s

    def ok(self) -> None:
        """Note a successful call (logs the end of an outage, once)."""
        if self._since is None:
            return
        lasted = self._clock() - self._since
        self._since = None
        stamp = time.strftime("%H:%M:%S", time.localtime(self._since_wall))
        log.warning("Redis reachable again: it was away since %s (%.1f s)", stamp, lasted)

    async def wait(self, error: BaseException) -> None:
        """`failed(error)`, then sleep as long as it says."""
        await asyncio.sleep(self.failed(error))

    async def retrying(
        self, call: Callable[[], Awaitable[T]], *, give_up_after_s: float | None = None
    ) -> T:
        """`await call()` until it does not fail for an outage.

        A refused password or ACL (`AuthenticationError`, `AuthorizationError`)
        is raised at once: waiting does not fix a configuration.

        Args:
            give_up_after_s: re-raise the outage error once Redis has been
                away this long (`None`: never give up).
        """
        started = self._clock()
        while True:
            try:
                result = await call()
            except (AuthenticationError, AuthorizationError):
                raise
            except OUTAGE_ERRORS as error:
                if give_up_after_s is not None and self._clock() - started > give_up_after_s:
                    raise
                await self.wait(error)
                continue
            self.ok()
            return result


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def retried_after_outage(coroutine: F, *, timeout_s: float | None = None) -> F:
    """An arq job function whose Redis outages, and overruns, become arq retries.

    arq logs a job that raises with its traceback and drops it; a job whose
    ledger step failed because Redis was away must stay queued instead. It
    raises arq's `Retry` (no traceback, not reported to Sentry), deferred by
    the outage's backoff. Its record is left as it was: a lease that expires,
    a `sending` mark the next claim reconciles by lookup.

    Args:
        timeout_s: cancel a run still going after this long, and retry it.
            Set below arq's own job timeout, which is final: arq would delete
            the job after the runner, cancelled, gave its record back, and
            leave the record with no job at all. A Redis that stops answering
            without closing the connection is one way to get there.
    """
    from arq import Retry  # here: `worker.outage` is also for processes without arq

    @functools.wraps(coroutine)
    async def job(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                return await coroutine(ctx, *args, **kwargs)
        except OUTAGE_ERRORS as error:
            runtime = ctx.get("runtime")
            outage: Outage | None = getattr(runtime, "outage", None)
            delay_s = outage.failed(error) if outage is not None else MAX_WAIT_S
            raise Retry(defer=max(delay_s, MIN_RETRY_S)) from None
        except TimeoutError:
            if not deadline.expired():
                raise  # the job's own (a bug's): not an overrun
            log.warning(
                "job %s still running after %.0f s: cancelled, to run again",
                ctx.get("job_id", "?"),
                timeout_s or 0,
            )
            raise Retry(defer=MIN_RETRY_S) from None

    return cast(F, job)
