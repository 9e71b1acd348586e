"""The provider-neutral invoice and what a provider gives back for it.

An `Invoice` says what the finance team wants billed; `jobs/providers/*` turn
it into a Maast or Stax request. Optional fields default to `None`, meaning
"not given, let the provider apply its default", so a request parsed from a
provider body maps back to exactly that body. Money is `Decimal` end to end;
`Invoice.totals()` is the one place amounts are added up (via `jobs.money`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from jobs.money import Totals, compute_totals


class Provider(StrEnum):
    """The payment providers invoicer can create invoices at."""

    MAAST = "maast"
    STAX = "stax"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


def canonical(value: Decimal) -> Decimal:
    """One spelling per amount (10, 10.0 and 10.00 are all 10; 1.50 is 1.5).

    Equal content must give equal JSON, hence equal fingerprints: a
    spreadsheet re-saved with trailing zeros is the same invoice, not a
    conflict.
    """
    exponent = value.as_tuple().exponent
    if exponent == 0:  # the common case, "3": already canonical
        return value
    if value == value.to_integral_value():
        try:
            return value.quantize(_ONE)
        except InvalidOperation:
            raise ValueError("amount is too large") from None
    return value.normalize()


def cents(value: Decimal) -> Decimal:
    """Money in one spelling, two places (10 and 10.0 are 10.00); no fractions of a cent."""
    if value.as_tuple().exponent == -2:  # the common case, "12.50": already canonical
        return value
    try:
        exact = value.quantize(_CENT)
    except InvalidOperation:
        raise ValueError("amount is too large") from None
    if exact != value:
        raise ValueError("more than 2 decimal places")
    return exact


_ONE = Decimal(1)
_CENT = Decimal("0.01")
Text = Annotated[str, Field(min_length=1)]
Amount = Annotated[Decimal, Field(allow_inf_nan=False), AfterValidator(canonical)]
"""A quantity or a rate."""
Money = Annotated[Decimal, Field(allow_inf_nan=False), AfterValidator(cents)]
"""Dollars and cents."""


class Address(_Model):
    """A postal address; every part optional."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    zip4: str | None = None
    country_code: str | None = None
    """ISO 3166 numeric, e.g. "840" (Maast's form)."""
    country: str | None = None


class Contact(_Model):
    """A person or firm on an invoice (Maast's Contact object, neutral names)."""

    first_name: str | None = None
    last_name: str | None = None
    firm_name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: Address | None = None


class Customer(Contact):
    """Who is billed: the provider's customer id plus contact and address."""

    id: Text
    """Maast: the vault `customer_id` (<=32 alphanumerics). Stax: the customer UUID."""


class LineItem(_Model):
    """One billed line."""

    description: Text
    quantity: Amount = Field(gt=0)
    unit_price: Money = Field(ge=0)
    name: str | None = None
    """Short item name (Stax `item`); defaults to the description."""


class Tax(_Model):
    """Sales tax: a percentage of the subtotal, or a fixed amount."""

    kind: Literal["rate", "amount"]
    value: Amount = Field(ge=0)


class Terms(_Model):
    """Payment terms: due a number of days after the invoice date, or on a date."""

    kind: Literal["days", "date"]
    days: int | None = Field(default=None, ge=0, le=3650)
    due_date: date | None = None

    @model_validator(mode="after")
    def _one_value(self) -> Terms:
        if self.kind == "days" and self.days is None:
            raise ValueError("terms of kind 'days' need days")
        if self.kind == "date" and self.due_date is None:
            raise ValueError("terms of kind 'date' need due_date")
        return self


class Notes(_Model):
    """Free text shown to the customer."""

    memo: str | None = None
    """Stax `meta.memo`, shown on the hosted page."""
    footer: str | None = None
    """Maast `footer_note` (<=750 characters)."""
    terms: str | None = None
    """Maast `payment_terms_note` (<=500 characters)."""


class PaymentOptions(_Model):
    """How the customer may pay; `None` leaves the provider's default."""

    partial: bool | None = None
    ach: bool | None = None
    card: bool | None = None
    tips: bool | None = None
    email_receipt: bool | None = None


class Funding(_Model):
    """One split-funding leg (Stax): amounts must add up to the invoice total."""

    account_id: Text
    amount: Money = Field(gt=0)


