"""Records and errors a reader yields, the errors that stop a whole file, and the limits.

A `Record` is one invoice read whole and valid; a `RecordError` is one problem
with one record (an invoice with any problem is rejected whole); `SourceError`
means the file cannot be read at all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from jobs.models import Invoice, Provider

Format = Literal["csv", "jsonl"]

MAX_LINE_BYTES = 1024 * 1024
"""Longest physical line accepted; a longer one is a `RecordError`, read in bounded chunks."""
MAX_LINES_PER_INVOICE = 1000
"""Most CSV rows one invoice may have; bounds the memory one invoice can take."""
MAX_ERRORS_PER_RECORD = 20
"""Errors reported for one record before the rest are summed up in one more."""


@dataclass(frozen=True)
class Record:
    """One invoice read whole and valid."""

    line: int
    """First line of the record (1-based; the CSV header is line 1)."""
    invoice: Invoice
    provider: Provider | None = None
    """Set when a JSONL line held a provider create body (`"provider": "maast"|"stax"`)."""


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
