"""jobs/providers/stax.py — speaks Stax's invoice API; no retries, no Redis.

Owns the mapping between the neutral `Invoice` and Stax's create body (both
ways), the local checks of what Stax refuses (each refusal counts toward the
ten 4xx a minute that block our IP for an hour, PROVIDERS.md 2.7), the table
from HTTP status to `InvoiceError`, and the create / lookup / send calls
(PROVIDERS.md section 2). Stax has no invoice number: ours goes in
`meta.reference` and the lookup matches it on our side.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Final

import httpx2 as httpx

from jobs.errors import (
    ConfigurationError,
    FieldError,
    InvoiceError,
    InvoiceInvalid,
    InvoiceRejected,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
)
from jobs.models import Invoice, InvoiceReceipt, Provider
from jobs.ports import PreparedRequest
from jobs.providers.base import (
    HttpProvider,
    Operation,
    Row,
    as_decimal,
    body_of,
    dumps,
    field_errors_from,
    loads,
    lookup,
    make_error,
)

log = logging.getLogger(__name__)

CREATE_PATH: Final = "/invoice"
LOOKUP_PAGE_SIZE: Final = 50
LOOKUP_MAX_PAGES: Final = 10
MAX_META_CHARS: Final = 60_000
SENT_STATUSES: Final = frozenset({"SENT", "VIEWED", "PAID", "PARTIALLY APPLIED"})
TIMESTAMP_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

ERRORS: Final[tuple[Row, ...]] = (
    Row(400, None, InvoiceRejected, "bad parameters or funding set-up"),
    Row(401, None, ConfigurationError, "authentication failed"),
    Row(403, None, ConfigurationError, "the key may not do this"),
    Row(404, None, ConfigurationError, "no such route: the base URL is wrong"),
    Row(422, None, InvoiceRejected, "validation failed; the body is keyed by field"),
    Row(429, None, RateLimited, "over the per-IP rate, or the IP is blocked"),
    Row(500, None, OutcomeUnknown, "server error; the invoice may have been committed"),
    Row(502, None, ProviderUnavailable, "the gateway did not reach the app"),
    Row(503, None, ProviderUnavailable, "unavailable; not processed"),
    Row(504, None, OutcomeUnknown, "the gateway gave up waiting; the app may have committed"),
)
"""HTTP status -> error (Stax has no body code); other 4xx rejected, other 5xx unknown."""


def error_for(response: httpx.Response, operation: Operation) -> InvoiceError | None:
    """The error a Stax answer means, or `None` for any 2xx."""
    if response.is_success:
        return None
    status = response.status_code
    error = lookup(ERRORS, status, None)
    if status == 404 and operation in ("detail", "send"):
        error = InvoiceRejected  # an unknown invoice id, not a wrong base URL
    payload = body_of(response)
    message, details = _split_message(payload)
    fields = tuple(field_errors_from(details))
    if message is None:
        message = "; ".join(str(f) for f in fields)[:300] or response.reason_phrase
    return make_error(
        error,
        f"Stax: {message or status}",
        status=status,
        code=None,
        field_errors=fields,
        headers=response.headers,
    )


def _split_message(payload: object) -> tuple[str | None, object]:
    # `{"error": "Unauthorized"}` or `{"message": ...}` is a message, not a field.
    if isinstance(payload, Mapping):
        for key in ("message", "error"):
            value = payload.get(key)
            if isinstance(value, str):
                return value, {k: v for k, v in payload.items() if k != key}
    return None, payload


def receipt_from(data: object, invoice: Invoice) -> InvoiceReceipt:
    """The receipt for a Stax invoice object; the link is the hosted page (`url` + id).

    Raises:
        OutcomeUnknown: the object has no `id` (we cannot tell what landed).
    """
    if not isinstance(data, Mapping) or not data.get("id"):
        raise OutcomeUnknown("Stax: success without an invoice id")
    invoice_id = str(data["id"])
    status = str(data.get("status") or "DRAFT")
    base_url = data.get("url") if isinstance(data.get("url"), str) else None
    return InvoiceReceipt(
        provider=Provider.STAX,
        provider_id=invoice_id,
        invoice_number=invoice.number,
        status=status,
        link=f"{base_url or invoice.stax.url}{invoice_id}",
        total=as_decimal(data.get("total")),
        sent=status in SENT_STATUSES,
    )


class StaxProvider(HttpProvider):
    """One Stax merchant account (implements `jobs.ports.InvoiceProvider`)."""

    provider = Provider.STAX

    def _headers(self, *, redacted: bool = False) -> dict[str, str]:
        token = "***" if redacted else self.config.api_key
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    def validate(self, invoice: Invoice) -> None:
        """Refuse locally what Stax would reject: a refusal there costs IP budget.

        Raises:
            InvoiceInvalid: one `FieldError` per problem.
        """
        problems = invoice_problems(invoice)
        if problems:
            raise InvoiceInvalid(
                f"invoice {invoice.number} is not valid for Stax", field_errors=tuple(problems)
            )

    def prepare_create(self, invoice: Invoice) -> PreparedRequest:
        """The exact create request, with the key shown as `Bearer ***`."""
        return PreparedRequest(
            method="POST",
            url=self._url(CREATE_PATH),
            headers=self._headers(redacted=True),
            json=request_from_invoice(invoice),
        )

    async def create(self, invoice: Invoice) -> InvoiceReceipt:
        """Create the invoice: a DRAFT, or SENT when `invoice.send` asks for it."""
        self.validate(invoice)
        body = request_from_invoice(invoice)
        return receipt_from(await self._call("POST", CREATE_PATH, "create", body=body), invoice)

    async def find(self, invoice: Invoice) -> InvoiceReceipt | None:
        """The invoice whose `meta.reference` is our number, or `None`.

        Raises:
            InvoiceError: Stax could not answer, or `LOOKUP_MAX_PAGES` pages of
                keyword matches were read without reaching the last one.
        """
        for page in range(1, LOOKUP_MAX_PAGES + 1):
            params: dict[str, str | int | list[str]] = {
                "keywords[]": [invoice.number],
                "per_page": LOOKUP_PAGE_SIZE,
                "page": page,
            }
            listing = await self._call("GET", CREATE_PATH, "find", params=params)
            rows = listing.get("data") if isinstance(listing, Mapping) else None
            rows = rows if isinstance(rows, list) else []
            matches = [r for r in rows if _reference_of(r) == invoice.number]
            if matches:
                return _pick(matches, invoice)
            if not _more_pages(listing, page, len(rows)):
                return None
        raise OutcomeUnknown(
            f"Stax: lookup of {invoice.number} inconclusive after {LOOKUP_MAX_PAGES} pages"
        )

    async def send(self, receipt: InvoiceReceipt, invoice: Invoice) -> InvoiceReceipt:
        """Email the invoice to the customer (status SENT); resending is allowed."""
        path = f"{CREATE_PATH}/{receipt.provider_id}/send/email"
        data = await self._call("PUT", path, "send", body={})
        if isinstance(data, Mapping) and data.get("id"):
            return receipt_from(data, invoice)
        return receipt.model_copy(update={"status": "SENT", "sent": True})

    async def _call(
        self,
        method: str,
        path: str,
        operation: Operation,
        *,
        body: object = None,
        params: Mapping[str, str | int | list[str]] | None = None,
    ) -> object:
        response = await self._request(method, path, body=body, params=params)
        error = error_for(response, operation)
        if error is not None:
            raise error
        return body_of(response)


def _reference_of(row: object) -> object:
    if not isinstance(row, Mapping):
        return None
    meta = row.get("meta")
    if isinstance(meta, str):  # some Stax answers carry meta as JSON text
        try:
            meta = loads(meta)
        except ValueError:
            return None
    return meta.get("reference") if isinstance(meta, Mapping) else None


def _more_pages(listing: object, page: int, rows: int) -> bool:
    if not isinstance(listing, Mapping):
        return False
    last = listing.get("last_page")
    if isinstance(last, int) and not isinstance(last, bool):
        return page < last
    return rows >= LOOKUP_PAGE_SIZE


def _pick(matches: list[object], invoice: Invoice) -> InvoiceReceipt:
    rows = [m for m in matches if isinstance(m, Mapping)]
    # The oldest is the one the first attempt made; later ones are duplicates.
    rows.sort(key=lambda r: (str(r.get("created_at") or ""), str(r.get("id"))))
    if len(rows) > 1:
        ids = ", ".join(str(r.get("id")) for r in rows)
        log.warning("stax holds %d invoices with reference %s: %s", len(rows), invoice.number, ids)
    return receipt_from(rows[0], invoice)


# --- the create body, both ways ------------------------------------------------

_BODY_KEYS: Final = frozenset(
    {
        "customer_id",
        "url",
        "total",
        "meta",
        "send_now",
        "is_partial_payment_enabled",
        "invoice_date_at",
        "due_at",
        "funding",
    }
)
_PAYMENT_KEYS: Final = (
    ("card", "isCCPaymentEnabled"),
    ("ach", "isACHPaymentEnabled"),
    ("tips", "isTipEnabled"),
)
_META_KEYS: Final = frozenset(
    {"lineItems", "subtotal", "tax", "memo", "reference"} | {m for _, m in _PAYMENT_KEYS}
)


def request_from_invoice(invoice: Invoice) -> dict[str, object]:
    """Stax's create body for `invoice`; fields that are `None` are left out.

    Stax knows amounts, not rules: a RATE tax goes as its computed amount and
    DAYS terms as a due date (`invoice_date` + days, or today + days).
    """
    totals = invoice.totals()
    body: dict[str, object] = {
        "customer_id": invoice.customer.id,
        "url": invoice.stax.url,
        "total": totals.total,
        "meta": meta_from_invoice(invoice),
        "send_now": True if invoice.send else None,
        "is_partial_payment_enabled": invoice.payment.partial,
        "invoice_date_at": render_timestamp(invoice.invoice_date) if invoice.invoice_date else None,
        "due_at": _due_at(invoice),
        "funding": [{"account_id": f.account_id, "amount": f.amount} for f in invoice.funding]
        or None,
    }
    return _present(body)


def meta_from_invoice(invoice: Invoice) -> dict[str, object]:
    """The `meta` object: lines, amounts, memo, our number and payment options."""
    totals = invoice.totals()
    lines = [
        {
            "item": line.name or line.description,
            "details": line.description,
            "quantity": _number(line.quantity),
            "price": line.unit_price,
        }
        for line in invoice.lines
    ]
    meta: dict[str, object] = {
        "lineItems": lines,
        "subtotal": totals.subtotal,
        "tax": totals.tax,
        "memo": invoice.notes.memo,
        "reference": invoice.number,
    }
    meta |= {stax: getattr(invoice.payment, name) for name, stax in _PAYMENT_KEYS}
    return _present(meta)


def invoice_from_request(body: Mapping[str, object]) -> Invoice:
    """The neutral invoice a Stax create body describes (inverse of `request_from_invoice`).

    A zero `meta.tax` means no tax; other taxes come back as amounts, due
    dates as DATE terms.

    Raises:
        ValueError: unknown fields, malformed parts, or amounts that do not add up.
    """
    unknown = sorted(set(body) - _BODY_KEYS)
    meta = _mapping(body.get("meta"), "meta")
    unknown += sorted(f"meta.{k}" for k in set(meta) - _META_KEYS)
    if unknown:
        raise ValueError(f"not Stax create fields: {', '.join(unknown)}")
    payment = {name: meta.get(stax) for name, stax in _PAYMENT_KEYS}
    fields: dict[str, object] = {
        "number": meta.get("reference"),
        "customer": {"id": body.get("customer_id")},
        "lines": [_line_from(item) for item in _list(meta.get("lineItems"), "meta.lineItems")],
        "tax": _tax_from(meta.get("tax")),
        "invoice_date": _date_from(body.get("invoice_date_at")),
        "terms": _terms_from(body.get("due_at")),
        "notes": {"memo": meta.get("memo")},
        "payment": payment | {"partial": body.get("is_partial_payment_enabled")},
        "send": body.get("send_now") is True,
        "funding": _list(body.get("funding"), "funding"),
        "stax": {"url": body.get("url")},
    }
    invoice = Invoice.model_validate(_present(fields))
    _check_amounts(invoice, body, meta)
    return invoice


def invoice_problems(invoice: Invoice) -> list[FieldError]:
    """Every reason Stax would refuse `invoice` (PROVIDERS.md 2.3, 2.9)."""
    problems: list[FieldError] = []
    if invoice.currency != "USD":
        problems.append(FieldError("currency", "Stax invoices are in USD only"))
    if not invoice.customer.id.strip():
        problems.append(FieldError("customer.id", "Stax requires the customer id"))
    if not invoice.stax.url.strip():
        problems.append(FieldError("stax.url", "Stax requires the hosted page url"))
    if invoice.funding:
        funded = sum((f.amount for f in invoice.funding), Decimal(0))
        total = invoice.totals().total
        if funded != total:
            problems.append(
                FieldError("funding", f"amounts add up to {funded}, not the total {total}")
            )
    meta_chars = len(dumps(meta_from_invoice(invoice)))
    if meta_chars > MAX_META_CHARS:
        problems.append(
            FieldError("lines", f"meta is {meta_chars} characters; Stax takes {MAX_META_CHARS}")
        )
    return problems


def render_timestamp(value: date | datetime) -> str:
    """Stax's `YYYY-MM-DD HH:MM:SS` (UTC, no zone); a date is its midnight."""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return moment.strftime(TIMESTAMP_FORMAT)
    return f"{value.isoformat()} 00:00:00"


