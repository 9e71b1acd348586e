"""Cancel a batch: every still-queued invoice discarded, in-flight ones left to finish.

One function, `cancel_batch`, behind `invoicer cancel BATCH`, `POST
/v1/batches/{id}/cancel` and the dashboard's button. It pages through the
batch's members and runs `worker/lua/cancel.lua` on each page: per invoice,
one atomic step that either discards it (state `discarded`, its arq job
removed, the error "cancelled" recorded so `invoicer report` says why) or
leaves it alone and says why. The rule against races with workers is the
ledger's: a worker's claim and the cancel of the same invoice are both
scripts, so one runs wholly first. A claim that comes after finds the
record discarded and does nothing; one that came before holds a live lease,
and the invoice is `in_flight` and finishes. Nothing is lost on the way: an
invoice is either discarded with its reason or still has its job.

What is *not* discarded, and why:
- `in_flight`: a worker holds it (or a create may be on its way): stopping
  it could leave an invoice created at the provider that we call discarded.
- `in_doubt`: a create may have landed; its lookup finds it (then it is
  created) or not (then it is created now). Void those by hand if needed.
- created drafts of a batch with `--send` are kept but not sent
  (`send_cancelled`), unless their send already started.

Cancelling is idempotent: run it again and what was cancelled counts as
`finished`. A batch still being enqueued when it is cancelled keeps what is
enqueued after the cancel; cancel it again once the enqueue ended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from worker.keys import Keys
from worker.lua import Scripts, script_env
from worker.replies import text
from worker.status import UnknownBatch

PAGE_SIZE = 500
"""Members read per round trip."""
KEYS_PER_CALL = 100
"""Invoices per script call: Redis is never blocked for more than about a millisecond."""
OUTCOMES = (
    "cancelled",
    "send_cancelled",
    "in_flight",
    "in_doubt",
    "finished",
    "moved",
    "missing",
)
CANCELLED_ERROR = json.dumps(
    {
        "kind": "Cancelled",
        "reason": "cancelled",
        "message": "the batch was cancelled before this invoice was sent to the provider",
        "status": None,
        "code": None,
        "field_errors": [],
    }
)
"""What a cancelled invoice's ledger record says (shown by `invoicer report`)."""


@dataclass
class CancelReport:
    """What cancelling one batch did, per outcome (see `worker/lua/cancel.lua`)."""

    batch_id: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    @property
    def cancelled(self) -> int:
        """Invoices discarded now (no request of theirs ever left)."""
        return self.counts["cancelled"]

    @property
    def left_running(self) -> int:
        """Invoices that will still finish (held by a worker, or in doubt)."""
        return self.counts["in_flight"] + self.counts["in_doubt"]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for `--json` and the API."""
        return {"batch_id": self.batch_id, **self.counts, "left_running": self.left_running}


async def cancel_batch(
    redis: aioredis.Redis, keys: Keys, batch_id: str, *, page_size: int = PAGE_SIZE
) -> CancelReport:
    """Discard every still-queued invoice of `batch_id`; say what happened to each.

    Raises:
        UnknownBatch: there is no such batch.
    """
    if not await redis.exists(keys.batch(batch_id)):
        raise UnknownBatch(batch_id)
    script = Scripts.register(redis).cancel
    head: list[str] = [script_env(keys), "", batch_id, CANCELLED_ERROR]
    report = CancelReport(batch_id)
    start = 0
    while True:
        # By rank: members are only appended (scores grow), so paging cannot
        # skip one, and a cancelled member stays a member.
        page = [
            text(m)
            for m in await redis.zrange(keys.batch_members(batch_id), start, start + page_size - 1)
        ]
        for at in range(0, len(page), KEYS_PER_CALL):
            replies = await script(args=[*head, *page[at : at + KEYS_PER_CALL]])
            for reply in replies:
                report.counts[text(reply)] += 1
        if len(page) < page_size:
            break
        start += page_size
    if report.cancelled == 0:
        await script(args=head)  # records the cancel time even when nothing was left
    return report
