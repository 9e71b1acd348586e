"""jobs/providers/maast.py — speaks Maast's Platform invoice API; no retries, no Redis.

Owns the mapping between the neutral `Invoice` and Maast's create body (both
ways, exactly), the local checks of what Maast refuses, the table from
(HTTP status, body `code`) to `InvoiceError`, and the create / lookup / send
calls (PROVIDERS.md section 1). Maast succeeds only on HTTP 2xx with `code` 0.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final

import httpx2 as httpx

from jobs.errors import (
    ConfigurationError,
    FieldError,
    InvoiceConflict,
    InvoiceError,
    InvoiceInvalid,
    InvoiceRejected,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
)
from jobs.models import Contact, Invoice, InvoiceReceipt, Provider
from jobs.ports import PreparedRequest
from jobs.providers.base import (
    HttpProvider,
    JsonBody,
    Operation,
    Row,
    as_decimal,
    body_of,
    field_errors_from,
    lookup,
    make_error,
)

log = logging.getLogger(__name__)

CREATE_PATH: Final = "/platform/invoice"
LOOKUP_PAGE_SIZE: Final = 100
LOOKUP_MAX_PAGES: Final = 10

CURRENCY_CODES: Final[Mapping[str, str]] = {
    "USD": "840",
    "CAD": "124",
    "EUR": "978",
    "GBP": "826",
    "AUD": "036",
    "MXN": "484",
}
"""ISO 4217 alpha -> the numeric string Maast takes as `tran_currency`."""

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
    payload = body_of(response)
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
    if status == 404 and operation in ("detail", "send"):
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
    if not isinstance(data, Mapping) or data.get("invoice_id") in (None, ""):
        raise OutcomeUnknown("Maast: success without an invoice_id")
    status = str(data.get("status") or "SAVED")
    return InvoiceReceipt(
        provider=Provider.MAAST,
        provider_id=str(data["invoice_id"]),
        invoice_number=invoice.number,
        status=status,
        link=str(data["invoice_link"]) if data.get("invoice_link") else None,
        total=as_decimal(data.get("amt_tran")),
        sent=status != "SAVED",
    )


class MaastProvider(HttpProvider):
    """One Maast merchant account (implements `jobs.ports.InvoiceProvider`)."""

    provider = Provider.MAAST

    def _headers(self, *, redacted: bool = False) -> dict[str, str]:
        token = "***" if redacted else basic_token(self.config.api_key)
        return {
            "Authorization": f"Basic {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    def validate(self, invoice: Invoice) -> None:
        """Refuse locally what Maast would reject (all problems at once).

        Raises:
            InvoiceInvalid: one `FieldError` per problem.
        """
        problems = invoice_problems(invoice)
        if problems:
            raise InvoiceInvalid(
                f"invoice {invoice.number} is not valid for Maast", field_errors=tuple(problems)
            )

    def prepare_create(self, invoice: Invoice) -> PreparedRequest:
        """The exact create request, with the key shown as `Basic ***`."""
        return PreparedRequest(
            method="POST",
            url=self._url(CREATE_PATH),
            headers=self._headers(redacted=True),
            json=request_from_invoice(invoice),
        )

    async def create(self, invoice: Invoice) -> InvoiceReceipt:
        """Create a draft (status SAVED); Maast never sends on create."""
        self.validate(invoice)
        data = await self._call("POST", CREATE_PATH, "create", body=request_from_invoice(invoice))
        return receipt_from(data, invoice)

    async def find(self, invoice: Invoice) -> InvoiceReceipt | None:
        """The invoice with our number, or `None`; the lowest id if Maast holds several.

        Raises:
            InvoiceError: Maast could not answer, or the answer was inconclusive.
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
            # Match on our side too: the filter syntax is unverified (PROVIDERS 1.6).
            matches += [r for r in rows if _number_of(r) == invoice.number]
            if matches or not _more_pages(envelope, page, len(rows)):
                return _lowest(matches, invoice)
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
            # The send answer may carry no data (M-SEND); the link comes with the detail.
            return receipt_from(await self._call("GET", f"{path}/detail", "detail"), invoice)
        except InvoiceError:
            return receipt.model_copy(update={"status": "OUTSTANDING", "sent": True})

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
        response = await self._request(method, path, body=body, params=params)
        error = error_for(response, operation)
        if error is not None:
            raise error
        payload = body_of(response)
        return payload if isinstance(payload, Mapping) else {}


