"""Money arithmetic: the one place totals are computed.

Both providers take dollars as JSON numbers with two decimal places
(docs/providers.md, "Money" under Maast and under Stax); that they round
half-up to cents, as this module does, is assumed (open question Q6 there).
Every total the product shows, sends or compares is computed here, from
`Decimal`, never from a float.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def to_cents(amount: Decimal) -> Decimal:
    """Round `amount` to two places, half-up, as the providers do."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Totals:
    """An invoice's amounts, each already rounded to cents."""

    subtotal: Decimal
    tax: Decimal
    total: Decimal


def line_total(quantity: Decimal, unit_price: Decimal) -> Decimal:
    """One line's amount, unrounded: rounding happens once, on the sum."""
    return quantity * unit_price


def compute_totals(
    lines: Iterable[tuple[Decimal, Decimal]],
    *,
    tax_rate_percent: Decimal | None = None,
    tax_amount: Decimal | None = None,
) -> Totals:
    """Subtotal, tax and total for `(quantity, unit_price)` pairs.

    Maast's rule: subtotal = sum of quantity x unit cost; a RATE tax is a
    percentage of the subtotal; an AMOUNT tax is taken as given; total =
    subtotal + tax. Each figure is rounded to cents half-up (the rate and the
    rounding are assumed: docs/providers.md, Q6).
    """
    subtotal = to_cents(sum((line_total(q, p) for q, p in lines), ZERO))
    if tax_rate_percent is not None:
        tax = to_cents(subtotal * tax_rate_percent / Decimal(100))
    elif tax_amount is not None:
        tax = to_cents(tax_amount)
    else:
        tax = ZERO
    return Totals(subtotal=subtotal, tax=tax, total=subtotal + tax)
