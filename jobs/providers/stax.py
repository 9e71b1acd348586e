"""jobs/providers/stax.py — speaks Stax's invoice API; no retries, no Redis.

Owns the table from HTTP status to `InvoiceError`, receipts, and the create
/ lookup / send calls (docs/providers.md, Stax). Stax has no invoice number:
ours goes in `meta.reference` and the lookup matches it on our side. The
body mapping and the local checks (each refusal at Stax counts toward the
ten 4xx a minute that block our IP for an hour) live in `stax_body` and are
re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Final

import httpx2 as httpx

from jobs.errors import (
    ConfigurationError,
    FieldError,
    InvoiceError,
    InvoiceRejected,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
)
from jobs.models import Invoice, InvoiceReceipt, Provider
from jobs.providers.answers import Operation, Row, field_errors_from, lookup, make_error
from jobs.providers.base import HttpProvider
from jobs.providers.json_body import as_decimal, body_of, loads
from jobs.providers.stax_body import (
    MAX_META_CHARS,
    invoice_from_request,
    invoice_problems,
    meta_from_invoice,
    render_timestamp,
    request_from_invoice,
)

log = logging.getLogger(__name__)

CREATE_PATH: Final = "/invoice"
LOOKUP_PAGE_SIZE: Final = 50
LOOKUP_MAX_PAGES: Final = 10
SENT_STATUSES: Final = frozenset({"SENT", "VIEWED", "PAID", "PARTIALLY APPLIED"})

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
    return None if response.is_success else _classify(response, body_of(response), operation)


def _classify(
    response: httpx.Response, payload: object, operation: Operation
) -> InvoiceError | None:
    if response.is_success:
        return None
    status = response.status_code
    error = lookup(ERRORS, status, None)
    if status == 404 and operation in ("detail", "send"):
        error = InvoiceRejected  # an unknown invoice id, not a wrong base URL
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

    name = "Stax"
    create_path = CREATE_PATH

    def _authorization(self, *, redacted: bool) -> str:
        return "Bearer " + ("***" if redacted else self.config.api_key)

    def _problems(self, invoice: Invoice) -> Sequence[FieldError]:
        return invoice_problems(invoice)

    def _create_body(self, invoice: Invoice) -> dict[str, object]:
        return request_from_invoice(invoice)

    def _error_for(
        self, response: httpx.Response, payload: object, operation: Operation
    ) -> InvoiceError | None:
        return _classify(response, payload, operation)

    async def create(self, invoice: Invoice) -> InvoiceReceipt:
        """Create the invoice: a DRAFT, or SENT when `invoice.send` asks for it."""
        body = request_from_invoice(invoice)
        return receipt_from(await self._answer("POST", CREATE_PATH, "create", body=body), invoice)

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
            listing = await self._answer("GET", CREATE_PATH, "find", params=params)
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
        data = await self._answer("PUT", path, "send", body={})
        if isinstance(data, Mapping) and data.get("id"):
            return receipt_from(data, invoice)
        return receipt.model_copy(update={"status": "SENT", "sent": True})


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


__all__ = [
    "ERRORS",
    "MAX_META_CHARS",
    "StaxProvider",
    "error_for",
    "invoice_from_request",
    "invoice_problems",
    "meta_from_invoice",
    "receipt_from",
    "render_timestamp",
    "request_from_invoice",
]
