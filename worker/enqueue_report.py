"""What one enqueue run did: the outcome of each record, counted, and the problems found.

`EnqueueReport` is what `worker.enqueue.enqueue` returns and what
`invoicer enqueue` prints (as text, or as one JSON object streamed by
`write_json`, so 80,000 problems print in a second and never sit in memory
twice). Its counts reconcile: every record read is in exactly one of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TextIO

from jobs.models import Provider
from jobs.sources import RecordError

__all__ = ["EnqueueOutcome", "EnqueueReport"]


class EnqueueOutcome(StrEnum):
    """What enqueueing one invoice did."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    ALREADY_CREATED = "already_created"
    CONFLICT = "conflict"
    SUPERSEDED = "superseded"


@dataclass
class EnqueueReport:
    """Counts of one enqueue run (one batch).

    Every record of the input is counted once, in exactly one of `accepted`,
    `duplicates`, `already_created`, `conflicts` and `invalid_records`; their
    sum is `records`. `invalid` lists the problems, several per record when a
    record has several (docs/operations.md, "What enqueue reports").
    """

    batch_id: str
    provider: Provider
    accepted: int = 0
    """New invoices, plus superseded ones (re-enqueued after a rejection or discard)."""
    superseded: int = 0
    duplicates: int = 0
    """Same content already queued or in flight: nothing to do."""
    already_created: int = 0
    """Same content already created: skipped."""
    conflicts: list[tuple[int, str, str]] = field(default_factory=list)
    """(line, invoice number, message): same number, different content."""
    invalid: list[RecordError] = field(default_factory=list)
    """Every problem found, in input order (a record with three problems has three)."""
    invalid_records: int = 0
    """Records refused (invoices, plus rows without a readable invoice number)."""
    invalid_dead_lettered: int = 0
    """Invalid records parked in the dead-letter queue (those with a usable number)."""
    durable: bool | None = None
    """True: the records are on disk; False: Redis restarted meanwhile, some may
    be lost (run it again); None: its settings promise nothing (`worker.durability`)."""
    durability: str = ""
    """What `durable` means here, in words (the setting it depends on)."""

    @property
    def ok(self) -> bool:
        """No conflicts, no invalid records, nothing lost to a Redis restart."""
        return not self.conflicts and not self.invalid and self.durable is not False

    @property
    def records(self) -> int:
        """Records read: accepted + duplicates + already created + conflicts + invalid."""
        return (
            self.accepted
            + self.duplicates
            + self.already_created
            + len(self.conflicts)
            + self.invalid_records
        )

    def counts(self) -> dict[str, object]:
        """The report without its lists (conflicts, problems)."""
        return {
            "batch_id": self.batch_id,
            "provider": self.provider.value,
            "ok": self.ok,
            "records": self.records,
            "accepted": self.accepted,
            "superseded": self.superseded,
            "duplicates": self.duplicates,
            "already_created": self.already_created,
            "invalid_records": self.invalid_records,
            "invalid_dead_lettered": self.invalid_dead_lettered,
            "durable": self.durable,
            "durability": self.durability,
        }

    def as_dict(self) -> dict[str, object]:
        """The report as plain data: `counts()` with the lists (`write_json` writes the same)."""
        return {
            **self.counts(),
            "conflicts": list(self._conflicts()),
            "invalid": list(self._problems()),
        }

    def write_json(self, out: TextIO) -> None:
        """`as_dict()` as one JSON object on `out`, streamed: for 80,000 problems it
        never holds their JSON, or their dicts, all at once."""
        out.write(json.dumps(self.counts())[:-1])
        for name, items in (("conflicts", self._conflicts()), ("invalid", self._problems())):
            out.write(f', "{name}": [')
            for i, item in enumerate(items):
                out.write(", " + json.dumps(item) if i else json.dumps(item))
            out.write("]")
        out.write("}\n")

    def _conflicts(self) -> Iterator[dict[str, object]]:
        for line, number, message in self.conflicts:
            yield {"line": line, "invoice_number": number, "message": message}

    def _problems(self) -> Iterator[dict[str, object]]:
        for e in self.invalid:
            yield {
                "line": e.line,
                "invoice_number": e.invoice_number,
                "field": e.field,
                "message": e.message,
            }

    def count(self, outcome: EnqueueOutcome, line: int, number: str, state: str) -> None:
        """Add one invoice's outcome."""
        if outcome is EnqueueOutcome.ACCEPTED:
            self.accepted += 1
        elif outcome is EnqueueOutcome.SUPERSEDED:
            self.accepted += 1
            self.superseded += 1
        elif outcome is EnqueueOutcome.DUPLICATE:
            self.duplicates += 1
        elif outcome is EnqueueOutcome.ALREADY_CREATED:
            self.already_created += 1
        else:
            message = f"invoice {number} is already {state} with different content"
            self.conflicts.append((line, number, message))
