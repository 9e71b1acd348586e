"""One dead-letter entry: how it is written, and how it reads.

An entry is a hash beside the ledger record of an invoice parked for a
person: why (the error's reason word, kind, message, status, code and field
errors), how often it was tried, and its payload, never a secret. It is
written in one script with the ledger change: `HeldEntry.dead_letter` for a
job that failed, `worker/lua/reject.lua` for the invalid records of an
enqueue (so every record of a file ends created, dead-lettered or visibly
waiting), with the values `invalid_entry` builds. Both build its fields with
`entry_fields`. An invalid record's entry also keeps what the user wrote
(its `Source`: the CSV rows with their header, or the JSONL line, with line
numbers), so it can be shown and exported back to fix. What a person can do
with entries is `worker.dlq`. This module never calls a provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from jobs.errors import ErrorInfo, FieldError, InvoiceInvalid
from jobs.models import Provider
from jobs.sources import RecordError, Source
from worker.error_json import error_to_json, field_errors_from_list, field_errors_to_list
from worker.keys import InvoiceKey, invoice_key
from worker.replies import RawHash, decoded
from worker.times import iso_ms

_NUMBER = re.compile(r"[A-Za-z0-9._/-]{1,64}")
"""An invoice number usable as a key (the model's rule): only those are parked."""
CSV_COLUMNS = (
    "invoice_key",
    "number",
    "batch",
    "reason",
    "kind",
    "status",
    "code",
    "message",
    "field_errors",
    "attempts",
    "first_at",
    "last_at",
)


@dataclass(frozen=True)
class DeadLetter:
    """One parked invoice: why, how often it was tried, and its payload."""

    invoice_key: str
    provider: Provider
    number: str
    batch: str
    reason: str
    """The error's reason word, or "in_doubt" (may exist at the provider), or
    "exhausted" (the retry budget ran out; `kind`/`message` hold the last error)."""
    kind: str
    message: str
    status: int | None
    code: str | None
    field_errors: list[FieldError]
    attempts: int
    first_at_ms: int
    """When the invoice was first enqueued."""
    last_at_ms: int
    """When it was dead-lettered."""
    payload: str
    source: Source | None = None
    """What the user wrote, for a record refused at enqueue."""

    @classmethod
    def parse(cls, raw: RawHash) -> DeadLetter:
        """Build an entry from its hash as HGETALL returns it."""
        h = decoded(raw)
        return cls(
            invoice_key=h["invoice_key"],
            provider=_provider_of(h),
            number=h.get("number", ""),
            batch=h.get("batch", ""),
            reason=h.get("reason", ""),
            kind=h.get("kind", ""),
            message=h.get("message", ""),
            status=int(h["status"]) if h.get("status") else None,
            code=h.get("code") or None,
            field_errors=field_errors_from_list(json.loads(h.get("field_errors") or "[]")),
            attempts=int(h.get("attempts") or 0),
            # Copied from the ledger record, which may be what was damaged
            # (worker.damaged): an entry about it must still read.
            first_at_ms=_ms(h.get("first_at_ms")),
            last_at_ms=_ms(h.get("last_at_ms")),
            payload=h.get("payload", ""),
            source=source_from_json(h.get("source", "")),
        )

    def csv_row(self) -> list[str]:
        """The entry as one CSV row (CSV_COLUMNS), safe to open in a spreadsheet."""
        values = [
            self.invoice_key,
            self.number,
            self.batch,
            self.reason,
            self.kind,
            "" if self.status is None else str(self.status),
            self.code or "",
            self.message,
            "; ".join(str(e) for e in self.field_errors),
            str(self.attempts),
            iso_ms(self.first_at_ms) if self.first_at_ms else "",
            iso_ms(self.last_at_ms) if self.last_at_ms else "",
        ]
        return [_no_formula(v) for v in values]


def _provider_of(h: dict[str, str]) -> Provider:
    try:
        return Provider(h.get("provider", ""))
    except ValueError:
        return InvoiceKey.parse(h["invoice_key"]).provider


def _ms(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def entry_fields(
    error: ErrorInfo, *, attempts: int, reason: str | None = None, source: Source | None = None
) -> str:
    """The fields of an entry about `error`, as the scripts take them (a JSON
    object of strings); the scripts add where it stands (invoice key, batch,
    provider, number, payload, times).

    Args:
        attempts: failed attempts so far.
        reason: the entry's reason when it is not the error's own
            ("exhausted": the retry budget ran out on a transient error).
        source: what the user wrote, for a record refused at enqueue.
    """
    fields = {
        "reason": reason or error.reason,
        "kind": error.kind,
        "message": error.message,
        "status": "" if error.status is None else str(error.status),
        "code": error.code or "",
        "field_errors": json.dumps(field_errors_to_list(error.field_errors)),
        "attempts": str(attempts),
    }
    if source is not None:
        fields["source"] = source_to_json(source)
    return json.dumps(fields)


def source_to_json(source: Source) -> str:
    """A `Source` as stored in an entry."""
    return json.dumps({"format": source.format, "header": source.header, "rows": source.rows})


def source_from_json(stored: str) -> Source | None:
    """The inverse of `source_to_json`; None for "" (an entry without one)."""
    if not stored:
        return None
    data = json.loads(stored)
    rows = tuple((int(line), str(row)) for line, row in data["rows"])
    return Source(data["format"], rows, data.get("header"))


def invalid_entry(
    problems: Sequence[RecordError], *, provider: Provider, account: str
) -> list[str] | None:
    """The reject script's five values for one refused record (all its problems),
    or None when it has no invoice number usable as a key (then it is only reported).

    The values: invoice key, number, payload (the invoice's JSON if it parsed,
    else ""), the entry's fields (`entry_fields`, its `Source` included) and
    the ledger's error, so the batch report gives the same reason.
    """
    first = problems[0]
    number = first.invoice_number
    if number is None or not _NUMBER.fullmatch(number):
        return None
    line = first.source.line if first.source is not None else first.line
    error = ErrorInfo(
        kind=InvoiceInvalid.__name__,
        reason=InvoiceInvalid.reason,
        message=describe_problems(problems),
        field_errors=tuple(
            FieldError(
                e.field or "record", e.message if e.line == line else f"line {e.line}: {e.message}"
            )
            for e in problems
        ),
    )
    invoice = next((e.invoice for e in problems if e.invoice is not None), None)
    payload = invoice.model_dump_json() if invoice is not None else ""
    fields = entry_fields(error, attempts=0, source=first.source)
    return [invoice_key(provider, account, number), number, payload, fields, error_to_json(error)]


def describe_problems(problems: Sequence[RecordError], shown: int = 3) -> str:
    """`line 12: quantity: ...; unit_price: ...` (the first `shown`, then how many more)."""
    first = problems[0]
    rows = first.source.rows if first.source is not None else ()
    if len(rows) > 1:
        where = f"lines {rows[0][0]}-{rows[-1][0]}"
    else:
        where = f"line {rows[0][0] if rows else first.line}"
    parts = [
        (f"line {e.line} " if len(rows) > 1 else "")
        + (f"{e.field}: " if e.field else "")
        + e.message
        for e in problems[:shown]
    ]
    if len(problems) > shown:
        parts.append(f"and {len(problems) - shown} more")
    return f"{where}: " + "; ".join(parts)


def _no_formula(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets (CSV
    # injection); a leading quote makes it text.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