def _number_of(row: object) -> object:
    return row.get("invoice_number") if isinstance(row, Mapping) else None


def _more_pages(envelope: JsonBody, page: int, rows: int) -> bool:
    pages = envelope.get("totalPages")
    if isinstance(pages, int) and not isinstance(pages, bool):
        return page + 1 < pages
    return rows >= LOOKUP_PAGE_SIZE


def _lowest(matches: list[Mapping[str, object]], invoice: Invoice) -> InvoiceReceipt | None:
    if not matches:
        return None
    ordered = sorted(matches, key=lambda r: _id_key(r.get("invoice_id")))
    if len(ordered) > 1:
        ids = ", ".join(str(r.get("invoice_id")) for r in ordered)
        log.warning("maast holds %d invoices numbered %s: %s", len(ordered), invoice.number, ids)
    return receipt_from(ordered[0], invoice)


def _id_key(value: object) -> tuple[int, str]:
    text = str(value)
    return (int(text), text) if text.isdigit() else (1 << 62, text)


# --- the create body, both ways ------------------------------------------------

_CONTACT_KEYS: Final = (
    ("first_name", "first_name", 32),
    ("last_name", "last_name", 32),
    ("firm_name", "firm_name", 64),
    ("email", "email_address", 64),
    ("phone", "phone", 32),
)
_ADDRESS_KEYS: Final = (
    ("line1", "address1", 128),
    ("line2", "address2", 128),
    ("city", "city", 64),
    ("state", "state", 64),
    ("zip", "zip", 10),
    ("zip4", "zip4", 4),
    ("country_code", "country_code", 3),
    ("country", "country", 128),
)
"""(neutral name, Maast name, max length) of a Contact (PROVIDERS.md 1.6)."""

_BODY_KEYS: Final = frozenset(
    {
        "customer_id",
        "invoice_number",
        "save_customer",
        "from_contact",
        "billing_contact",
        "profile_id",
        "tran_currency",
        "date_invoice",
        "line_items",
        "sales_tax",
        "payment_terms",
        "checkout_settings",
        "footer_note",
        "payment_terms_note",
    }
)
_CHECKOUT_KEYS: Final = (
    ("partial", "allow_partial_payments"),
    ("email_receipt", "email_receipt"),
    ("ach", "allow_ach_payment"),
)


def request_from_invoice(invoice: Invoice) -> dict[str, object]:
    """Maast's create body for `invoice`; fields that are `None` are left out.

    Money stays `Decimal` (send it with `base.dumps`); quantities are ints when
    integral. `tran_currency` is always sent, so an account whose default
    profile bills in another currency cannot bill ours wrongly.
    """
    billing = _contact_body(invoice.customer)
    checkout = _present({m: getattr(invoice.payment, n) for n, m in _CHECKOUT_KEYS})
    extras = invoice.maast
    body: dict[str, object] = {
        "customer_id": invoice.customer.id,
        "invoice_number": invoice.number,
        "save_customer": extras.save_customer,
        "from_contact": _contact_body(extras.from_contact) if extras.from_contact else None,
        "billing_contact": billing or None,
        "profile_id": extras.profile_id,
        "tran_currency": CURRENCY_CODES.get(invoice.currency, invoice.currency),
        "date_invoice": render_date(invoice.invoice_date) if invoice.invoice_date else None,
        "line_items": [
            {"description": line.description, "quantity": _number(line.quantity)}
            | {"unit_cost": line.unit_price}
            for line in invoice.lines
        ],
        "sales_tax": (
            {"type": invoice.tax.kind.upper(), "value": invoice.tax.value} if invoice.tax else None
        ),
        "payment_terms": _terms_body(invoice),
        "checkout_settings": checkout or None,
        "footer_note": invoice.notes.footer,
        "payment_terms_note": invoice.notes.terms,
    }
    return _present(body)


