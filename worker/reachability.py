"""Whether a provider account can be reached at all, and the pause when it cannot.

One failed connection says little (a restart, a blip); many in a row,
across every worker, mean the base URL is wrong, DNS is broken or the
provider is down. Retrying each invoice then is the wrong answer: with a
wrong `MAAST_BASE_URL` every invoice logged a warning per attempt and was
dead-lettered as `exhausted` after eight, and nothing ever named the setting.
So an unreachable provider is a condition of the account, like a refused key:

- every failed connection (`ProviderUnreachable`: refused, no such host,
  connect timeout) counts in the account's streak, in Redis, shared by every
  worker; any HTTP answer ends it, and a streak with no failure for
  `STREAK_QUIET_S` lapses. Each process says "cannot connect" once per streak.
- `UNREACHABLE_AFTER` failures spanning at least `UNREACHABLE_SPAN_S` pause
  the account (kind "unreachable", no end), said once across the fleet at
  ERROR, naming the base URL's variable. Invoices stay queued: a paused
  account's jobs are deferred without spending their retry budget.
- While it is paused so, one worker at a time probes it with a cheap lookup
  (`PROBE_INVOICE`), every `PROBE_MIN_S` at first and up to `PROBE_MAX_S` as
  the pause ages. The first answer of any kind ends the pause (said once);
  an answer that is itself a problem (401, 404) is then learnt like any
  answer (a refused key pauses the account until resumed).

Why a span as well as a count: a hundred jobs that hit a provider restart
fail in the same moment, and that is one blip, not an outage. A pause a blip
causes anyway ends at the first probe, a second or two later. The failure
budget is untouched: a connection that failed was never a request Stax
could count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal
from urllib.parse import urlparse

import redis.asyncio as aioredis

from jobs.errors import InvoiceError, ProviderUnreachable
from jobs.models import Customer, Invoice, LineItem
from jobs.ports import InvoiceProvider
from worker.keys import Keys, account_name
from worker.lua import limit_source
from worker.pauses import PROBE_LUA, ProbeReply, probe_reply
from worker.settings import ProviderSettings

log = logging.getLogger("invoicer.limits")

UNREACHABLE_AFTER = 5
"""Failed connections in a row, across every worker, that pause the account..."""
UNREACHABLE_SPAN_S = 2.0
"""...if they span at least this long (a burst of simultaneous failures is one blip)."""
STREAK_QUIET_S = 30.0
"""A streak with no failure for this long is over."""
PROBE_MIN_S = 1.0
"""The first probes of an unreachable account come this often..."""
PROBE_MAX_S = 30.0
"""...and, as the pause ages (a quarter of its age), at most this far apart."""
BURST_PATIENCE_S = 10.0
"""A `--burst` worker leaves an unreachable account after its probes failed this long."""

PROBE_INVOICE = Invoice(
    number="invoicer-reachability-probe",
    customer=Customer(id="invoicer-probe"),
    lines=[LineItem(description="probe", quantity=Decimal(1), unit_price=Decimal(1))],
    invoice_date=date(2000, 1, 1),
)
"""What a probe looks up: a number no invoice of ours has, so the answer is
one page of nothing (a lookup is a read: it never creates anything)."""

# worker/lua/limit_unreachable.lua and limit_reachable.lua (see their headers).
_STREAK_LUA = limit_source("unreachable")
_REACHABLE_LUA = limit_source("reachable")

Learn = Callable[[InvoiceError], Awaitable[None]]
"""How the account learns from an answer (`ProviderLimiter.record`)."""


def shown_url(url: str) -> str:
    """`scheme://host:port` of a base URL: never a user name or password it may hold."""
    parsed = urlparse(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.hostname or ''}{port}"


class Reachability:
    """The streak of failed connections of one provider account, the pause
    it sets, and the probe that ends it.

    Args:
        settings: the account, and its base URL (named in messages).
        clock: monotonic seconds, for this process's own bookkeeping.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        settings: ProviderSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        provider, account = settings.provider, settings.account
        self._redis = redis
        self._settings = settings
        self._clock = clock
        self._who = account_name(provider, account)
        self._where = shown_url(settings.base_url)
        self._streak = keys.unreachable(provider, account)
        self._pause = keys.pause(provider, account)
        self._lock = keys.probe_lock(provider, account)
        self._streak_script = redis.register_script(_STREAK_LUA)
        self._reachable_script = redis.register_script(_REACHABLE_LUA)
        self._probe_script = redis.register_script(PROBE_LUA)
        self._failed_at: float | None = None
        """When this process last saw a connection fail (None: no streak it knows of)."""
        self.probing_since: float | None = None
        """When this process's probes of the current pause started failing."""

    async def failed(self, error: ProviderUnreachable) -> None:
        """A connection to the account failed: count it; pause the account
        once the streak says it cannot be reached."""
        now = self._clock()
        if self._failed_at is None or now - self._failed_at > STREAK_QUIET_S:
            log.warning(
                "%s: cannot connect to %s (%s); retrying, and pausing %s if it goes on",
                self._who,
                self._where,
                error.message,
                self._who,
            )
        self._failed_at = now
        reason = (
            f"cannot connect to {self._where}: {error.message} (check "
            f"{self._settings.base_url_variable}); workers probe it and resume by themselves"
        )
        args: list[int | str] = [UNREACHABLE_AFTER, int(UNREACHABLE_SPAN_S * 1000)]
        args += [int(STREAK_QUIET_S * 1000), reason]
        count, paused = await self._streak_script(keys=[self._streak, self._pause], args=args)
        if int(paused):
            log.error(
                "%s paused: %d connections in a row to %s failed (last: %s); check %s (a "
                "wrong URL, DNS, the network, or %s down); its invoices stay queued, and "
                "workers probe it every %g-%gs and resume by themselves once it answers",
                self._who,
                int(count),
                self._where,
                error.message,
                self._settings.base_url_variable,
                self._who,
                PROBE_MIN_S,
                PROBE_MAX_S,
            )

    async def answered(self) -> None:
        """The account answered a request: a streak this process saw is over.

        Free (no round trip) unless this process saw a connection fail: a
        streak other processes see alone ends with their answers or lapses.
        """
        if self._failed_at is None:
            return
        self._failed_at = None
        await self._redis.delete(self._streak)

    async def probe(self, provider: InvoiceProvider, learn: Learn) -> None:
        """If the account is paused as unreachable and a probe is due (one
        process at a time), look `PROBE_INVOICE` up; on any answer, end the
        pause and `learn` from the answer if it was an error."""
        reply: ProbeReply = await self._probe_script(keys=[self._pause])
        pause = probe_reply(reply)
        if pause is None or pause.kind != "unreachable":
            self.probing_since = None
            return
        age_s = max(0.0, (int(reply[1] or 0) - (pause.set_at_ms or 0)) / 1000)
        every_s = min(PROBE_MAX_S, max(PROBE_MIN_S, age_s / 4))
        if not await self._redis.set(self._lock, "1", nx=True, px=int(every_s * 1000)):
            return
        answer: InvoiceError | None = None
        try:
            await provider.find(PROBE_INVOICE)
        except ProviderUnreachable:
            if self.probing_since is None:
                self.probing_since = self._clock()
            return
        except InvoiceError as error:
            answer = error  # an answer, if not a good one: it can be reached
        await self._reachable()
        if answer is not None:
            await learn(answer)

    def gave_up(self) -> bool:
        """True once this process's probes failed for `BURST_PATIENCE_S`."""
        since = self.probing_since
        return since is not None and self._clock() - since >= BURST_PATIENCE_S

    async def _reachable(self) -> None:
        self._failed_at, self.probing_since = None, None
        ended, set_at_ms, now_ms = await self._reachable_script(keys=[self._pause, self._streak])
        if int(ended):
            log.warning(
                "%s answers again at %s: resumed after %.0fs unreachable",
                self._who,
                self._where,
                max(0, int(now_ms) - int(set_at_ms)) / 1000,
            )