def _due_at(invoice: Invoice) -> str | None:
    terms = invoice.terms
    if terms is None:
        return None
    if terms.kind == "date" and terms.due_date is not None:
        due = terms.due_date
    else:
        due = _day_of(invoice.invoice_date) + timedelta(days=terms.days or 0)
    return f"{due.isoformat()} 23:59:59"


def _day_of(value: date | datetime | None) -> date:
    if value is None:
        return datetime.now(UTC).date()  # Stax's own default invoice date is now
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    return value


def _date_from(value: object) -> object:
    # Midnight is how a plain date is sent, so it comes back as a date.
    if isinstance(value, str) and value.strip().endswith(" 00:00:00"):
        return value.strip()[:10]
    return value


def _terms_from(value: object) -> dict[str, object] | None:
    if value is None:
        return None
    return {"kind": "date", "due_date": str(value).strip()[:10]}


def _tax_from(value: object) -> dict[str, object] | None:
    amount = as_decimal(value)
    if value is not None and amount is None:
        raise ValueError("meta.tax must be an amount")
    if not amount:
        return None
    return {"kind": "amount", "value": amount}


def _line_from(value: object) -> dict[str, object]:
    item = _mapping(value, "meta.lineItems[]")
    unknown = sorted(set(item) - {"item", "details", "quantity", "price"})
    if unknown:
        raise ValueError(f"not Stax line item fields: {', '.join(unknown)}")
    details = item.get("details") if item.get("details") is not None else item.get("item")
    name = item.get("item")
    return {
        "description": details,
        "name": name if name != details else None,
        "quantity": as_decimal(item.get("quantity")),
        "unit_price": as_decimal(item.get("price")),
    }


def _check_amounts(
    invoice: Invoice, body: Mapping[str, object], meta: Mapping[str, object]
) -> None:
    totals = invoice.totals()
    stated = {
        "total": (body.get("total"), totals.total),
        "meta.subtotal": (meta.get("subtotal"), totals.subtotal),
    }
    for where, (given, computed) in stated.items():
        if given is not None and as_decimal(given) != computed:
            raise ValueError(f"{where} is {given} but the lines add up to {computed}")


def _list(value: object, where: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list")
    return value


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be an object")
    return value


def _number(value: Decimal) -> int | Decimal:
    return int(value) if value == value.to_integral_value() else value


def _present(values: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in values.items() if v is not None}


__all__ = [
    "ERRORS",
    "StaxProvider",
    "error_for",
    "invoice_from_request",
    "invoice_problems",
    "meta_from_invoice",
    "receipt_from",
    "render_timestamp",
    "request_from_invoice",
]
