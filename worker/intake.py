"""Intake: one record in, the enqueue script's arguments out, or why not.

Every way into the queue goes through `prepare`: a file (`worker.api.enqueue_file`,
read here or in a reader process, `worker.reader`), invoices handed over in
Python (`worker.api.enqueue_invoices`) and the HTTP API, which calls the latter.
It refuses a record meant for another provider, checks the invoice with the
provider's own rules (a request the provider refuses costs Stax users their IP
after ten), forces `send` when the batch asks for it, and serialises the invoice
once: its invoice key, fingerprint and payload JSON, what `worker/lua/enqueue.lua`
takes per invoice.

This module must not talk to Redis or a provider: the reader process runs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeAlias

from jobs.errors import FieldError, InvoiceInvalid
from jobs.models import Invoice, Provider, fingerprint_of
from jobs.sources import Record, RecordError
from worker.keys import invoice_key

Prepared: TypeAlias = tuple[int, str, list[str | bytes]]
"""A valid invoice ready for the enqueue script: (line, invoice number, `script_item`)."""
Taken: TypeAlias = Prepared | RecordError
"""What intake makes of a record: the invoice prepared, or one of its problems."""
Validate: TypeAlias = Callable[[Invoice], None]
"""Checks one invoice; raises `InvoiceInvalid` with its field errors."""

__all__ = [
    "Intake",
    "Prepared",
    "Taken",
    "prepare",
    "prepared",
    "prepared_async",
    "script_item",
]


@dataclass(frozen=True)
class Intake:
    """What the records of one enqueue are checked against and made into.

    Attributes:
        provider: where every record goes; a record naming another provider is
            refused, and the invoice is checked with this provider's rules.
        account: the provider account (part of every invoice key).
        send: send each invoice to its customer once created.
        rules: the check; by default the provider's own
            (`jobs.providers.validator`), loaded on first use.
    """

    provider: Provider
    account: str = "default"
    send: bool = False
    rules: Validate | None = field(default=None, compare=False, repr=False)

    @cached_property
    def validate(self) -> Validate:
        """`rules`, or the provider's own."""
        if self.rules is not None:
            return self.rules
        # Imported here: the provider package loads the HTTP clients, which the
        # parent of a reader process never needs (and must not wait for).
        from jobs.providers import validator

        return validator(self.provider)


def prepare(item: Record | RecordError, intake: Intake) -> Prepared | list[RecordError]:
    """One record as the enqueue script takes it, or every problem that keeps it out.

    A `RecordError` (the reader's) comes back as is; a record for another
    provider, or one the provider's rules refuse, as one `RecordError` per
    problem (each naming the line, field and invoice number; the rules'
    also carry the invoice, so the dead letter can hold it).
    """
    if isinstance(item, RecordError):
        return [item]
    number = item.invoice.number
    if item.provider is not None and item.provider is not intake.provider:
        message = f"record is for {item.provider.value}, this batch is for {intake.provider.value}"
        return [
            RecordError(
                item.line, message, field="provider", invoice_number=number, source=item.source
            )
        ]
    try:
        intake.validate(item.invoice)
    except InvoiceInvalid as exc:
        return _refused(item, exc)
    invoice = item.invoice.model_copy(update={"send": True}) if intake.send else item.invoice
    return (
        item.line,
        number,
        script_item(invoice, provider=intake.provider, account=intake.account),
    )


def prepared(items: Iterable[Record | RecordError], intake: Intake) -> Iterator[Taken]:
    """`prepare` over a stream of records, in order, one `RecordError` per problem."""
    for item in items:
        result = prepare(item, intake)
        if isinstance(result, list):
            yield from result
        else:
            yield result


async def prepared_async(
    items: AsyncIterable[Record | RecordError], intake: Intake
) -> AsyncIterator[list[Taken]]:
    """`prepare` over an async stream of records: what each record became, in order."""
    async for item in items:
        result = prepare(item, intake)
        taken: list[Taken] = [*result] if isinstance(result, list) else [result]
        yield taken


def script_item(invoice: Invoice, *, provider: Provider, account: str) -> list[str | bytes]:
    """One invoice's enqueue script arguments (its JSON computed once, here, and hashed)."""
    # model_dump_json() as UTF-8 bytes, without its decode: hashed and sent
    # to Redis as bytes, so nothing encodes it back (this runs per invoice).
    payload = invoice.__pydantic_serializer__.to_json(invoice)
    return [
        invoice_key(provider, account, invoice.number),
        fingerprint_of(payload),
        payload,
        invoice.number,
        "1" if invoice.send else "0",
    ]


def _refused(record: Record, error: InvoiceInvalid) -> list[RecordError]:
    problems = error.field_errors or (FieldError("invoice", error.message),)
    return [
        RecordError(
            record.line,
            problem.message,
            field=problem.field,
            invoice_number=record.invoice.number,
            invoice=record.invoice,
            source=record.source,
        )
        for problem in problems
    ]
