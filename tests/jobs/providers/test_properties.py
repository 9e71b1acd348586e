"""Round-trip properties: for any invoice a provider can express, its body reads
back to the same invoice, survives the wire exactly, and carries our totals."""

from __future__ import annotations

import string
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from jobs.models import Invoice
from jobs.providers import maast, stax
from jobs.providers.json_body import dumps, loads

TEXT = st.text(alphabet=string.ascii_letters + string.digits + " -.,'#éü", max_size=24)
WORDS = TEXT.map(str.strip).filter(bool)
MONEY = st.decimals(min_value=0, max_value=999_999, places=2)


def optional(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | strategy


# --- Maast's domain ----------------------------------------------------------------------

ADDRESS = st.fixed_dictionaries(
    {},
    optional={k: WORDS for k in ("line1", "line2", "city", "state", "zip", "country")},
).filter(bool)
CONTACT = st.fixed_dictionaries(
    {},
    optional={
        "first_name": WORDS,
        "last_name": WORDS,
        "firm_name": WORDS,
        "email": WORDS,
        "phone": WORDS,
        "address": ADDRESS,
    },
)
MAAST_LINE = st.fixed_dictionaries(
    {
        "description": WORDS,
        "quantity": st.integers(1, 999).map(Decimal),
        "unit_price": MONEY,
    }
)
TAX = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["rate", "amount"]),
        "value": st.decimals(min_value=0, max_value=99, places=3),
    }
)
TERMS = st.one_of(
    st.builds(lambda d: {"kind": "days", "days": d}, st.integers(0, 3650)),
    st.builds(lambda d: {"kind": "date", "due_date": d}, st.dates()),
)
MILLIS = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)), None]),
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


@st.composite
def maast_invoices(draw: st.DrawFn) -> Invoice:
    customer = draw(CONTACT) | {"id": draw(st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True))}
    fields = {
        "number": draw(st.from_regex(r"[A-Za-z0-9_-]{1,25}", fullmatch=True)),
        "customer": customer,
        "lines": draw(st.lists(MAAST_LINE, min_size=1, max_size=4)),
        "currency": draw(st.sampled_from(sorted(maast.CURRENCY_CODES))),
        "tax": draw(optional(TAX)),
        "invoice_date": draw(optional(st.dates() | MILLIS)),
        "terms": draw(optional(TERMS)),
        "notes": {"footer": draw(optional(WORDS)), "terms": draw(optional(WORDS))},
        "payment": {k: draw(optional(st.booleans())) for k in ("partial", "ach", "email_receipt")},
        "maast": {
            "profile_id": draw(optional(st.from_regex(r"[0-9]{1,20}", fullmatch=True))),
            "from_contact": draw(optional(CONTACT)),
            "save_customer": draw(optional(st.booleans())),
        },
    }
    return Invoice.model_validate(fields)


@given(maast_invoices())
def test_maast_round_trip(invoice: Invoice) -> None:
    body = maast.request_from_invoice(invoice)
    assert loads(dumps(body)) == body  # the wire keeps every digit
    assert maast.invoice_from_request(body) == invoice
    assert maast.request_from_invoice(maast.invoice_from_request(body)) == body


# --- Stax's domain -------------------------------------------------------------------------

STAX_LINE = st.fixed_dictionaries(
    {
        "description": WORDS,
        "quantity": st.decimals(min_value=Decimal("0.01"), max_value=10_000, places=2),
        "unit_price": MONEY,
    },
    optional={"name": WORDS},
).filter(lambda line: line.get("name") != line["description"])
SECONDS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(microsecond=0)
)


@st.composite
def stax_invoices(draw: st.DrawFn) -> Invoice:
    fields = {
        "number": draw(st.from_regex(r"[A-Za-z0-9._/-]{1,64}", fullmatch=True)),
        "customer": {"id": draw(st.uuids()).hex},
        "lines": draw(st.lists(STAX_LINE, min_size=1, max_size=4)),
        "tax": draw(optional(st.builds(lambda v: {"kind": "amount", "value": v}, MONEY))),
        "invoice_date": draw(optional(st.dates() | SECONDS.filter(lambda d: d.time() != time(0)))),
        "terms": draw(optional(st.builds(lambda d: {"kind": "date", "due_date": d}, st.dates()))),
        "notes": {"memo": draw(optional(WORDS))},
        "payment": {k: draw(optional(st.booleans())) for k in ("partial", "ach", "card", "tips")},
        "send": draw(st.booleans()),
        "funding": draw(
            st.lists(st.fixed_dictionaries({"account_id": WORDS, "amount": MONEY.filter(bool)}))
        ),
    }
    invoice = Invoice.model_validate(fields)
    if invoice.tax is not None and not invoice.tax.value:
        invoice = invoice.model_copy(update={"tax": None})  # a zero tax is no tax
    return invoice


@given(stax_invoices())
def test_stax_round_trip_and_totals(invoice: Invoice) -> None:
    body = stax.request_from_invoice(invoice)
    assert loads(dumps(body)) == body
    totals = invoice.totals()
    meta = body["meta"]
    assert isinstance(meta, dict)
    assert (body["total"], meta["subtotal"], meta["tax"]) == (
        totals.total,
        totals.subtotal,
        totals.tax,
    )
    assert stax.invoice_from_request(body) == invoice
    assert stax.request_from_invoice(stax.invoice_from_request(body)) == body


@given(maast_invoices())
def test_stax_body_totals_for_any_tax(invoice: Invoice) -> None:
    # Rate taxes and DAYS terms are converted, not kept, but the money must agree.
    body = stax.request_from_invoice(invoice.model_copy(update={"currency": "USD"}))
    assert body["total"] == invoice.totals().total
    again = stax.invoice_from_request(body)
    assert again.totals() == invoice.totals()
