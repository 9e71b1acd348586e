"""jobs/providers/maast.py — speaks Maast's Platform invoice API; no retries, no Redis.

Owns the table from (HTTP status, body `code`) to `InvoiceError`, receipts,
and the create / lookup / send / cancel calls (docs/providers.md, Maast).
Maast succeeds only on HTTP 2xx with `code` 0. The body mapping (`maast_body`)
and the local checks (`maast_checks`) are re-exported here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Final

import httpx2 as httpx

from jobs.errors import (
    CannotVoid,
    ConfigurationError,
    FieldError,
    InvoiceConflict,
    InvoiceError,
    InvoiceRejected,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
)
from jobs.models import Invoice, InvoiceReceipt, Provider
from jobs.providers.answers import Operation, Row, field_errors_from, lookup, make_error
from jobs.providers.base import HttpProvider, with_answer
from jobs.providers.json_body import JsonBody, as_decimal, body_of
from jobs.providers.maast_body import (
    CURRENCY_CODES,
    invoice_from_request,
    render_date,
    request_from_invoice,
)
from jobs.providers.maast_checks import invoice_problems

CREATE_PATH: Final = "/platform/invoice"
NOT_SENT: Final = frozenset({"SAVED", "CANCELED"})
"""Statuses that alone do not say the customer got the invoice (`date_sent` may)."""
LOOKUP_PAGE_SIZE: Final = 100
LOOKUP_MAX_PAGES: Final = 10

ERRORS: Final[tuple[Row, ...]] = (
    Row(400, 2, InvoiceRejected, "validation failed; `data` lists the fields"),
    Row(401, 11, ConfigurationError, "missing or unknown API key"),
    Row(401, None, ConfigurationError, "credentials not recognised"),
    Row(403, 6, ConfigurationError, "the key has no access to this resource"),
    Row(403, None, ConfigurationError, "forbidden"),
    Row(404, 7, ConfigurationError, "no such service: the base URL is wrong"),
    Row(404, None, ConfigurationError, "no such URL: the base URL is wrong"),
    Row(429, None, RateLimited, "throttled (undocumented, honoured if it comes)"),
    Row(500, 99, OutcomeUnknown, "server problem; the invoice may have been committed"),
    Row(500, None, OutcomeUnknown, "server problem; may have committed"),
    Row(502, None, ProviderUnavailable, "the gateway did not reach the app"),
    Row(503, None, ProviderUnavailable, "unavailable; not processed"),
    Row(504, None, OutcomeUnknown, "the gateway gave up waiting; the app may have committed"),
)
"""(HTTP status, body code) -> error; other 4xx are rejections, other 5xx unknown."""

CODES_ON_2XX: Final[dict[int, type[InvoiceError]]] = {
    2: InvoiceRejected,
    6: ConfigurationError,
    7: ConfigurationError,
    11: ConfigurationError,
}
"""A non-zero `code` under HTTP 2xx; any code not listed leaves the outcome unknown."""

_DUPLICATE = re.compile(r"(already|exist|duplicate|unique|in use)", re.IGNORECASE)
_NUMBER = re.compile(r"invoice[ _]number", re.IGNORECASE)


def basic_token(api_key: str) -> str:
    """Maast's Basic token: base64 of ":" + key (empty user name, key as password)."""
    return base64.b64encode(f":{api_key}".encode()).decode("ascii")


def error_for(response: httpx.Response, operation: Operation) -> InvoiceError | None:
    """The error a Maast answer means, or `None` when it is a success (2xx, code 0)."""
    return _classify(response, body_of(response), operation)