class MaastExtras(_Model):
    """Fields only Maast understands."""

    profile_id: str | None = None
    from_contact: Contact | None = None
    save_customer: bool | None = None


class StaxExtras(_Model):
    """Fields only Stax understands."""

    url: str = "https://app.staxpayments.com/#/bill/"
    """Base of the hosted bill-pay page; Stax requires it (docs/providers.md, Stax: Host)."""


class Invoice(_Model):
    """One invoice, as the finance team means it, before any provider sees it."""

    number: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._/-]+$")]
    """Our invoice number: the idempotency key (per provider account)."""
    customer: Customer
    lines: Annotated[list[LineItem], Field(min_length=1)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    tax: Tax | None = None
    invoice_date: date | datetime | None = None
    """A date; a full timestamp is kept as given (the Maast guide sends one)."""
    terms: Terms | None = None
    notes: Notes = Notes()
    payment: PaymentOptions = PaymentOptions()
    send: bool = False
    """Send to the customer once created, instead of leaving a draft."""
    funding: list[Funding] = Field(default_factory=list)
    maast: MaastExtras = MaastExtras()
    stax: StaxExtras = StaxExtras()

    @field_validator("invoice_date", mode="before")
    @classmethod
    def _date_or_timestamp(cls, value: object) -> object:
        # A bare "YYYY-MM-DD" is a date; anything with a time part stays a
        # timestamp so it can be sent back exactly as it came.
        if isinstance(value, str) and "T" not in value and " " not in value.strip():
            return date.fromisoformat(value.strip())
        if isinstance(value, str):
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return value

    def totals(self) -> Totals:
        """Subtotal, tax and total, rounded as the providers round."""
        tax = self.tax
        return compute_totals(
            ((line.quantity, line.unit_price) for line in self.lines),
            tax_rate_percent=tax.value if tax and tax.kind == "rate" else None,
            tax_amount=tax.value if tax and tax.kind == "amount" else None,
        )

    def fingerprint(self) -> str:
        """A hash of the canonical content: equal invoices, equal fingerprints."""
        return fingerprint_of(self.model_dump_json())


def fingerprint_of(invoice_json: str | bytes) -> str:
    """`Invoice.fingerprint()` from the invoice's `model_dump_json()` text (or its UTF-8 bytes).

    The JSON pydantic writes is canonical already (fields in declaration
    order, no free-form mappings), so callers that serialise the invoice
    anyway (enqueue) hash that text instead of serialising it twice.
    """
    data = invoice_json.encode() if isinstance(invoice_json, str) else invoice_json
    return hashlib.sha256(data).hexdigest()[:32]


class InvoiceReceipt(_Model):
    """The proof that a provider created (and perhaps sent, or voided) an invoice.

    Stored as JSON in the ledger: a field added later must have a default,
    so receipts written before it still parse.
    """

    provider: Provider
    provider_id: Text
    invoice_number: Text
    status: str
    """The provider's own status word (Maast SAVED/OUTSTANDING/CANCELED, Stax DRAFT/SENT/
    DELETED...)."""
    link: str | None = None
    """Where the customer pays, when the provider has one yet."""
    total: Amount | None = None
    sent: bool = False
    """The customer was sent this invoice (it stays true after a void)."""
    voided: bool = False
    """Cancelled (Maast CANCELED) or deleted (Stax DELETED): not a live invoice."""

    @model_serializer(mode="wrap")
    def _live_as_before(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # A live receipt serialises exactly as before `voided` existed, so a
        # worker of the previous version reading the ledger during a rolling
        # upgrade still parses it (the model forbids unknown fields).
        data: dict[str, object] = handler(self)
        if not self.voided:
            data.pop("voided", None)
        return data


def keeper_of(copies: Sequence[InvoiceReceipt]) -> InvoiceReceipt | None:
    """The copy a lookup adopts among `copies` (oldest first): the oldest live
    copy that was sent, else the oldest live copy; `None` when none is live.

    A voided copy is never adopted: it can no longer be paid. A sent copy
    wins because it is the one the customer holds.
    """
    live = [c for c in copies if not c.voided]
    return next((c for c in live if c.sent), live[0] if live else None)