def invoice_from_request(body: Mapping[str, object]) -> Invoice:
    """The neutral invoice a Maast create body describes (inverse of `request_from_invoice`).

    A body without `tran_currency` is taken as USD.

    Raises:
        ValueError: unknown fields or malformed parts (pydantic's `ValidationError`
            is a `ValueError` too).
    """
    unknown = sorted(set(body) - _BODY_KEYS)
    if unknown:
        raise ValueError(f"not Maast create fields: {', '.join(unknown)}")
    checkout = _mapping(body.get("checkout_settings"), "checkout_settings")
    fields: dict[str, object] = {
        "number": body.get("invoice_number"),
        "customer": {"id": body.get("customer_id")}
        | _contact_from(_mapping(body.get("billing_contact"), "billing_contact")),
        "lines": [_line_from(_mapping(item, "line_items[]")) for item in _items(body)],
        "currency": _currency_from(body.get("tran_currency")),
        "tax": _tax_from(body.get("sales_tax")),
        "invoice_date": body.get("date_invoice"),
        "terms": _terms_from(body.get("payment_terms")),
        "notes": {"footer": body.get("footer_note"), "terms": body.get("payment_terms_note")},
        "payment": {n: checkout.get(m) for n, m in _CHECKOUT_KEYS},
        "maast": {
            "profile_id": body.get("profile_id"),
            "save_customer": body.get("save_customer"),
            "from_contact": _from_contact(body.get("from_contact")),
        },
    }
    return Invoice.model_validate(_present(fields))


def invoice_problems(invoice: Invoice) -> list[FieldError]:
    """Every reason Maast would refuse `invoice` (PROVIDERS.md 1.6, 1.9)."""
    problems: list[FieldError] = []
    if not _INVOICE_NUMBER.match(invoice.number):
        problems.append(FieldError("number", "Maast takes 1-25 letters, digits, '-' or '_'"))
    if len(invoice.customer.id) > 32:
        problems.append(FieldError("customer.id", "Maast takes at most 32 characters"))
    if invoice.currency not in CURRENCY_CODES:
        known = ", ".join(CURRENCY_CODES)
        problems.append(FieldError("currency", f"unsupported currency (known: {known})"))
    if invoice.maast.profile_id and len(invoice.maast.profile_id) > 20:
        problems.append(FieldError("maast.profile_id", "Maast takes at most 20 characters"))
    if invoice.funding:
        problems.append(FieldError("funding", "Maast has no split funding"))
    problems += _line_problems(invoice)
    problems += _tax_problems(invoice)
    problems += _text_problems(invoice)
    return problems


_INVOICE_NUMBER = re.compile(r"^[A-Za-z0-9_-]{1,25}$")
_MAX_UNIT_COST = Decimal(10) ** 8  # "8,2": 8 digits before the point, 2 after
_MAX_TAX_VALUE = Decimal(10) ** 7  # "7,5"


def _line_problems(invoice: Invoice) -> list[FieldError]:
    problems: list[FieldError] = []
    for i, line in enumerate(invoice.lines):
        q = line.quantity
        if q != q.to_integral_value() or not 1 <= q <= 999:
            problems.append(FieldError(f"lines[{i}].quantity", "Maast takes a whole 1..999"))
        if line.unit_price >= _MAX_UNIT_COST:
            problems.append(FieldError(f"lines[{i}].unit_price", "over 8 digits before the point"))
    return problems


def _tax_problems(invoice: Invoice) -> list[FieldError]:
    if invoice.tax is None:
        return []
    value = invoice.tax.value
    exponent = value.as_tuple().exponent
    if value >= _MAX_TAX_VALUE or (isinstance(exponent, int) and exponent < -5):
        return [FieldError("tax.value", "Maast takes up to 7 digits and 5 decimals")]
    return []


def _text_problems(invoice: Invoice) -> list[FieldError]:
    problems = _too_long("notes.footer", invoice.notes.footer, 750)
    problems += _too_long("notes.terms", invoice.notes.terms, 500)
    problems += _contact_problems("customer", invoice.customer)
    if invoice.maast.from_contact is not None:
        problems += _contact_problems("maast.from_contact", invoice.maast.from_contact)
    if invoice.maast.save_customer and not invoice.customer.email:
        # Maast creates the vault customer from billing_contact, which needs an email.
        problems.append(FieldError("customer.email", "required when save_customer is set"))
    return problems


