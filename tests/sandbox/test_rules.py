"""Pure parts of the sandbox, without a server: JSON, limits, fault draws, rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandbox.config import Faults, FaultSpec
from sandbox.faults import FaultInjector
from sandbox.limits import IpLimiter
from sandbox.maast_rules import check_create
from sandbox.wire import encode


def test_encode_keeps_decimal_digits() -> None:
    assert encode({"a": Decimal("10.10"), "b": [Decimal("0.1")], "c": "x"}) == (
        b'{"a":10.10,"b":[0.1],"c":"x"}'
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_window_and_block() -> None:
    clock = Clock()
    limiter = IpLimiter(limit=2, failed_limit=1, window_s=60, block_s=10, clock=clock)
    assert limiter.admit("a") is None and limiter.admit("a") is None
    assert limiter.admit("a") == pytest.approx(60)
    assert limiter.admit("b") is None  # per IP
    clock.now += 60
    assert limiter.admit("a") is None
    limiter.record_failure("b")
    assert limiter.blocked() == {}
    limiter.record_failure("b")
    assert limiter.admit("b") == pytest.approx(10)
    clock.now += 10
    assert limiter.admit("b") is None


def test_fault_draws_are_per_provider_and_reproducible() -> None:
    faults = Faults(seed=3, error_after_commit=0.5)
    one, two = FaultInjector(faults), FaultInjector(faults)
    kinds = [one.draw("maast", "create") for _ in range(20)]
    for _ in range(5):
        two.draw("stax", "create")  # the other provider's traffic does not shift Maast's draws
    assert [two.draw("maast", "create") for _ in range(20)] == kinds
    assert one.draw("maast", "send") is None  # not a target


def test_fault_probabilities_must_fit() -> None:
    with pytest.raises(ValueError):
        FaultSpec(error_before_commit=0.6, drop_after_commit=0.6)


@pytest.mark.parametrize(
    ("date_invoice", "ok"),
    [
        ("2025-01-01", True),
        ("2025-01-01T00:00:00.000Z", True),
        ("2025-02-30", False),
        ("2025-01-01 garbage", False),
        ("20250101", False),
    ],
)
def test_maast_invoice_dates(date_invoice: str, ok: bool) -> None:
    draft = check_create({"customer_id": "C", "invoice_number": "N", "date_invoice": date_invoice})
    assert (not draft.problems) is ok


def test_maast_quantity_and_cost_limits() -> None:
    lines = [
        {"description": "a", "quantity": 999, "unit_cost": Decimal("1.50")},
        {"description": "b", "quantity": Decimal("2.0"), "unit_cost": 3},
        {"description": "c", "quantity": Decimal("1.5"), "unit_cost": True},
    ]
    draft = check_create({"customer_id": "C", "invoice_number": "N", "line_items": lines})
    assert [p.field for p in draft.problems] == [
        "line_items[2].quantity",
        "line_items[2].unit_cost",
    ]
