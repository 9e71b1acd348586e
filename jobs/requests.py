"""One provider request, as the create procedure sends every one of them.

Paced by the limiter first (its waits come before anything else), then,
as the very last step before the request leaves, the holder's lease is
checked (`LedgerEntry.ensure_lease`): a request never starts on a lease
that may have ended, so a later holder can tell from the ledger until when
it may still land. Every outcome is reported to the limiter (Stax counts
failed requests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from jobs.errors import InvoiceError
from jobs.ports import LedgerEntry, Limiter

T = TypeVar("T")

Step = Callable[[], Awaitable[None]]


async def paced(
    limiter: Limiter,
    ledger: LedgerEntry,
    request: Callable[[], Awaitable[T]],
    *,
    before: Step | None = None,
) -> T:
    """Acquire a slot, run `before` (a ledger mark), check the lease, send `request`.

    Raises:
        RateLimited: no slot (nothing was sent).
        NotYet: the lease is too close to its end (nothing was sent).
        InvoiceError: the request's own failure, after the limiter heard of it.
    """
    await limiter.acquire()
    if before is not None:
        await before()
    await ledger.ensure_lease()
    try:
        result = await request()
    except InvoiceError as error:
        await limiter.record(error)
        raise
    await limiter.record(None)
    return result
