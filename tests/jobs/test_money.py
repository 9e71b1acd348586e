"""Money: totals are rounded sums of Decimals, half-up to cents, never floats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.money import ZERO, compute_totals, line_total, to_cents

quantities = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10_000), places=3)
prices = st.decimals(min_value=Decimal(0), max_value=Decimal(100_000), places=2)
rates = st.decimals(min_value=Decimal(0), max_value=Decimal(100), places=4)
lines = st.lists(st.tuples(quantities, prices), min_size=1, max_size=8)


def is_cents(value: Decimal) -> bool:
    return isinstance(value, Decimal) and value.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("amount", "cents"),
    [
        ("0.005", "0.01"),
        ("0.004", "0.00"),
        ("1.015", "1.02"),
        ("2.675", "2.68"),  # 2.675 as a float is 2.67499...: this must not be a float
        ("-0.005", "-0.01"),
        ("7", "7.00"),
    ],
)
def test_to_cents_rounds_half_up(amount: str, cents: str) -> None:
    assert to_cents(Decimal(amount)) == Decimal(cents)
    assert is_cents(to_cents(Decimal(amount)))


def test_worked_example_with_a_rate() -> None:
    # 3 x 19.99 = 59.97; 8.25% of it is 4.947525 -> 4.95
    totals = compute_totals([(Decimal(3), Decimal("19.99"))], tax_rate_percent=Decimal("8.25"))
    assert (totals.subtotal, totals.tax, totals.total) == (
        Decimal("59.97"),
        Decimal("4.95"),
        Decimal("64.92"),
    )


def test_rounding_happens_once_on_the_sum() -> None:
    # Each line is 0.005: rounded per line the subtotal would be 0.03.
    third = (Decimal("0.5"), Decimal("0.01"))
    assert compute_totals([third, third, third]).subtotal == Decimal("0.02")


def test_no_tax_is_zero() -> None:
    totals = compute_totals([(Decimal(1), Decimal("5.00"))])
    assert totals.tax == ZERO and totals.total == Decimal("5.00")


@given(lines=lines, rate=rates)
def test_rate_totals_are_rounded_subtotal_plus_rounded_tax(
    lines: list[tuple[Decimal, Decimal]], rate: Decimal
) -> None:
    totals = compute_totals(lines, tax_rate_percent=rate)
    exact = sum((q * p for q, p in lines), Decimal(0))
    subtotal = exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    tax = (subtotal * rate / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert totals.subtotal == subtotal
    assert totals.tax == tax
    assert totals.total == subtotal + tax
    assert all(is_cents(v) for v in (totals.subtotal, totals.tax, totals.total))
    assert abs(totals.subtotal - exact) <= Decimal("0.005")


@given(lines=lines, amount=st.decimals(min_value=Decimal(0), max_value=Decimal(10_000), places=4))
def test_amount_tax_is_taken_as_given_rounded(
    lines: list[tuple[Decimal, Decimal]], amount: Decimal
) -> None:
    totals = compute_totals(lines, tax_amount=amount)
    assert totals.tax == to_cents(amount)
    assert totals.total == totals.subtotal + totals.tax
    assert is_cents(totals.total)


@given(quantity=quantities, price=prices)
def test_line_total_is_exact(quantity: Decimal, price: Decimal) -> None:
    assert line_total(quantity, price) == quantity * price
    assert isinstance(line_total(quantity, price), Decimal)


@given(lines=lines)
def test_totals_do_not_depend_on_line_order(lines: list[tuple[Decimal, Decimal]]) -> None:
    assert compute_totals(lines) == compute_totals(list(reversed(lines)))