def _contact_problems(where: str, contact: Contact) -> list[FieldError]:
    problems: list[FieldError] = []
    for name, _, limit in _CONTACT_KEYS:
        problems += _too_long(f"{where}.{name}", getattr(contact, name), limit)
    if contact.address is not None:
        for name, _, limit in _ADDRESS_KEYS:
            problems += _too_long(f"{where}.address.{name}", getattr(contact.address, name), limit)
    return problems


def _too_long(where: str, value: str | None, limit: int) -> list[FieldError]:
    if value is not None and len(value) > limit:
        return [FieldError(where, f"Maast takes at most {limit} characters")]
    return []


def render_date(value: date | datetime) -> str:
    """Maast's date text: `YYYY-MM-DD`, or a timestamp as the guide sends one
    (`2025-01-01T00:00:00.000Z`; another offset as `+HH:MM`, none when naive)."""
    if not isinstance(value, datetime):
        return value.isoformat()
    text = value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}"
    offset = value.utcoffset()
    if offset is None:
        return text
    if offset == timedelta(0):
        return text + "Z"
    zone = value.strftime("%z")
    return f"{text}{zone[:3]}:{zone[3:5]}"


def _contact_body(contact: Contact) -> dict[str, object]:
    body = {maast: getattr(contact, name) for name, maast, _ in _CONTACT_KEYS}
    if contact.address is not None:
        body |= {maast: getattr(contact.address, name) for name, maast, _ in _ADDRESS_KEYS}
    return _present(body)


def _contact_from(body: Mapping[str, object]) -> dict[str, object]:
    fields: dict[str, object] = {name: body.get(maast) for name, maast, _ in _CONTACT_KEYS}
    address = _present({name: body.get(maast) for name, maast, _ in _ADDRESS_KEYS})
    known = {maast for _, maast, _ in _CONTACT_KEYS + _ADDRESS_KEYS}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"not Maast contact fields: {', '.join(unknown)}")
    return _present(fields | {"address": address or None})


def _from_contact(value: object) -> dict[str, object] | None:
    return None if value is None else _contact_from(_mapping(value, "from_contact"))


def _terms_body(invoice: Invoice) -> dict[str, object] | None:
    terms = invoice.terms
    if terms is None:
        return None
    if terms.kind == "days":
        return {"type": "DAYS", "value": str(terms.days)}
    return {"type": "DATE", "value": terms.due_date.isoformat() if terms.due_date else None}


def _terms_from(value: object) -> dict[str, object] | None:
    if value is None:
        return None
    terms = _mapping(value, "payment_terms")
    kind = str(terms.get("type", "DAYS")).upper()
    if kind == "DAYS":
        return {"kind": "days", "days": terms.get("value")}
    if kind == "DATE":
        return {"kind": "date", "due_date": terms.get("value")}
    raise ValueError(f"payment_terms.type {kind!r} is not DAYS or DATE")


def _tax_from(value: object) -> dict[str, object] | None:
    if value is None:
        return None
    tax = _mapping(value, "sales_tax")
    return {"kind": str(tax.get("type", "")).lower(), "value": tax.get("value")}


def _line_from(item: Mapping[str, object]) -> dict[str, object]:
    unknown = sorted(set(item) - {"description", "quantity", "unit_cost"})
    if unknown:
        raise ValueError(f"not Maast line item fields: {', '.join(unknown)}")
    return {
        "description": item.get("description"),
        "quantity": item.get("quantity"),
        "unit_price": item.get("unit_cost"),
    }


def _currency_from(value: object) -> str:
    if value is None:
        return "USD"
    for alpha, numeric in CURRENCY_CODES.items():
        if str(value) == numeric:
            return alpha
    raise ValueError(f"tran_currency {value!r} is not a currency invoicer knows")


def _items(body: Mapping[str, object]) -> list[object]:
    items = body.get("line_items")
    if not isinstance(items, list):
        raise ValueError("line_items must be a list")
    return items


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
