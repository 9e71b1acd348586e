"""What `/metrics` counts, and how a worker process records its share.

The decision (docs/metrics.md): `invoicer web` serves `/metrics` for the
whole fleet from shared state in Redis, so Prometheus scrapes one target
however many workers come and go. Two kinds of figures get there:

- invoice counters (created, rejected, retried, by provider and reason) and
  the enqueue-to-created histogram are counted by the ledger scripts
  themselves, in the atomic step that changes the state (`metric` and
  `observe` in `worker/lua/common.lua`): exact across processes, no extra
  round trip, nothing lost when a worker is killed;
- provider call latency is measured in each worker process (`TimedProvider`)
  into a `MetricsBuffer`, which the worker flushes once a second in one
  pipeline: no Redis cost per call.

Both live in one hash, `keys.metrics()`: field `c|<name>|<provider>|<reason>`
for a counter, `h|<name>|<labels>|<bucket index | sum | count>` for a
histogram (buckets not cumulative; the exposition adds them up).
This module imports nothing heavy: the Lua environment (`worker.lua`) reads
its bucket bounds.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis

from jobs.models import Invoice, InvoiceReceipt, Provider
from jobs.ports import InvoiceProvider, PreparedRequest
from worker.keys import Keys

T = TypeVar("T")

ENQUEUE_TO_CREATED_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 86400)
"""Seconds from enqueue to created: a month-end batch takes minutes to hours."""
CALL_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds of one provider HTTP call."""
COUNTERS = {
    "created": "Invoices created at the provider.",
    "rejected": "Invoices dead-lettered (rejected, exhausted or in doubt), by reason.",
    "retried": "Failed attempts that will be retried, by reason.",
}


def bucket_of(value: float, bounds: tuple[float, ...]) -> int:
    """The index of the first bucket `value` fits in (`len(bounds)`: +Inf)."""
    for index, bound in enumerate(bounds):
        if value <= bound:
            return index
    return len(bounds)


class MetricsBuffer:
    """One process's not yet flushed observations."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._sums: defaultdict[str, float] = defaultdict(float)

    def observe_call(self, provider: Provider, op: str, outcome: str, seconds: float) -> None:
        """One provider call of `op` (create, find, find_all, send, void) and its `outcome`."""
        labels = f"h|call|{provider.value}|{op}|{outcome}"
        self._counts[f"{labels}|{bucket_of(seconds, CALL_BUCKETS_S)}"] += 1
        self._counts[f"{labels}|count"] += 1
        self._sums[f"{labels}|sum"] += seconds

    async def flush(self, redis: aioredis.Redis, keys: Keys) -> None:
        """Add what was observed to the shared hash (one pipeline), and forget it."""
        counts, sums = self._counts, self._sums
        if not counts:
            return
        self._counts, self._sums = Counter(), defaultdict(float)
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for name, n in counts.items():
                    pipe.hincrby(keys.metrics(), name, n)
                for name, total in sums.items():
                    pipe.hincrbyfloat(keys.metrics(), name, total)
                await pipe.execute()
        except BaseException:
            self._counts.update(counts)  # kept for the next flush: Redis may be back then
            for name, total in sums.items():
                self._sums[name] += total
            raise


class TimedProvider:
    """An `InvoiceProvider` whose calls are timed into a `MetricsBuffer`."""

    def __init__(self, inner: InvoiceProvider, provider: Provider, buffer: MetricsBuffer) -> None:
        self.inner = inner
        self.provider = provider
        self.buffer = buffer

    def validate(self, invoice: Invoice) -> None:
        self.inner.validate(invoice)

    def prepare_create(self, invoice: Invoice) -> PreparedRequest:
        return self.inner.prepare_create(invoice)

    async def create(self, invoice: Invoice, *, send_now: bool) -> InvoiceReceipt:
        return await self._timed("create", self.inner.create(invoice, send_now=send_now))

    async def find_all(self, invoice: Invoice) -> list[InvoiceReceipt]:
        return await self._timed("find_all", self.inner.find_all(invoice))

    async def find(self, invoice: Invoice) -> InvoiceReceipt | None:
        return await self._timed("find", self.inner.find(invoice))

    async def send(self, receipt: InvoiceReceipt, invoice: Invoice) -> InvoiceReceipt:
        return await self._timed("send", self.inner.send(receipt, invoice))

    async def void(self, receipt: InvoiceReceipt) -> InvoiceReceipt:
        return await self._timed("void", self.inner.void(receipt))

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def _timed(self, op: str, call: Awaitable[T]) -> T:
        started = time.monotonic()
        outcome = "ok"
        try:
            return await call
        except Exception as exc:
            outcome = str(getattr(exc, "reason", "error"))
            raise
        finally:
            self.buffer.observe_call(self.provider, op, outcome, time.monotonic() - started)
