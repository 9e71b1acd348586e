"""Records and errors a reader yields, the errors that stop a whole file, and the limits.

A `Record` is one invoice read whole and valid; a `RecordError` is one problem
with one record (an invoice with any problem is rejected whole); `SourceError`
means the file cannot be read at all. Both carry the record's `Source`: the
text the user wrote, so a rejected record can be shown and handed back to fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, NamedTuple

from jobs.models import Invoice, Provider

Format = Literal["csv", "jsonl"]

MAX_LINE_BYTES = 1024 * 1024
"""Longest physical line accepted; a longer one is a `RecordError`, read in bounded chunks."""
MAX_LINES_PER_INVOICE = 1000
"""Most CSV rows one invoice may have; bounds the memory one invoice can take."""
MAX_ERRORS_PER_RECORD = 20
"""Errors reported for one record before the rest are summed up in one more."""


class Source(NamedTuple):
    """What the user wrote for one record, as read (a tuple: one is made per record)."""

    format: Format
    rows: tuple[tuple[int, str], ...]
    """(line number, text) of each CSV row of the invoice, or of its JSONL line;
    line endings dropped (a CSV row with a quoted line break keeps it)."""
    header: str | None = None
    """The CSV header line the rows go with (one string shared by the whole file)."""

    @property
    def line(self) -> int:
        """The record's first line."""
        return self.rows[0][0]


@dataclass(frozen=True)
class Record:
    """One invoice read whole and valid."""

    line: int
    """First line of the record (1-based; the CSV header is line 1)."""
    invoice: Invoice
    provider: Provider | None = None
    """Set when a JSONL line held a provider create body (`"provider": "maast"|"stax"`)."""
    source: Source | None = dataclasses.field(default=None, compare=False, repr=False)
    """The record's text (None for invoices handed over in Python)."""


@dataclass(frozen=True)
class RecordError:
    """One problem with one record; an invoice with any problem is rejected whole."""

    line: int
    message: str
    field: str | None = None
    """CSV column name, or JSON path (`lines[0].quantity`) for JSONL."""
    invoice_number: str | None = None
    invoice: Invoice | None = dataclasses.field(default=None, compare=False, repr=False)
    """The parsed invoice, when it parsed but failed a provider's own rules."""
    source: Source | None = dataclasses.field(default=None, compare=False, repr=False)
    """The text of the record this problem is about; every problem of one record
    carries the same `Source` (None where there is no text: Python objects)."""

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.invoice_number:
            where += f" (invoice {self.invoice_number})"
        if self.field:
            where += f" field {self.field}"
        return f"{where}: {self.message}"


class SourceError(Exception):
    """The whole file cannot be read (unknown/duplicate columns, not UTF-8, unknown format...)."""


Item = Record | RecordError
