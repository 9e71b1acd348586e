"""All-or-nothing enqueue of a bounded list: every invoice accepted, or nothing written.

`POST /v1/invoices` (without `?partial=true`) and
`worker.api.enqueue_invoices(..., atomic=True)` take this path; a file
(`invoicer enqueue`, `POST /v1/batches`) never does: it streams in chunks,
and its good records stay enqueued whatever a later line holds.

The list goes to Redis as one call of `worker/lua/enqueue.lua` in mode
`enqueue_all`: the script first checks every invoice for a conflict (its
number active with other content), and only if there is none enqueues them
all, each exactly as a bulk run would (accepted, duplicate, already created
or superseded). Redis runs one script at a time, so nothing can slip in
between the check and the writes. The batch is registered in the same
transaction (MULTI) and removed by the script if it refuses: a refused list
leaves no trace, not even an empty batch. A list is
capped at `MAX_INVOICES` so that one call blocks Redis for milliseconds
(docs/benchmarks.md gives the figure for 1,000).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import redis.asyncio as aioredis

from jobs.sources import RecordError
from worker.enqueue import EnqueueOutcome, Enqueuer, EnqueueReport, new_batch_id, register_batch
from worker.epoch import Epoch, EpochError, refused_on
from worker.intake import Intake, Prepared, Taken
from worker.keys import Keys
from worker.lua import MAX_ROUNDS
from worker.replies import text

MAX_INVOICES = 1000
"""The largest list enqueued in one atomic step."""


class ListRefused(Exception):
    """Nothing of the list was written: its report names every invalid record or conflict."""

    def __init__(self, report: EnqueueReport) -> None:
        self.report = report
        problems = len(report.invalid) + len(report.conflicts)
        super().__init__(f"{problems} problem(s) in the list: nothing was enqueued")


async def enqueue_atomically(
    redis: aioredis.Redis,
    keys: Keys,
    items: Iterable[Taken],
    intake: Intake,
    *,
    batch: str | None = None,
) -> EnqueueReport:
    """Enqueue prepared records as one new batch, all or nothing.

    Raises:
        ListRefused: a record is invalid or conflicts; nothing was written.
        ValueError: more than `MAX_INVOICES` records.
    """
    taken = list(items)
    if len(taken) > MAX_INVOICES:
        raise ValueError(f"{len(taken):,} invoices; at most {MAX_INVOICES:,} go in one atomic step")
    report = EnqueueReport(batch_id=new_batch_id(batch), provider=intake.provider)
    report.invalid = [t for t in taken if isinstance(t, RecordError)]
    if report.invalid:
        raise ListRefused(report)
    good = [t for t in taken if not isinstance(t, RecordError)]
    enqueuer = Enqueuer(redis, keys)
    args: list[str | bytes] = list(
        enqueuer.head(
            provider=intake.provider,
            account=intake.account,
            batch=report.batch_id,
            mode="enqueue_all",
        )
    )
    for _, _, item in good:
        args += item
    script_args = args if good else None
    replies = await _run(redis, keys, intake, batch, report.batch_id, enqueuer, script_args)
    if good:
        _count(cast(list[bytes | str | int], replies[-1]), good, report)
    return report


async def _run(
    redis: aioredis.Redis,
    keys: Keys,
    intake: Intake,
    name: str | None,
    batch_id: str,
    enqueuer: Enqueuer,
    args: list[str | bytes] | None,
) -> list[object]:
    """The transaction: the batch registered, the script run; sent again if
    Redis became another instance meanwhile (`worker.epoch`: the script
    refused, and registering the batch again changes nothing)."""
    for _ in range(MAX_ROUNDS):
        async with redis.pipeline(transaction=True) as pipe:
            register_batch(pipe, keys, intake, name, batch_id)
            if args is not None:
                await enqueuer.script(args=args, client=pipe)
            replies: list[object] = await pipe.execute(raise_on_error=False)
        refused = refused_on(replies[-1]) if args is not None else None
        if refused is None:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return replies
        epoch = Epoch.of(redis)
        await epoch.refused(enqueuer.env, epoch.run_id)
    raise EpochError("Redis keeps changing instance")


def _count(reply: list[bytes | str | int], good: list[Prepared], report: EnqueueReport) -> None:
    """The script's reply into `report`; raises `ListRefused` if it refused the list."""
    values = [text(v) if isinstance(v, bytes | str) else str(v) for v in reply]
    if values[0] == "refused":
        for i in range(1, len(values), 2):
            line, number, _ = good[int(values[i]) - 1]
            report.count(EnqueueOutcome.CONFLICT, line, number, values[i + 1])
        raise ListRefused(report)
    for (line, number, _), i in zip(good, range(0, len(values), 2), strict=True):
        report.count(EnqueueOutcome(values[i]), line, number, values[i + 1])
