"""The interfaces the domain needs from the outside world.

`jobs/create_invoice.py` is written against these Protocols only: the worker
implements `LedgerEntry` and `Limiter` on Redis, `jobs/providers` implement
`InvoiceProvider` over HTTP, and tests use in-memory fakes of all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from jobs.errors import InvoiceError
from jobs.models import Invoice, InvoiceReceipt, Provider


@dataclass(frozen=True)
class PreparedRequest:
    """An HTTP request a provider would send, for `--dry-run` and tests."""

    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any] = field(default_factory=dict)


class InvoiceProvider(Protocol):
    """One provider account, spoken to over HTTP."""

    provider: Provider

    def validate(self, invoice: Invoice) -> None:
        """Refuse locally what the provider is known to reject.

        Raises:
            InvoiceInvalid: with one `FieldError` per problem.
        """

    def prepare_create(self, invoice: Invoice) -> PreparedRequest:
        """The exact create request, with the API key redacted."""

    async def create(self, invoice: Invoice, *, send_now: bool) -> InvoiceReceipt:
        """Create the invoice: a draft, or sent at once when `send_now` and the
        provider can send on create (Stax `send_now`; Maast always drafts).

        The caller decides `send_now`: only a first attempt whose outcome
        cannot be doubted may send on create (docs/providers.md). Does not
        validate: callers go through `jobs.create_invoice`, which calls
        `validate` once first.

        Raises:
            InvoiceError: translated from the provider's answer or the transport.
        """

    async def find_all(self, invoice: Invoice) -> list[InvoiceReceipt]:
        """Every copy the provider holds with our invoice number, oldest first,
        live and voided, each with its status and `sent` / `voided` flags.

        Raises:
            InvoiceError: when the provider cannot say, or could not list every
                copy (so the caller must not guess).
        """

    async def find(self, invoice: Invoice) -> InvoiceReceipt | None:
        """The live copy a lookup adopts (`jobs.models.keeper_of` over `find_all`),
        or `None` when the provider holds no live copy. Voided copies are never
        returned.

        Raises:
            InvoiceError: when the provider cannot say (so the caller must not guess).
        """

    async def send(self, receipt: InvoiceReceipt, invoice: Invoice) -> InvoiceReceipt:
        """Send a created draft to the customer; returns the updated receipt."""

    async def void(self, receipt: InvoiceReceipt) -> InvoiceReceipt:
        """Void one copy (Maast cancel -> CANCELED, Stax delete -> DELETED);
        returns it with `voided` set. A copy that is already voided counts as
        voided (no error).

        Raises:
            CannotVoid: the provider will not void it (it was paid).
            InvoiceError: any other failure, translated once.
        """

    async def aclose(self) -> None:
        """Close the shared HTTP client."""


class Limiter(Protocol):
    """Paces requests to one provider account, across every worker."""

    async def acquire(self) -> None:
        """Wait for a request slot.

        Raises:
            RateLimited: no slot within the bounded wait, or the provider is
                paused; `retry_after_s` says when to come back.
        """

    async def record(self, error: InvoiceError | None) -> None:
        """Report how a request ended: 429s pause, 4xx count toward the failure budget."""


@dataclass(frozen=True)
class Claim:
    """What the ledger knows about an invoice when a worker takes its job."""

    receipt: InvoiceReceipt | None = None
    """Set once the invoice was created: no create call may follow."""
    create_maybe_landed: bool = False
    """An earlier create may have reached the provider: look up before creating."""
    send_maybe_landed: bool = False
    """An earlier send may have reached the provider: look up before sending."""


class LedgerEntry(Protocol):
    """One invoice's ledger record, held by the worker running its job."""

    async def mark_sending(self) -> None:
        """Record that a create request is about to leave (`queued -> sending`)."""

    async def mark_created(self, receipt: InvoiceReceipt) -> None:
        """Record the provider's receipt (`sending|in_doubt -> created`)."""

    async def mark_send_started(self) -> None:
        """Record that a send request is about to leave."""

    async def mark_sent(self, receipt: InvoiceReceipt) -> None:
        """Record that the customer was sent the invoice (`created -> sent`)."""