def _classify(
    response: httpx.Response, payload: object, operation: Operation
) -> InvoiceError | None:
    envelope = payload if isinstance(payload, Mapping) else {}
    raw_code = envelope.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    message = str(envelope.get("message") or response.reason_phrase or "no message")
    status = response.status_code
    if response.is_success:
        if code == 0:
            return None
        error = CODES_ON_2XX.get(code, OutcomeUnknown) if code is not None else OutcomeUnknown
    else:
        error = lookup(ERRORS, status, code)
    if status == 404 and operation in ("detail", "send", "void"):
        error = InvoiceRejected  # an unknown invoice id, not a wrong base URL
    fields = tuple(field_errors_from(envelope.get("data")))
    if error is InvoiceRejected and _is_duplicate_number(message, fields):
        error = InvoiceConflict
    return make_error(
        error,
        f"Maast: {message}",
        status=status,
        code=str(code) if code is not None else None,
        field_errors=fields,
        headers=response.headers,
    )


def _is_duplicate_number(message: str, fields: tuple[FieldError, ...]) -> bool:
    texts = [message] + [f"{f.field} {f.message}" for f in fields]
    return any(_NUMBER.search(t) and _DUPLICATE.search(t) for t in texts)


def receipt_from(data: object, invoice: Invoice) -> InvoiceReceipt:
    """The receipt for a Maast Invoice object.

    Raises:
        OutcomeUnknown: the object has no `invoice_id` (we cannot tell what landed).
    """
    return _receipt(data, invoice.number)


def _receipt(data: object, number: str) -> InvoiceReceipt:
    if not isinstance(data, Mapping) or data.get("invoice_id") in (None, ""):
        raise OutcomeUnknown("Maast: success without an invoice_id")
    status = str(data.get("status") or "SAVED")
    return InvoiceReceipt(
        provider=Provider.MAAST,
        provider_id=str(data["invoice_id"]),
        invoice_number=number,
        status=status,
        link=str(data["invoice_link"]) if data.get("invoice_link") else None,
        total=as_decimal(data.get("amt_tran")),
        # Any status we do not know counts as sent: never send twice.
        sent=status not in NOT_SENT or bool(data.get("date_sent")),
        voided=status == "CANCELED",
    )


