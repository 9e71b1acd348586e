"""Ledger records a worker cannot read: parked for a person, never a crash, never stranded.

A record is whatever Redis hands back: a payload an older version wrote, a
field edited by hand, a value a bug wrote. Before, a payload that no longer
parsed raised out of the job after the claim had marked it `sending`: arq
dropped the job and the invoice sat in `sending` for good. Now:

- a field that does not parse (the payload as an invoice, the receipt, the
  state or provider name, a count) dead-letters the invoice, reason
  `unreadable`, with what did not parse (`park_unreadable`); `invoicer dlq
  show` prints it and a requeue with `--payload` replaces the payload;
- a record so damaged that the ledger's own scripts fail on it (no batch, a
  lease time that is not a number) cannot be moved at all: its job is
  refused (`worker.refused`) and the ERROR line names the record to repair or
  delete by hand.

Either way the job ends and is logged once.
"""

from __future__ import annotations

import contextlib
import logging

from redis.exceptions import ResponseError

from jobs.errors import ErrorInfo
from worker.held import HeldEntry, LeaseLost
from worker.keys import Keys
from worker.ledger import UnreadableRecord
from worker.refused import Refusals

log = logging.getLogger("invoicer.worker")

UNREADABLE_REASON = "unreadable"
"""The dead-letter reason of an invoice whose ledger record does not parse."""


def is_script_failure(error: ResponseError) -> bool:
    """True when a ledger script itself failed on what it read (a Lua runtime
    error), not when Redis refused the call (out of memory, a read-only replica)."""
    return "user_script" in str(error)


async def park_damaged(
    refusals: Refusals, keys: Keys, job_id: str, error: UnreadableRecord | ResponseError
) -> None:
    """Deal with a claim that failed on its record: dead-letter it if the
    claim held it, else refuse the job. Re-raises a `ResponseError` that is
    not a script failing on the record."""
    if isinstance(error, UnreadableRecord):
        try:
            await park_unreadable(refusals, keys, error.held, error.why, may_have_landed=None)
        finally:
            with contextlib.suppress(LeaseLost, ResponseError):
                await error.held.release()
        return
    if not is_script_failure(error):
        raise error
    await _refuse_damaged(refusals, keys, job_id, _first_line(error))


async def park_unreadable(
    refusals: Refusals, keys: Keys, held: HeldEntry, why: str, *, may_have_landed: bool | None
) -> None:
    """Dead-letter a held record a field of which does not parse.

    Args:
        may_have_landed: as `HeldEntry.dead_letter` (`None`: a `sending`
            record stays in doubt, as nothing says what its holder sent).
    """
    info = ErrorInfo(
        kind=UnreadableRecord.__name__,
        reason=UNREADABLE_REASON,
        message=f"its ledger record does not parse: {why}",
    )
    try:
        await held.dead_letter(info, attempts=held.failures, may_have_landed=may_have_landed)
    except ResponseError as error:
        if not is_script_failure(error):
            raise
        await _refuse_damaged(refusals, keys, held.job_id, f"{why}; then {_first_line(error)}")
        return
    log.error("dead %s %s: %s", held.invoice_key, UNREADABLE_REASON, why)


async def _refuse_damaged(refusals: Refusals, keys: Keys, job_id: str, why: str) -> None:
    owner = refusals.owner_of(job_id)
    name = keys.ledger(str(owner)) if owner is not None else "its ledger record"
    await refusals.refuse(
        keys.queue(owner.provider) if owner is not None else "?",
        job_id,
        f"the ledger's scripts cannot move {name} ({why}): repair or delete it by hand",
        park_invoice=False,
        level=logging.ERROR,
    )


def _first_line(error: ResponseError) -> str:
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__
