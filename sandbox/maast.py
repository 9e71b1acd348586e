"""Maast's Platform API, simulated: auth, invoices, send, customer vault.

Implements what docs/providers.md says of Maast (docs/sandbox.md, What it
simulates): the `{code, message, data}` envelope, Basic auth
with the key as password, code-2 validation errors with `data` a list of
`{field, message}`, totals via `jobs.money.compute_totals`. Handlers are
synchronous and never await, so a check and the store that follows it are
one atomic step on the event loop. No faults, limits or stats here (app.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from datetime import date, timedelta
from decimal import Decimal

from jobs.money import compute_totals
from sandbox.maast_list import page_count, parse_query, run_query
from sandbox.maast_rules import MaastDraft, Problem, check_create
from sandbox.routes import ID, Route
from sandbox.state import Call, Doc, Record
from sandbox.wire import BadJson, Reply, encode, maast_timestamp, reply

MERCHANT_ID = 212000000001
LINK_BASE = "https://app.maast.com/checkout/invoice/"
_SUCCESS = b'{"code":0,"message":"Success","data":'


def failure(status: int, code: int, message: str, data: object = None) -> Reply:
    """A Maast error envelope."""
    return reply(status, {"code": code, "message": message, "data": data})


def invalid(problems: list[Problem]) -> Reply:
    """HTTP 400 code 2 listing the failing fields."""
    message = "; ".join(p.message for p in problems)[:500]
    data = [{"field": p.field, "message": p.message} for p in problems]
    return failure(400, 2, message, data)


def not_found() -> Reply:
    """HTTP 404 code 7: the service or resource does not exist."""
    return failure(404, 7, "The requested resource does not exist")


def success(record: Record, *, committed: bool = False) -> Reply:
    """HTTP 200 code 0 with one invoice."""
    body = _SUCCESS + record.json() + b"}"
    return Reply(200, body, committed=committed, key=record.key)


def authenticate(call: Call) -> Reply | None:
    """None when the Basic credentials carry a good key; else the 401/403 reply."""
    key = _basic_key(call)
    if key is not None and key in call.config.maast_forbidden_keys:
        return failure(403, 6, "Forbidden: this API key has no access to this resource")
    if key is None or key not in call.config.maast_keys:
        return failure(401, 11, "Unauthorized: missing or invalid credentials")
    return None


def _basic_key(call: Call) -> str | None:
    scheme, _, token = call.request.headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep:
        return None
    if not user:
        return password
    return user if call.config.maast_key_as_username and not password else None


def create(call: Call) -> Reply:
    """POST /platform/invoice: validate, then store a SAVED draft with Maast's totals."""
    try:
        body = call.request.json_object()
    except BadJson as exc:
        return invalid([Problem("body", str(exc))])
    draft = check_create(body)
    _check_against_state(call, draft)
    if draft.problems:
        return invalid(draft.problems)
    if draft.save_customer:
        call.store.customers[draft.customer_id] = _saved_customer(draft, body)
    invoice_id = len(call.store.invoices) + 1
    doc = _invoice_doc(call, draft, body, invoice_id)
    record = call.store.add(str(invoice_id), doc, draft.invoice_number)
    return success(record, committed=True)


def _check_against_state(call: Call, draft: MaastDraft) -> None:
    if draft.problems:
        return
    if not draft.save_customer and not call.customer_exists(draft.customer_id):
        draft.refuse("customer_id", "does not exist in the customer vault")
    taken = draft.invoice_number in call.store.by_key
    if taken and call.config.maast_reject_duplicate_numbers:
        draft.refuse("invoice_number", "already exists")


def _saved_customer(draft: MaastDraft, body: dict[str, object]) -> Doc:
    contact = body.get("billing_contact")
    doc: Doc = {"customer_id": draft.customer_id, "node_id": MERCHANT_ID}
    if isinstance(contact, dict):
        doc["customer_first_name"] = contact.get("first_name")
        doc["customer_last_name"] = contact.get("last_name")
        doc["customer_email"] = contact.get("email_address")
    return doc


def _invoice_doc(call: Call, draft: MaastDraft, body: dict[str, object], invoice_id: int) -> Doc:
    totals = compute_totals(
        draft.lines,
        tax_rate_percent=draft.tax_value if draft.tax_kind == "RATE" else None,
        tax_amount=draft.tax_value if draft.tax_kind == "AMOUNT" else None,
    )
    today = time.strftime("%Y-%m-%d", time.gmtime(call.now_s))
    invoice_date = draft.invoice_date or date.fromisoformat(today)
    echoed = {k: v for k, v in body.items() if k not in ("save_customer", "merchant_id")}
    return {
        **echoed,
        "invoice_id": invoice_id,
        "merchant_id": MERCHANT_ID,
        "status": "SAVED",
        "amt_sub_total": totals.subtotal,
        "amt_tax": totals.tax,
        "amt_tran": totals.total,
        "amt_paid": Decimal("0.00"),
        "amt_balance": totals.total,
        "tran_currency": body.get("tran_currency", "840"),
        "date_invoice": body.get("date_invoice", today),
        "date_due": _due_date(draft, invoice_date).isoformat(),
        "date_sent": None,
        "invoice_link": None,
        "db_timestamp": maast_timestamp(call.now_s),
    }


def _due_date(draft: MaastDraft, invoice_date: date) -> date:
    if draft.terms_value is None:
        return invoice_date
    if draft.terms_kind == "DATE":
        return date.fromisoformat(draft.terms_value[:10])
    return invoice_date + timedelta(days=int(draft.terms_value))


