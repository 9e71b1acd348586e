"""Stax's invoice API, simulated: auth, create, list, get, send, delete, customers.

Implements what docs/providers.md says of Stax (docs/sandbox.md, What it
simulates): Bearer auth, Laravel 422 field errors, create
returning the full invoice (200, or 201 under a switch), no duplicate
detection, `keywords[]` search (matching `meta.reference` under a switch) and
Laravel pagination. Handlers never await (atomic on the event loop). Rate
limits, the 4xx block, faults and stats are app.py's.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from decimal import Decimal

from sandbox.routes import ID, Route
from sandbox.state import Call, Doc, Record
from sandbox.stax_rules import StaxDraft, check_create
from sandbox.wire import BadJson, Reply, encode, reply, stax_timestamp

MERCHANT_ID = "dd36b936-1eb7-4ece-bebc-b7a6d8f7a1c5"
USER_ID = "b58d7eee-e68d-4d12-a1f8-62f5e71382ae"
_SEND_PATHS = ((), ("email",), ("sms",))


def errors(status: int, fields: dict[str, list[str]]) -> Reply:
    """A Laravel field-keyed error body."""
    return reply(status, fields)


def authenticate(call: Call) -> Reply | None:
    """None when the Bearer key is known; else 401."""
    scheme, _, key = call.request.headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() == b"bearer" and key.decode("latin-1").strip() in call.config.stax_keys:
        return None
    if call.config.stax_unauthorized_body == "array":
        return reply(401, ["Unauthorized"])
    return reply(401, {"error": "Unauthorized"})


def stax_id(call: Call, kind: str, seq: int) -> str:
    """A deterministic UUID: the same requests after a reset give the same ids."""
    digest = hashlib.md5(f"stax:{kind}:{call.store.generation}:{seq}".encode()).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def create(call: Call) -> Reply:
    """POST /invoice: store a DRAFT (or SENT with send_now); duplicates allowed."""
    try:
        body = call.request.json_object()
    except BadJson as exc:
        return errors(422, {"body": [str(exc)]})
    draft = check_create(body)
    if "customer_id" not in draft.errors and not call.customer_exists(draft.customer_id):
        draft.refuse("customer_id", "The selected customer id is invalid.")
    if draft.errors:
        return errors(422, draft.errors)
    invoice_id = stax_id(call, "invoice", len(call.store.invoices) + 1)
    doc = _invoice_doc(call, draft, body, invoice_id)
    record = call.store.add(invoice_id, doc, draft.reference)
    return Reply(call.config.stax_create_status, record.json(), committed=True, key=record.key)


def _invoice_doc(call: Call, draft: StaxDraft, body: dict[str, object], invoice_id: str) -> Doc:
    now = stax_timestamp(call.now_s)
    return {
        "id": invoice_id,
        "merchant_id": MERCHANT_ID,
        "user_id": USER_ID,
        "customer_id": draft.customer_id,
        "total": draft.total,
        "meta": draft.meta,
        "status": "SENT" if draft.send_now else "DRAFT",
        "sent_at": now if draft.send_now else None,
        "viewed_at": None,
        "paid_at": None,
        "due_at": body.get("due_at"),
        "invoice_date_at": body.get("invoice_date_at") or now,
        "deleted_at": None,
        "created_at": now,
        "updated_at": now,
        "schedule_id": None,
        "reminder_id": None,
        "payment_method_id": None,
        "url": draft.url,
        "is_webpayment": False,
        "is_partial_payment_enabled": body.get("is_partial_payment_enabled") is True,
        "payment_attempt_failed": False,
        "payment_attempt_message": "",
        "balance_due": draft.total,
        "total_paid": Decimal(0),
        "payment_meta": [],
        "customer": _customer(call, draft.customer_id),
        "user": {"id": USER_ID, "name": "Sandbox User"},
        "files": [],
        "child_transactions": [],
        "reminder": None,
    }


def _customer(call: Call, customer_id: str) -> Doc:
    saved = call.store.customers.get(customer_id)
    if saved is not None:
        return saved
    return {"id": customer_id, "firstname": "", "lastname": "", "company": "", "email": ""}


def _record(call: Call) -> Record | None:
    return call.store.invoices.get(call.ident)


def get(call: Call) -> Reply:
    """GET /invoice/{id}; unknown: 422 {"id":["The selected id is invalid."]}."""
    record = _record(call)
    if record is None:
        return errors(422, {"id": ["The selected id is invalid."]})
    return Reply(200, record.json(), key=record.key)


def send(call: Call) -> Reply:
    """PUT /invoice/{id}/send[/email|/sms]: status SENT, sent_at now; resend allowed."""
    record = _record(call)
    if record is None:
        return errors(400, {"id": ["Invoice could not be found"]})
    if record.doc.get("deleted_at") is not None:
        return errors(422, {"deleted_at": ["The invoice is deleted."]})
    if call.config.stax_reject_draft_sends and record.doc.get("status") == "DRAFT":
        return errors(422, {"status": ["Draft invoices cannot be sent."]})
    try:
        body = call.request.json_object()
    except BadJson as exc:
        return errors(422, {"body": [str(exc)]})
    call.store.recipients.setdefault(call.ident, []).append(
        {"ccEmails": body.get("ccEmails"), "ccPhones": body.get("ccPhones")}
    )
    now = stax_timestamp(call.now_s)
    record.update(status="SENT", sent_at=now, updated_at=now)
    return Reply(200, record.json(), committed=True, key=record.key)


def delete(call: Call) -> Reply:
    """DELETE /invoice/{id}: status DELETED, deleted_at set; twice: 422.

    A deleted invoice stays in listings and lookups with its status; sending
    it is refused. Deleting a PAID invoice is refused with 422 (not
    documented; a conservative guess, so clients meet the refusal in tests).
    """
    record = _record(call)
    if record is None:
        return errors(422, {"id": ["The selected id is invalid."]})
    if record.doc.get("deleted_at") is not None:
        return errors(422, {"deleted_at": ["The invoice is already deleted."]})
    if record.doc.get("status") == "PAID":
        return errors(422, {"status": ["A paid invoice cannot be deleted."]})
    now = stax_timestamp(call.now_s)
    record.update(status="DELETED", deleted_at=now, updated_at=now)
    return Reply(200, record.json(), committed=True, key=record.key)


def voided(doc: Doc) -> bool:
    """Whether the invoice was deleted."""
    return doc.get("deleted_at") is not None


def sent(doc: Doc) -> bool:
    """Whether the invoice reached the customer (sent at create or later)."""
    return doc.get("sent_at") is not None


def pay(record: Record, now_s: float) -> None:
    """The customer pays the invoice in full (the sandbox's stand-in for a payment)."""
    now = stax_timestamp(now_s)
    record.update(
        status="PAID",
        paid_at=now,
        updated_at=now,
        balance_due=Decimal(0),
        total_paid=record.doc.get("total"),
    )


def add_customer(call: Call) -> Reply:
    """POST /customer: needs one of firstname, lastname, email, company."""
    try:
        body = call.request.json_object()
    except BadJson as exc:
        return errors(422, {"body": [str(exc)]})
    if not any(body.get(k) for k in ("firstname", "lastname", "email", "company")):
        message = (
            "The firstname field is required when none of lastname / email / company are present."
        )
        return errors(422, {"firstname": [message]})
    customer_id = stax_id(call, "customer", len(call.store.customers) + 1)
    now = stax_timestamp(call.now_s)
    doc: Doc = {"firstname": "", "lastname": "", "company": "", "email": ""}
    doc.update(body)
    doc.update(id=customer_id, created_at=now, updated_at=now, deleted_at=None)
    call.store.customers[customer_id] = doc
    return reply(200, doc)


def browse(call: Call) -> Reply:
    """GET /invoice: keywords[] and filters, Laravel pagination (created_at DESC)."""
    params = call.request.params()
    keywords = [v.lower() for k, v in params if k in ("keywords[]", "keywords") and v]
    exact = {k: v for k, v in params if k in ("id", "customer_id", "status")}
    page = _positive(params, "page", 1)
    per_page = min(_positive(params, "per_page", 25), 1000)
    matching = [
        r
        for r in call.store.invoices.values()
        if _exact(r, exact) and all(_mentions(call, r, k) for k in keywords)
    ]
    ascending = any(k == "order" and v.upper() == "ASC" for k, v in params)
    if not ascending:
        matching.reverse()
    chosen = matching[(page - 1) * per_page : page * per_page]
    return Reply(200, _page(call, chosen, len(matching), page, per_page))


def _positive(params: list[tuple[str, str]], name: str, default: int) -> int:
    for key, value in params:
        if key == name and value.isdigit() and int(value) > 0:
            return int(value)
    return default


def _exact(record: Record, wanted: dict[str, str]) -> bool:
    return all(str(record.doc.get(k)) == v for k, v in wanted.items())


def _mentions(call: Call, record: Record, keyword: str) -> bool:
    # keywords[] searches customer name, invoice id and status ([Stax Get All
    # Invoices] in docs/providers.md), and meta.reference under a switch: whether
    # Stax does is open question Q8 there.
    doc = record.doc
    customer = doc.get("customer")
    fields = [str(doc.get("id")), str(doc.get("status"))]
    if isinstance(customer, dict):
        first, last = str(customer.get("firstname") or ""), str(customer.get("lastname") or "")
        fields += [first, last, f"{first} {last}", str(customer.get("company") or "")]
    if call.config.stax_keywords_match_reference and record.key is not None:
        fields.append(record.key)
    return any(keyword in f.lower() for f in fields)


def _page(call: Call, records: list[Record], total: int, page: int, per_page: int) -> bytes:
    host = call.request.headers.get(b"host", b"localhost").decode("latin-1")
    path = f"http://{host}/invoice"
    last = max(1, math.ceil(total / per_page))
    first_index = (page - 1) * per_page + 1

    def url(n: int) -> str | None:
        return f"{path}?page={n}" if 1 <= n <= last else None

    head = {
        "total": total,
        "per_page": per_page,
        "current_page": page,
        "last_page": last,
        "first_page_url": url(1),
        "last_page_url": url(last),
        "next_page_url": url(page + 1),
        "prev_page_url": url(page - 1),
        "path": path,
        "from": first_index if records else None,
        "to": first_index + len(records) - 1 if records else None,
    }
    return encode(head)[:-1] + b',"data":[' + b",".join(r.json() for r in records) + b"]}"


ROUTES = (
    Route("POST", ("invoice",), create, "create"),
    Route("GET", ("invoice",), browse, "lookup"),
    Route("GET", ("invoice", ID), get, "lookup"),
    *(Route("PUT", ("invoice", ID, "send", *tail), send, "send") for tail in _SEND_PATHS),
    Route("DELETE", ("invoice", ID), delete, "void"),
    Route("POST", ("customer",), add_customer),
)
