"""The per-invoice CSV report of one batch, for finance.

Owns `invoicer report`: one row per invoice of a batch, in enqueue order,
saying what happened to it (state, provider id, pay link, total, why it
failed). It streams: batch members are read in pages from the batch's
sorted set and their ledger records fetched a page at a time, so memory stays
flat for 100,000 invoices. It must not change any state, and must not read
the ledger other than through `Ledger`.

Finance opens these files in Excel, so every cell that Excel would run as a
formula is defused with a leading `'` (CSV/formula injection).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TextIO, TypeVar, cast

import redis.asyncio as aioredis
from pydantic import ValidationError

from jobs.errors import ErrorInfo
from jobs.models import Invoice
from worker.keys import InvoiceKey, Keys
from worker.ledger import Ledger, LedgerRecord, State
from worker.replies import text
from worker.status import UnknownBatch
from worker.times import iso_ms

T = TypeVar("T")

COLUMNS = (
    "invoice_number",
    "invoice_key",
    "state",
    "provider",
    "provider_id",
    "link",
    "total",
    "reason",
    "attempts",
    "updated_at",
    "supersedes",
    "voided_duplicates",
    "open_duplicates",
)
"""The last two name late twins by provider id (space-separated): voided by
verification, or left live because sent or paid (docs/operations.md)."""
PAGE_SIZE = 500
"""Members read (and ledger records fetched, pipelined) per round trip."""

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_SUCCESS = (State.CREATED, State.SENT)


def safe_cell(value: str) -> str:
    """`value`, with a leading `'` if a spreadsheet would read it as a formula."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def describe_error(error: ErrorInfo) -> str:
    """One line for a person: kind, status/code, message, field errors."""
    head = error.kind
    if error.status is not None or error.code is not None:
        status = "" if error.status is None else str(error.status)
        code = "" if error.code is None else f"/{error.code}"
        head += f"({status}{code})"
    text = f"{head}: {error.message}"
    if error.field_errors and not _all_said(error):
        text += " [" + "; ".join(str(e) for e in error.field_errors) + "]"
    return text


def _all_said(error: ErrorInfo) -> bool:
    # A record refused at enqueue names its problems in the message already
    # (`line 12: quantity: ...`; a field error may add "line 13: ").
    return all(_unlined(e.message) in error.message for e in error.field_errors)


def _unlined(message: str) -> str:
    """`message` without a leading `line 13: `."""
    head, sep, rest = message.partition(": ")
    return rest if sep and head.startswith("line ") and head[5:].isdigit() else message


def write_atomically(path: Path, write: Callable[[TextIO], T]) -> T:
    """Call `write` on a temporary file beside `path`, then rename it into place.

    A report is complete or absent, never a truncated file someone mistakes
    for the whole batch. Returns what `write` returned.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            written = write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written


async def write_report(
    redis: aioredis.Redis, keys: Keys, batch: str, out: TextIO, *, page_size: int = PAGE_SIZE
) -> int:
    """Write the CSV report of `batch` to `out`; return the number of invoice rows.

    Raises:
        UnknownBatch: no batch `batch` exists (nothing is written).
    """
    if not await redis.exists(keys.batch(batch)):
        raise UnknownBatch(batch)
    ledger = Ledger(redis, keys)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    rows = 0
    start = 0
    while True:
        # Pages by rank: enqueue never inserts in the middle (scores grow), so
        # a page boundary cannot skip or repeat a member while a batch runs.
        page = await redis.zrange(keys.batch_members(batch), start, start + page_size - 1)
        if not page:
            return rows
        invoice_keys = [text(m) for m in page]
        records = await ledger.get_many(invoice_keys)
        for key, record in zip(invoice_keys, records, strict=True):
            writer.writerow([safe_cell(cell) for cell in _row(batch, key, record)])
            rows += 1
        start += page_size


def _row(batch: str, invoice_key: str, record: LedgerRecord | None) -> Iterator[str]:
    if record is None:
        # A member without a record would be a ledger bug; show it rather
        # than silently dropping a line finance will count.
        yield from (_number_of(invoice_key), invoice_key, "missing")
        yield from ("",) * (len(COLUMNS) - 3)
        return
    if record.batch != batch:
        yield from _superseded(record)
        return
    receipt = record.receipt
    yield record.number
    yield record.invoice_key
    yield record.state.value
    yield record.provider.value
    yield "" if receipt is None else receipt.provider_id
    yield "" if receipt is None or receipt.link is None else receipt.link
    yield _total(record)
    yield "" if record.error is None or record.state in _SUCCESS else describe_error(record.error)
    yield str(record.failures)
    yield iso_ms(record.updated_at_ms)
    yield record.supersedes or ""
    yield " ".join(record.voided_ids)
    yield " ".join(record.open_ids)


def _superseded(record: LedgerRecord) -> Iterator[str]:
    """A member a later batch took over: history here, what happened since is there's."""
    yield from (record.number, record.invoice_key, "superseded", record.provider.value)
    yield from ("", "", "")  # provider id, link and total are the later batch's
    yield f"superseded by batch {record.batch} (now {record.state.value} there)"
    yield from ("", iso_ms(record.updated_at_ms), "")
    yield from ("", "")  # its twins are the later batch's too


async def duplicate_counts(redis: aioredis.Redis, keys: Keys, batch: str) -> tuple[int, int]:
    """(voided, left open) late twins among the invoices of `batch` (its counters)."""
    read = redis.hmget(keys.batch(batch), ["voided", "duplicates_open"])
    voided, left_open = await cast(Awaitable[list[bytes | None]], read)
    return int(voided or 0), int(left_open or 0)


def _number_of(invoice_key: str) -> str:
    try:
        return InvoiceKey.parse(invoice_key).number
    except ValueError:  # not one of our keys: no number to show
        return ""


def _total(record: LedgerRecord) -> str:
    # The provider's own figure once created; before that, ours, computed by
    # the one function that computes totals (so the two agree by design).
    if record.receipt is not None and record.receipt.total is not None:
        return _money(record.receipt.total)
    try:
        return _money(Invoice.model_validate_json(record.payload).totals().total)
    except ValidationError:
        return ""


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"
