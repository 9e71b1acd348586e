"""Write a month-end invoice CSV: deterministic (seeded), any size, a few deliberate errors.

`python samples/make_month_end.py` rewrites samples/month-end.csv (1,000
invoices, 6 invalid). For benchmarks: `--count 100000 --out /tmp/x.csv
--invalid 0`. The same arguments always give the same bytes. The columns are
those of docs/input-formats.md; every valid invoice is valid for Maast and
Stax alike (USD, numbers <= 25 characters, customer ids CUST0001..CUST0250,
integer quantities 1..999, prices with 2 decimals). This script uses only the
standard library, so it runs without the project installed.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

HEADER = (
    "invoice_number",
    "customer_id",
    "customer_first_name",
    "customer_last_name",
    "customer_firm_name",
    "customer_email",
    "customer_phone",
    "customer_address1",
    "customer_city",
    "customer_state",
    "customer_zip",
    "customer_country_code",
    "currency",
    "invoice_date",
    "terms_days",
    "due_date",
    "tax_rate",
    "memo",
    "footer_note",
    "allow_ach",
    "allow_card",
    "send",
    "item_name",
    "description",
    "quantity",
    "unit_price",
)
CUSTOMER_COUNT = 250
"""Customers CUST0001..CUST0250; the sandbox seeds exactly these."""
INVOICE_DATE = "2025-01-31"
INVALID_KINDS = (
    "negative_quantity",
    "missing_customer",
    "formula",
    "bad_date",
    "disagreeing_customer",
    "bad_price",
)
"""The deliberate errors, in the order `--invalid N` applies them."""

_FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jon", "Kemi")
_LAST = ("Abbott", "Brooks", "Castro", "Dubois", "Evans", "Fischer", "Garcia", "Hughes", "Ito")
_FIRMS = ("Acme Supply", "Blue Harbor", "Cedar & Co", "Delta Print", "Evergreen Labs", "Fig Cafe")
_PLACES = (
    ("San Mateo", "CA", "94404"),
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("Portland", "OR", "97204"),
    ("Raleigh", "NC", "27601"),
)
_STREETS = ("Main St", "Oak Ave", "4th Avenue", "Market St", "Pine Rd")
_PRODUCTS = (
    ("Paper", "Copy paper, A4, box of 5 reams", 2199, 4599),
    ("Toner", "Toner cartridge, black", 4900, 12900),
    ("Pencils", "Pencils HB, pack of 12", 149, 899),
    ("Support", "Support hours", 6000, 15000),
    ("Delivery", "Delivery and handling", 500, 3500),
    ("Chairs", "Office chair, ergonomic", 12900, 39900),
    ("Coffee", "Coffee beans, 1 kg", 1450, 3200),
    ("Licence", "Software licence, monthly", 900, 9900),
)
_TAX_RATES = ("8.25", "7.5", "6", "9.125")


@dataclass(frozen=True)
class Customer:
    """One billed customer; the same id always has the same details."""

    id: str
    first_name: str
    last_name: str
    firm: str
    email: str
    phone: str
    address1: str
    city: str
    state: str
    zip: str


def make_customers(rng: random.Random) -> list[Customer]:
    """The fixed customer table (drawn first, so it does not depend on --count)."""
    customers = []
    for n in range(1, CUSTOMER_COUNT + 1):
        first, last, firm = rng.choice(_FIRST), rng.choice(_LAST), rng.choice(_FIRMS)
        city, state, zip_code = rng.choice(_PLACES)
        slug = "".join(ch for ch in firm.lower() if ch.isalnum())
        customers.append(
            Customer(
                id=f"CUST{n:04d}",
                first_name=first,
                last_name=last,
                firm=firm,
                email=f"{first}.{last}.{n}@{slug}.example".lower(),
                phone=f"555{rng.randint(0, 9_999_999):07d}",
                address1=f"{rng.randint(1, 9999)} {rng.choice(_STREETS)}",
                city=city,
                state=state,
                zip=zip_code,
            )
        )
    return customers


def invalid_positions(count: int, invalid: int) -> dict[int, str]:
    """Invoice index -> error kind, spread evenly through the file."""
    invalid = min(invalid, count)
    return {
        (k + 1) * count // (invalid + 1): INVALID_KINDS[k % len(INVALID_KINDS)]
        for k in range(invalid)
    }


def invoice_rows(
    index: int, width: int, customer: Customer, rng: random.Random, kind: str | None
) -> list[list[str]]:
    """The CSV rows of invoice `index` (one per line item), with error `kind` if any."""
    line_count = rng.choices((1, 2, 3, 4), weights=(50, 25, 15, 10))[0]
    if kind == "disagreeing_customer":
        line_count = max(line_count, 2)
    head = _invoice_cells(index, width, customer, rng)
    rows = [head + _line_cells(rng) for _ in range(line_count)]
    _spoil(rows, kind)
    return rows


def _invoice_cells(index: int, width: int, c: Customer, rng: random.Random) -> list[str]:
    by_days = rng.random() < 0.8
    terms_days = rng.choice(("15", "30", "30", "45")) if by_days else ""
    due_date = "" if by_days else rng.choice(("2025-02-28", "2025-03-15"))
    tax_rate = rng.choice(_TAX_RATES) if rng.random() < 0.3 else ""
    memo = "Thank you for your business!" if rng.random() < 0.5 else ""
    footer = "Questions? billing@invoicer.example" if rng.random() < 0.3 else ""
    allow_ach = rng.choice(("yes", "no"))
    return [
        f"INV-2501-{index:0{width}d}",
        c.id,
        c.first_name,
        c.last_name,
        c.firm,
        c.email,
        c.phone,
        c.address1,
        c.city,
        c.state,
        c.zip,
        "840",
        "USD",
        INVOICE_DATE,
        terms_days,
        due_date,
        tax_rate,
        memo,
        footer,
        allow_ach,
        "yes",
        "no",
    ]


def _line_cells(rng: random.Random) -> list[str]:
    name, description, low_cents, high_cents = rng.choice(_PRODUCTS)
    quantity = rng.choice((1, 1, 1, 2, 3, 5, 10, 12, 24)) if rng.random() < 0.95 else 999
    cents = rng.randint(low_cents, high_cents)
    return [name, description, str(quantity), f"{cents // 100}.{cents % 100:02d}"]


def _spoil(rows: list[list[str]], kind: str | None) -> None:
    column = {name: i for i, name in enumerate(HEADER)}
    if kind == "negative_quantity":
        rows[-1][column["quantity"]] = "-3"
    elif kind == "missing_customer":
        for row in rows:
            row[column["customer_id"]] = ""
    elif kind == "formula":
        rows[0][column["description"]] = '=HYPERLINK("https://pay.example.invalid","Pay here")'
    elif kind == "bad_date":
        for row in rows:
            row[column["invoice_date"]] = "2025-02-30"
    elif kind == "disagreeing_customer":
        rows[1][column["customer_id"]] = "CUST9999"
    elif kind == "bad_price":
        rows[0][column["unit_price"]] = "12.345"


def generate(count: int, invalid: int, seed: int) -> Iterator[list[str]]:
    """Every CSV row, header first, streamed (memory stays flat for any --count)."""
    rng = random.Random(seed)
    customers = make_customers(rng)
    spoiled = invalid_positions(count, invalid)
    width = max(5, len(str(count)))
    yield list(HEADER)
    for index in range(1, count + 1):
        customer = customers[(index - 1) % CUSTOMER_COUNT]
        yield from invoice_rows(index, width, customer, rng, spoiled.get(index))


def write(out: TextIO, count: int, invalid: int, seed: int) -> None:
    """Write the CSV to an open text stream (opened with newline="")."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(generate(count, invalid, seed))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="invoices to write (1000)")
    parser.add_argument("--out", default=str(here / "month-end.csv"), help="path, or - for stdout")
    parser.add_argument("--invalid", type=int, default=len(INVALID_KINDS), help="invalid ones (6)")
    parser.add_argument("--seed", type=int, default=20250131, help="random seed (20250131)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.invalid < 0:
        parser.error("--count must be >= 1 and --invalid >= 0")
    if args.out == "-":
        write(sys.stdout, args.count, args.invalid, args.seed)
    else:
        with open(args.out, "w", encoding="utf-8", newline="") as out:
            write(out, args.count, args.invalid, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
