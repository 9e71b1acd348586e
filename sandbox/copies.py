"""Copies per invoice number: how many were created, are live, were sent.

What exactly-once tests count: every number should end with exactly one live
(not voided) invoice, and, when sending, exactly one live invoice sent. A
Maast number is its `invoice_number`, a Stax number its `meta.reference`.
Which documents count as voided or sent is the provider's rule, passed in.
Pure: no replies, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from sandbox.state import Doc, Store

Rule = Callable[[Doc], bool]


@dataclass(slots=True)
class NumberCopies:
    """One number's invoices."""

    created: int = 0
    live: int = 0
    """Created and not voided (Maast CANCELED, Stax DELETED)."""
    sent: int = 0
    """Live and sent at least once (a voided invoice that was sent is not counted)."""


@dataclass(slots=True)
class CopiesSummary:
    """The counts a test asserts on, over one provider."""

    numbers: int = 0
    created: int = 0
    live: int = 0
    sent: int = 0
    voided: int = 0
    """Every voided invoice, with or without a number."""
    late_commits: int = 0
    """Creates, sends and voids the `late_commit` fault committed late."""
    live_not_one: list[str] = field(default_factory=list)
    """Numbers with no live invoice, or more than one."""
    sent_not_one: list[str] = field(default_factory=list)
    sent_more_than_one: list[str] = field(default_factory=list)
    """Numbers whose customer got more than one live invoice."""


def by_number(store: Store, voided: Rule, sent: Rule) -> dict[str, NumberCopies]:
    """Every number's copies, in the order numbers first appeared."""
    copies: dict[str, NumberCopies] = {}
    for number, ids in store.by_key.items():
        entry = copies[number] = NumberCopies()
        for invoice_id in ids:
            doc = store.invoices[invoice_id].doc
            entry.created += 1
            if not voided(doc):
                entry.live += 1
                entry.sent += sent(doc)
    return copies


def summarize(
    store: Store, copies: dict[str, NumberCopies], voided: Rule, late_commits: int
) -> CopiesSummary:
    """The totals and the offending numbers."""
    summary = CopiesSummary(numbers=len(copies), late_commits=late_commits)
    summary.voided = sum(voided(r.doc) for r in store.invoices.values())
    for number, entry in copies.items():
        summary.created += entry.created
        summary.live += entry.live
        summary.sent += entry.sent
        if entry.live != 1:
            summary.live_not_one.append(number)
        if entry.sent != 1:
            summary.sent_not_one.append(number)
        if entry.sent > 1:
            summary.sent_more_than_one.append(number)
    return summary


def report(store: Store, voided: Rule, sent: Rule, late_commits: int) -> dict[str, object]:
    """`{"numbers": {number: counts}, "summary": totals}`, JSON-ready."""
    copies = by_number(store, voided, sent)
    summary = summarize(store, copies, voided, late_commits)
    return {
        "numbers": {n: asdict(c) for n, c in copies.items()},
        "summary": asdict(summary),
    }
