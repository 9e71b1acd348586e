"""jobs/providers/stax.py — speaks Stax's invoice API; no retries, no Redis.

Owns the table from HTTP status to `InvoiceError`, receipts, and the create
/ lookup / send / delete calls (docs/providers.md, Stax). Stax has no invoice number:
ours goes in `meta.reference` and the lookup matches it on our side. The
body mapping and the local checks (each refusal at Stax counts toward the
ten 4xx a minute that block our IP for an hour) live in `stax_body` and are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import httpx2 as httpx

from jobs.errors import (
    CannotVoid,
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
from jobs.providers.base import HttpProvider, with_answer
from jobs.providers.json_body import as_decimal, body_of, loads
from jobs.providers.stax_body import (
    MAX_META_CHARS,
    invoice_from_request,
    invoice_problems,
    meta_from_invoice,
    render_timestamp,
    request_from_invoice,
)

CREATE_PATH: Final = "/invoice"
LOOKUP_PAGE_SIZE: Final = 50
LOOKUP_MAX_PAGES: Final = 10
SENT_STATUSES: Final = frozenset({"SENT", "VIEWED", "PAID", "PARTIALLY APPLIED"})
PAID_STATUSES: Final = frozenset({"PAID", "PARTIALLY APPLIED"})
"""Money has moved: such an invoice is not deleted, an operator must look."""

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
    if status == 404 and operation in ("detail", "send", "void"):
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
    return _receipt(data, invoice.number, invoice.stax.url)


def _receipt(data: object, number: str, default_url: str) -> InvoiceReceipt:
    if not isinstance(data, Mapping) or not data.get("id"):
        raise OutcomeUnknown("Stax: success without an invoice id")
    invoice_id = str(data["id"])
    status = str(data.get("status") or "DRAFT")
    base_url = data.get("url") if isinstance(data.get("url"), str) else None
    return InvoiceReceipt(
        provider=Provider.STAX,
        provider_id=invoice_id,
        invoice_number=number,
        status=status,
        link=f"{base_url or default_url}{invoice_id}",
        total=as_decimal(data.get("total")),
        sent=status in SENT_STATUSES or bool(data.get("sent_at")),
        voided=status == "DELETED" or bool(data.get("deleted_at")),
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

    async def create(self, invoice: Invoice, *, send_now: bool) -> InvoiceReceipt:
        """Create the invoice: SENT at once when `send_now`, else a DRAFT."""
        body = request_from_invoice(invoice)
        body.pop("send_now", None)  # the caller decides, not `invoice.send`
        if send_now:
            body["send_now"] = True
        return receipt_from(await self._answer("POST", CREATE_PATH, "create", body=body), invoice)

    async def find_all(self, invoice: Invoice) -> list[InvoiceReceipt]:
        """Every invoice whose `meta.reference` is our number, DELETED ones
        included, oldest first.

        Raises:
            InvoiceError: Stax could not answer, or `LOOKUP_MAX_PAGES` pages of
                keyword matches were read without reaching the last one.
        """
        matches: list[Mapping[str, object]] = []
        for page in range(1, LOOKUP_MAX_PAGES + 1):
            params: dict[str, str | int | list[str]] = {
                "keywords[]": [invoice.number],
                "per_page": LOOKUP_PAGE_SIZE,
                "page": page,
            }
            listing = await self._answer("GET", CREATE_PATH, "find", params=params)
            rows = listing.get("data") if isinstance(listing, Mapping) else None
            rows = rows if isinstance(rows, list) else []
            matches += [r for r in rows if _reference_of(r) == invoice.number]
            if not _more_pages(listing, page, len(rows)):
                # Oldest first: the first attempt's copy before later ones.
                matches.sort(key=lambda r: (str(r.get("created_at") or ""), str(r.get("id"))))
                return [receipt_from(r, invoice) for r in matches]
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

    async def void(self, receipt: InvoiceReceipt) -> InvoiceReceipt:
        """Delete the invoice (-> DELETED); one already deleted counts as deleted.

        Stax counts the "already deleted" 422 as a failed request (toward the
        ten a minute that block the IP) although we take it as a success.

        Raises:
            CannotVoid: the invoice is paid (in full or in part).
            InvoiceError: any other failure.
        """
        path = f"{CREATE_PATH}/{receipt.provider_id}"
        try:
            data = await self._answer("DELETE", path, "void")
        except InvoiceRejected as refused:
            fields = {f.field for f in refused.field_errors}
            if "deleted_at" in fields:  # {"deleted_at":["The invoice is already deleted."]}
                return receipt.model_copy(update={"status": "DELETED", "voided": True})
            if "id" in fields or refused.status == 404:
                raise  # no such invoice: asking again would be one more failure
            return await self._refused_void(receipt, path, refused)
        if isinstance(data, Mapping) and data.get("id"):
            return with_answer(receipt, _receipt(data, receipt.invoice_number, ""))
        return receipt.model_copy(update={"status": "DELETED", "voided": True})

    async def _refused_void(
        self, receipt: InvoiceReceipt, path: str, refused: InvoiceRejected
    ) -> InvoiceReceipt:
        # What Stax answers when deleting a paid invoice is not documented:
        # the invoice's own status says whether it is beyond voiding.
        current = _receipt(await self._answer("GET", path, "detail"), receipt.invoice_number, "")
        if current.voided:
            return with_answer(receipt, current)
        if current.status in PAID_STATUSES:
            raise CannotVoid(
                f"Stax: invoice {receipt.provider_id} ({receipt.invoice_number}) is"
                f" {current.status} and cannot be deleted",
                invoice_status=current.status,
                status=refused.status,
                field_errors=refused.field_errors,
            )
        raise refused


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