class MaastProvider(HttpProvider):
    """One Maast merchant account (implements `jobs.ports.InvoiceProvider`)."""

    provider = Provider.MAAST

    name = "Maast"
    create_path = CREATE_PATH

    def _authorization(self, *, redacted: bool) -> str:
        return "Basic " + ("***" if redacted else basic_token(self.config.api_key))

    def _problems(self, invoice: Invoice) -> Sequence[FieldError]:
        return invoice_problems(invoice)

    def _create_body(self, invoice: Invoice) -> dict[str, object]:
        return request_from_invoice(invoice)

    def _error_for(
        self, response: httpx.Response, payload: object, operation: Operation
    ) -> InvoiceError | None:
        return _classify(response, payload, operation)

    async def create(self, invoice: Invoice, *, send_now: bool) -> InvoiceReceipt:
        """Create a draft (status SAVED); Maast never sends on create, whatever `send_now`."""
        data = await self._call("POST", CREATE_PATH, "create", body=request_from_invoice(invoice))
        return receipt_from(data, invoice)

    async def find_all(self, invoice: Invoice) -> list[InvoiceReceipt]:
        """Every invoice with our number, CANCELED ones included, lowest id (oldest) first.

        Raises:
            InvoiceError: Maast could not answer, or there were more pages than
                `LOOKUP_MAX_PAGES` (the lookup is inconclusive).
        """
        matches: list[Mapping[str, object]] = []
        for page in range(LOOKUP_MAX_PAGES):
            params: dict[str, str | int | list[str]] = {
                "filter": f"invoice_number,EQ,{invoice.number}",
                "count": LOOKUP_PAGE_SIZE,
                "page": page,
            }
            envelope = await self._envelope("GET", CREATE_PATH, "find", params=params)
            rows = envelope.get("data")
            rows = rows if isinstance(rows, list) else []
            # Match on our side too: the filter syntax is unverified (docs/providers.md, Q2).
            matches += [r for r in rows if _number_of(r) == invoice.number]
            if not _more_pages(envelope, page, len(rows)):
                matches.sort(key=lambda r: _id_key(r.get("invoice_id")))
                return [receipt_from(r, invoice) for r in matches]
        raise OutcomeUnknown(
            f"Maast: lookup of {invoice.number} inconclusive after {LOOKUP_MAX_PAGES} pages"
        )

    async def send(self, receipt: InvoiceReceipt, invoice: Invoice) -> InvoiceReceipt:
        """Send a SAVED invoice (-> OUTSTANDING) and return its updated receipt."""
        path = f"{CREATE_PATH}/{receipt.provider_id}"
        data = await self._call("POST", f"{path}/send", "send", body={})
        if isinstance(data, Mapping) and data.get("invoice_id") is not None:
            return receipt_from(data, invoice)
        try:
            # The send answer may carry no data ([Maast Send an Invoice] in docs/providers.md);
            # the link comes with the detail.
            return receipt_from(await self._call("GET", f"{path}/detail", "detail"), invoice)
        except InvoiceError:
            return receipt.model_copy(update={"status": "OUTSTANDING", "sent": True})

    async def void(self, receipt: InvoiceReceipt) -> InvoiceReceipt:
        """Cancel the invoice (-> CANCELED); one already CANCELED counts as cancelled.

        Raises:
            CannotVoid: the invoice is PAID.
            InvoiceError: any other failure.
        """
        path = f"{CREATE_PATH}/{receipt.provider_id}"
        try:
            data = await self._call("DELETE", f"{path}/cancel", "void")
        except InvoiceRejected as refused:
            if refused.status == 404:
                raise  # no such invoice
            return await self._refused_void(receipt, path, refused)
        if isinstance(data, Mapping) and data.get("invoice_id") is not None:
            return with_answer(receipt, _receipt(data, receipt.invoice_number))
        return receipt.model_copy(update={"status": "CANCELED", "voided": True})

    async def _refused_void(
        self, receipt: InvoiceReceipt, path: str, refused: InvoiceRejected
    ) -> InvoiceReceipt:
        # Maast answers code 2 both to a second cancel and to a PAID invoice,
        # in words nobody documents: the invoice's own status says which.
        current = _receipt(
            await self._call("GET", f"{path}/detail", "detail"), receipt.invoice_number
        )
        if current.voided:
            return with_answer(receipt, current)
        if current.status == "PAID":
            raise CannotVoid(
                f"Maast: invoice {receipt.provider_id} ({receipt.invoice_number}) is PAID"
                " and cannot be cancelled",
                invoice_status=current.status,
                status=refused.status,
                code=refused.code,
                field_errors=refused.field_errors,
            )
        raise refused

    async def _call(
        self, method: str, path: str, operation: Operation, *, body: object = None
    ) -> object:
        return (await self._envelope(method, path, operation, body=body)).get("data")

    async def _envelope(
        self,
        method: str,
        path: str,
        operation: Operation,
        *,
        body: object = None,
        params: Mapping[str, str | int | list[str]] | None = None,
    ) -> JsonBody:
        payload = await self._answer(method, path, operation, body=body, params=params)
        return payload if isinstance(payload, Mapping) else {}


def _number_of(row: object) -> object:
    return row.get("invoice_number") if isinstance(row, Mapping) else None


def _more_pages(envelope: JsonBody, page: int, rows: int) -> bool:
    pages = envelope.get("totalPages")
    if isinstance(pages, int) and not isinstance(pages, bool):
        return page + 1 < pages
    return rows >= LOOKUP_PAGE_SIZE


def _id_key(value: object) -> tuple[int, str]:
    text = str(value)
    return (int(text), text) if text.isdigit() else (1 << 62, text)


__all__ = [
    "CURRENCY_CODES",
    "ERRORS",
    "MaastProvider",
    "basic_token",
    "error_for",
    "invoice_from_request",
    "invoice_problems",
    "receipt_from",
    "render_date",
    "request_from_invoice",
]
