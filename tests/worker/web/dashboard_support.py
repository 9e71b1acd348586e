"""Helpers of the dashboard's page tests: log in, read a page's CSRF token, seed Redis."""

from __future__ import annotations

import re

import httpx2
import redis.asyncio as aioredis

from jobs.errors import ErrorInfo, FieldError
from jobs.models import Provider
from jobs.sources import Record
from tests.worker.support import enqueue_records, invoice
from worker.keys import Keys
from worker.ledger import Ledger

KEYS = Keys("invoicer:")
REJECTED = ErrorInfo(
    kind="InvoiceRejected",
    reason="rejected",
    message='=HYPERLINK("http://evil") customer unknown',
    status=422,
    code="E42",
    field_errors=(FieldError(field="customer.id", message="no such customer"),),
)
UNAVAILABLE = ErrorInfo(kind="ProviderUnavailable", reason="unavailable", message="503 twice")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def login(client: httpx2.AsyncClient, token: str) -> str:
    """Log in through the form; returns the session's CSRF token."""
    form = await client.get("/login")
    assert form.status_code == 200
    r = await client.post("/login", data={"token": token, "csrf_token": csrf_of(form.text)})
    assert r.status_code == 303, r.text
    page = await client.get("/")
    assert page.status_code == 200
    return csrf_of(page.text)


async def seed(redis: aioredis.Redis, numbers: list[str], batch: str = "month-end") -> str:
    """Enqueue invoices `numbers` for Maast as one batch; its id."""
    records = [Record(line=i + 2, invoice=invoice(n)) for i, n in enumerate(numbers)]
    report = await enqueue_records(redis, KEYS, records, provider=Provider.MAAST, batch=batch)
    return report.batch_id


async def park(redis: aioredis.Redis, number: str, error: ErrorInfo = REJECTED) -> str:
    """Dead-letter a queued Maast invoice as a worker would; its key."""
    ledger = Ledger(redis, KEYS)
    key = f"maast:{number}"
    record = await ledger.get(key)
    assert record is not None
    held = await ledger.claim(key, record.job_id)
    assert held is not None
    await held.dead_letter(error, attempts=1, exhausted=error.reason == "unavailable")
    await held.release()
    return key


async def create(redis: aioredis.Redis, number: str) -> None:
    """Mark a queued Maast invoice created, as a worker would."""
    from jobs.models import InvoiceReceipt

    ledger = Ledger(redis, KEYS)
    key = f"maast:{number}"
    record = await ledger.get(key)
    assert record is not None
    held = await ledger.claim(key, record.job_id)
    assert held is not None
    await held.mark_sending()
    receipt = InvoiceReceipt(
        provider=Provider.MAAST, provider_id=f"p-{number}", invoice_number=number, status="SAVED"
    )
    await held.mark_created(receipt)
    await held.release()