def _record(call: Call) -> Record | Reply:
    record = call.store.invoices.get(call.ident)
    if record is not None:
        return record
    if call.config.maast_unknown_invoice_status == 400:
        return invalid([Problem("invoice_id", f"invoice_id {call.ident} is invalid")])
    return failure(404, 7, f"Invoice {call.ident} not found")


def detail(call: Call) -> Reply:
    """GET /platform/invoice/{id}/detail."""
    found = _record(call)
    return found if isinstance(found, Reply) else success(found)


def send(call: Call) -> Reply:
    """POST /platform/invoice/{id}/send: SAVED -> OUTSTANDING, with date_sent and link."""
    found = _record(call)
    if isinstance(found, Reply):
        return found
    status = found.doc.get("status")
    if status != "SAVED":
        return invalid([Problem("status", f"status is {status}; only a SAVED invoice can be sent")])
    try:
        body = call.request.json_object()
    except BadJson as exc:
        return invalid([Problem("body", str(exc))])
    call.store.recipients.setdefault(call.ident, []).append(
        {"email_address": body.get("email_address"), "phone_number": body.get("phone_number")}
    )
    link = LINK_BASE + hashlib.md5(f"maast:{call.ident}".encode()).hexdigest()
    today = time.strftime("%Y-%m-%d", time.gmtime(call.now_s))
    found.update(status="OUTSTANDING", date_sent=today, invoice_link=link)
    return success(found, committed=True)


def resend(call: Call) -> Reply:
    """POST /platform/invoice/{id}/resend: only OUTSTANDING or PAID invoices."""
    found = _record(call)
    if isinstance(found, Reply):
        return found
    if found.doc.get("status") not in ("OUTSTANDING", "PAID"):
        return invalid([Problem("status", "only an OUTSTANDING or PAID invoice can be resent")])
    return reply(200, {"code": 0, "message": "Success"}, key=found.key)


def cancel(call: Call) -> Reply:
    """DELETE /platform/invoice/{id}/cancel: anything but PAID becomes CANCELED.

    A CANCELED invoice is locked for good (docs/providers.md): cancelling it
    again, sending or resending it gives 400 code 2. It stays in listings and
    lookups with its status.
    """
    found = _record(call)
    if isinstance(found, Reply):
        return found
    if found.doc.get("status") in ("PAID", "CANCELED"):
        return invalid(
            [Problem("status", f"a {found.doc.get('status')} invoice cannot be canceled")]
        )
    found.update(status="CANCELED")
    return success(found, committed=True)


def voided(doc: Doc) -> bool:
    """Whether the invoice was cancelled."""
    return doc.get("status") == "CANCELED"


def sent(doc: Doc) -> bool:
    """Whether the invoice reached the customer (sent at least once)."""
    return doc.get("date_sent") is not None


def pay(record: Record, now_s: float) -> None:
    """The customer pays the invoice in full (the sandbox's stand-in for a payment)."""
    today = time.strftime("%Y-%m-%d", time.gmtime(now_s))
    record.update(
        status="PAID",
        amt_paid=record.doc.get("amt_tran"),
        amt_balance=Decimal("0.00"),
        date_payment=today,
    )


def add_customer(call: Call) -> Reply:
    """POST /platform/vault/customer: a customer with an id and a name or firm."""
    try:
        body = call.request.json_object()
    except BadJson as exc:
        return invalid([Problem("body", str(exc))])
    customer_id = body.get("customer_id")
    if body.get("auto_generate_customer_id") is True:
        customer_id = f"CUST{len(call.store.customers) + 1:06d}"
    problems = _customer_problems(call, customer_id, body)
    if problems:
        return invalid(problems)
    doc: Doc = {**body, "customer_id": customer_id, "node_id": MERCHANT_ID}
    doc.pop("auto_generate_customer_id", None)
    call.store.customers[str(customer_id)] = doc
    return reply(200, {"code": 0, "message": "Success", "data": doc})


def _customer_problems(call: Call, customer_id: object, body: dict[str, object]) -> list[Problem]:
    problems: list[Problem] = []
    if not isinstance(customer_id, str) or not customer_id or len(customer_id) > 32:
        problems.append(Problem("customer_id", "customer_id is required (at most 32 characters)"))
    elif customer_id in call.store.customers:
        problems.append(Problem("customer_id", "customer_id already exists"))
    named = body.get("customer_first_name") and body.get("customer_last_name")
    if not named and not body.get("customer_firm_name"):
        problems.append(
            Problem("customer_first_name", "customer first and last name, or firm name, required")
        )
    return problems


def browse(call: Call) -> Reply:
    """GET /platform/invoice: count/page/order_on/order_by/filter (see maast_list)."""
    query = parse_query(call.request.params())
    if isinstance(query, list):
        return invalid(query)
    records, total = run_query(call.store, query)
    head = {"code": 0, "message": "Success", "totalRecords": total}
    head["totalPages"] = page_count(total, query.count)
    body = encode(head)[:-1] + b',"data":[' + b",".join(r.json() for r in records) + b"]}"
    return Reply(200, body)


ROUTES = (
    Route("POST", ("invoice",), create, "create"),
    Route("GET", ("invoice",), browse, "lookup"),
    Route("GET", ("invoice", ID, "detail"), detail, "lookup"),
    Route("POST", ("invoice", ID, "send"), send, "send"),
    Route("POST", ("invoice", ID, "resend"), resend),
    Route("DELETE", ("invoice", ID, "cancel"), cancel, "void"),
    Route("POST", ("vault", "customer"), add_customer),
)
