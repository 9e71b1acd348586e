"""One dead-letter entry: how it is written, and how it reads.

An entry is a hash beside the ledger record of an invoice parked for a
person: why (the error's reason word, kind, message, status, code and field
errors), how often it was tried, and its payload, never a secret. It is
written in one script with the ledger change: `HeldEntry.dead_letter` for a
job that failed, `park_invalid` for the invalid records of an enqueue (so
every record of a file ends created, dead-lettered or visibly waiting). Both
build its fields with `entry_fields`. What a person can do with entries is
`worker.dlq`. This module never calls a provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from jobs.errors import ErrorInfo, FieldError, InvoiceInvalid
from jobs.models import Provider
from jobs.sources import RecordError
from worker.error_json import field_errors_from_list, field_errors_to_list
from worker.keys import InvoiceKey, Keys, invoice_key
from worker.lua import INVOICES_PER_CALL, Scripts, script_env
from worker.replies import RawHash, decoded, text

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
            _iso(self.first_at_ms),
            _iso(self.last_at_ms),
        ]
        return [_no_formula(v) for v in values]


def _provider_of(h: dict[str, str]) -> Provider:
    try:
        return Provider(h.get("provider", ""))
    except ValueError:
        return InvoiceKey.parse(h["invoice_key"]).provider


def _ms(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def entry_fields(error: ErrorInfo, *, attempts: int, reason: str | None = None) -> str:
    """The fields of an entry about `error`, as the scripts take them (a JSON
    object of strings); the scripts add where it stands (invoice key, batch,
    provider, number, payload, times).

    Args:
        attempts: failed attempts so far.
        reason: the entry's reason when it is not the error's own
            ("exhausted": the retry budget ran out on a transient error).
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
    return json.dumps(fields)


async def park_invalid(
    redis: aioredis.Redis,
    keys: Keys,
    errors: Sequence[RecordError],
    *,
    provider: Provider,
    account: str,
    batch_id: str,
) -> int:
    """Dead-letter the invalid records that carry a usable invoice number; how many were.

    Their errors (one `RecordError` per problem) are grouped per number, so
    the entry lists every field to fix; `invoicer dlq requeue KEY --payload
    FILE` then supersedes it with the corrected invoice. A number already
    active (queued, in flight, created) is left alone: the bad copy is only
    reported (see `worker/lua/reject.lua`).
    """
    grouped: dict[str, list[RecordError]] = {}
    for error in errors:
        number = error.invoice_number
        if number is not None and _NUMBER.fullmatch(number):
            grouped.setdefault(number, []).append(error)
    items = list(grouped.items())
    if not items:
        return 0
    reject = Scripts.register(redis).reject
    head = [script_env(keys), "", provider.value, account, batch_id]
    parked = 0
    for start in range(0, len(items), INVOICES_PER_CALL):
        args = list(head)
        for number, problems in items[start : start + INVOICES_PER_CALL]:
            args += _invalid_args(number, problems, provider=provider, account=account)
        replies = await reject(args=args)
        parked += sum(text(r) == "dead_lettered" for r in replies)
    return parked


def _invalid_args(
    number: str, problems: list[RecordError], *, provider: Provider, account: str
) -> list[str]:
    """The reject script's four values for one invalid record."""
    invoice = next((e.invoice for e in problems if e.invoice is not None), None)
    error = ErrorInfo(
        kind=InvoiceInvalid.__name__,
        reason=InvoiceInvalid.reason,
        message=f"line {problems[0].line}: {len(problems)} problem(s); fix and requeue "
        "with --payload FILE",
        field_errors=tuple(FieldError(e.field or "record", e.message) for e in problems),
    )
    payload = invoice.model_dump_json() if invoice is not None else ""
    key = invoice_key(provider, account, number)
    return [key, number, payload, entry_fields(error, attempts=0)]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds") if ms else ""


def _no_formula(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets (CSV
    # injection); a leading quote makes it text.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
