"""Response shapes shared by the API routes (what OpenAPI documents)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """One problem with one record: its index in the request (or line in a file) and field."""

    index: int | None = Field(default=None, description="Position in the request, from 0.")
    line: int | None = Field(default=None, description="Line in the uploaded file, from 1.")
    invoice_number: str | None = None
    field: str
    message: str


class InvoiceRef(BaseModel):
    """An invoice of the request and the key it goes by everywhere (logs, ledger, API)."""

    index: int
    number: str
    invoice_key: str


class Enqueued(BaseModel):
    """What `POST /v1/invoices` or `POST /v1/batches` did."""

    batch_id: str
    provider: str
    accepted: int = Field(description="New invoices queued (re-enqueued dead letters included).")
    superseded: int
    duplicates: int = Field(description="Already queued with the same content: nothing to do.")
    already_created: int = Field(description="Already created with the same content: skipped.")
    invoices: list[InvoiceRef] = Field(default_factory=list)
    rejected: list[Problem] = Field(
        default_factory=list, description="Invalid records (only with partial=true or files)."
    )
    rejected_count: int = 0
    conflicts: list[Problem] = Field(default_factory=list)
    dead_lettered: int = Field(
        default=0, description="Invalid records parked as dead letters (reason invalid)."
    )


class Attempt(BaseModel):
    """One event of an invoice's history."""

    at_ms: int
    event: str
    state: str
    detail: str


class InvoiceView(BaseModel):
    """One invoice: its state, the provider's id and link, every attempt."""

    invoice_key: str
    provider: str
    account: str
    number: str
    state: str
    batch: str
    provider_id: str | None
    link: str | None
    attempts: int = Field(description="Failed attempts so far.")
    error: dict[str, Any] | None
    dead_lettered: bool
    first_at_ms: int
    updated_at_ms: int
    history: list[Attempt]
