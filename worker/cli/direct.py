"""`invoicer send`: create the invoices of a file directly, no queue.

How a user tries their credentials: one request at a time, one line per
record. It keeps the provider's rules even here: requests are paced to the
provider's rate, and it stops before Stax's failed-request budget is spent
(ten failures in a minute block the IP for an hour). With no ledger behind
it, it cannot promise exactly-once over re-runs: the queue can.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from aiolimiter import AsyncLimiter

from jobs.create_invoice import create_invoice
from jobs.errors import InvoiceError, RateLimited
from jobs.models import InvoiceReceipt, Provider
from jobs.ports import Claim, InvoiceProvider, PreparedRequest, Verification
from jobs.providers import make_provider
from jobs.providers.json_body import dumps
from jobs.sources import Record, RecordError, SourceError, read_invoices
from worker.cli import common
from worker.runtime import provider_config
from worker.settings import ProviderSettings


def register(app: typer.Typer) -> None:
    """Add `send` to the app."""
    app.command("send")(send)


def send(
    file: Annotated[Path, typer.Argument(help="CSV or JSONL file of invoices.")],
    provider: Annotated[Provider, typer.Option(help="Where to create them.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the requests, key redacted; send nothing.")
    ] = False,
) -> None:
    """Create the invoices in FILE at the provider now, one line per record."""
    s = common.settings()
    common.require_key(s, provider)
    client = make_provider(provider, provider_config(s.provider(provider)))
    try:
        failed = common.run(_send_all(file, client, s.provider(provider), dry_run=dry_run))
    except SourceError as exc:
        common.fail(f"{file}: {exc}")
    raise typer.Exit(common.EXIT_SOME_FAILED if failed else common.EXIT_OK)


async def _send_all(
    file: Path, client: InvoiceProvider, ps: ProviderSettings, *, dry_run: bool
) -> int:
    limiter = _PacedLimiter(ps)
    failed = 0
    try:
        for item in read_invoices(file):
            ok = await _one(item, client, limiter, dry_run=dry_run)
            failed += not ok
    finally:
        await client.aclose()
    return failed


async def _one(
    item: Record | RecordError, client: InvoiceProvider, limiter: _PacedLimiter, *, dry_run: bool
) -> bool:
    if isinstance(item, RecordError):
        common.out.print(f"[red]invalid[/red] {item}", highlight=False)
        return False
    number = item.invoice.number
    try:
        if dry_run:
            client.validate(item.invoice)  # `create_invoice` validates the real run
            _print_request(client.prepare_create(item.invoice))
            return True
        receipt = await create_invoice(
            item.invoice, Claim(), provider=client, ledger=_NoLedger(), limiter=limiter
        )
    except InvoiceError as error:
        common.out.print(f"[red]failed[/red] line {item.line} {number}: {error.describe()}")
        return False
    common.out.print(_created_line(item.line, number, receipt), highlight=False)
    return True


def _print_request(request: PreparedRequest) -> None:
    # One compact JSON object per record, written by the same encoder as the
    # wire body: money stays an exact JSON number (`24.90`, never "24.90" or
    # 24.9), and rich never wraps or re-renders it.
    fields = {
        "method": request.method,
        "url": request.url,
        "headers": request.headers,
        "json": request.json,
    }
    common.out.print(dumps(fields), markup=False, highlight=False, emoji=False, soft_wrap=True)


def _created_line(line: int, number: str, receipt: InvoiceReceipt) -> str:
    verb = "sent" if receipt.sent else "created"
    link = f" {receipt.link}" if receipt.link else ""
    return f"{verb} line {line} {number}: id={receipt.provider_id}{link}"


class _NoLedger:
    """The direct path records nothing: it prints instead."""

    async def ensure_lease(self) -> None: ...
    async def mark_sending(self) -> None: ...
    async def mark_created(self, receipt: InvoiceReceipt, *, verified: bool = True) -> float:
        return 0.0

    async def mark_verified(self, verification: Verification) -> None: ...
    async def mark_verify_later(self, why: str) -> int:
        return 0

    async def mark_send_started(self) -> None: ...
    async def mark_sent(self, receipt: InvoiceReceipt) -> None: ...


class _PacedLimiter:
    """In-process pacing and a failed-request budget, for one sequential run."""

    def __init__(self, ps: ProviderSettings) -> None:
        rate = ps.rate_per_minute
        self._limiter = AsyncLimiter(rate, 60) if rate else None
        self._budget = ps.failed_per_minute
        self._failures: list[float] = []

    async def acquire(self) -> None:
        now = time.monotonic()
        self._failures = [t for t in self._failures if now - t < 60]
        if self._budget is not None and len(self._failures) >= self._budget:
            raise RateLimited(
                f"stopped: {len(self._failures)} failed requests in the last minute "
                "(the provider blocks after ten)",
                retry_after_s=60 - (now - self._failures[0]),
            )
        if self._limiter is not None:
            await self._limiter.acquire()

    async def record(self, error: InvoiceError | None) -> None:
        if error is not None and error.status is not None and 400 <= error.status < 500:
            self._failures.append(time.monotonic())
