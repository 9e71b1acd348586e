"""What this worker process sent lately, for a Redis that may have forgotten it.

A Redis that comes back from a host crash under `appendfsync everysec` may
have lost the last second or two of what it acknowledged: the `sending`
mark of a request this process did send, the `created` mark of an invoice
that does exist. `worker.epoch` notices the new instance before any ledger
call of ours runs on it; this journal is what the process then re-asserts
(`reassert`, one script per 200 invoices: `worker/lua/reassert.lua`): every
invoice it holds, and every one it let a request leave for since the last
moment Redis surely had it on disk, is looked up before anything is created
again, and not created before a request of ours could still land.

"Surely on disk": a write is taken to be fsynced `HORIZON_S` after it was
acknowledged, provided the same instance still answered after that (the
last successful ledger call, `worker.lua.ScriptBatch`). Entries older than
that are dropped; while Redis is away nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from time import monotonic

from worker.lua import LedgerScript

HORIZON_S = 10.0
"""How long after its acknowledgement a write is taken to be on disk (Redis
fsyncs every second under `everysec`, and writes without waiting for an
fsync that takes over two): five times that, for a slow disk."""
PER_CALL = 200
"""Invoices re-asserted per script call."""


@dataclass(frozen=True)
class Sent:
    """A request this process let leave for an invoice."""

    invoice_key: str
    job_id: str
    at: float
    """`monotonic()` when it left."""


class Journal:
    """The invoices this process sent a request for, since Redis surely had them."""

    def __init__(self, clock: Callable[[], float] = monotonic) -> None:
        self._clock = clock
        self._sent: dict[str, Sent] = {}  # oldest first: an update moves to the end

    def __len__(self) -> int:
        return len(self._sent)

    def request_leaving(self, invoice_key: str, job_id: str) -> None:
        """Note that a request for `invoice_key` is about to leave."""
        self._sent.pop(invoice_key, None)
        self._sent[invoice_key] = Sent(invoice_key, job_id, self._clock())

    def forget_before(self, at: float) -> None:
        """Drop what was sent before `at` (`monotonic()`): Redis has it on disk."""
        while self._sent:
            oldest = next(iter(self._sent.values()))
            if oldest.at >= at:
                return
            del self._sent[oldest.invoice_key]

    def recent(self) -> list[Sent]:
        """Every request noted and not yet forgotten, oldest first."""
        return list(self._sent.values())


async def reassert(
    script: LedgerScript,
    env: str,
    pairs: Iterable[tuple[str, str]],
    *,
    lease_ms: int,
    window_ms: int,
) -> int:
    """Mark `pairs` (invoice key, job id) lookup-first with `reassert.lua`; how many were.

    `env` names the new instance already: this runs inside `worker.epoch`'s
    check, while every other ledger call of the process waits for it.
    """
    items = list(pairs)
    marked = 0
    for start in range(0, len(items), PER_CALL):
        args: list[str | int] = [env, "", lease_ms, window_ms]
        for invoice_key, job_id in items[start : start + PER_CALL]:
            args += [invoice_key, job_id]
        marked += int(await script.direct(args))
    return marked
