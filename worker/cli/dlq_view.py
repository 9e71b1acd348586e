"""How `invoicer dlq list` and `dlq show` draw dead letters, for people and for scripts.

People get local times and a layout for the terminal they have: a table
from 110 columns, two lines per entry below (key, reason, tries, time; then
the message, wrapped), so 80 columns read well. Scripts get `entry_dict`:
stable names, ISO UTC times (worker.times), the payload parsed and the
source rows of a record refused at enqueue.
"""

from __future__ import annotations

import json

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobs.models import Invoice
from jobs.sources import Source
from worker.dead_letter import DeadLetter
from worker.times import iso_ms, local_ms

TABLE_MIN_WIDTH = 110
"""Below this many columns, entries are drawn as two lines each instead of a table."""


def entry_dict(e: DeadLetter) -> dict[str, object]:
    """A dead letter as JSON-ready data (stable names; payload parsed)."""
    return {
        "invoice_key": e.invoice_key,
        "provider": e.provider.value,
        "number": e.number,
        "batch": e.batch,
        "reason": e.reason,
        "kind": e.kind,
        "status": e.status,
        "code": e.code,
        "message": e.message,
        "field_errors": [{"field": f.field, "message": f.message} for f in e.field_errors],
        "attempts": e.attempts,
        "first_at": iso_ms(e.first_at_ms) if e.first_at_ms else None,
        "last_at": iso_ms(e.last_at_ms) if e.last_at_ms else None,
        "payload": _parsed(e.payload),
        "source": None if e.source is None else source_dict(e.source),
    }


def source_dict(source: Source) -> dict[str, object]:
    """What the user wrote, as JSON-ready data."""
    return {
        "format": source.format,
        "header": source.header,
        "rows": [{"line": line, "text": text} for line, text in source.rows],
    }


def compact_payload(payload: str) -> object:
    """The stored invoice without fields left at their defaults: what a person reads.

    Still a valid invoice for `requeue --payload` (defaults come back on load).
    """
    try:
        return Invoice.model_validate_json(payload).model_dump(mode="json", exclude_defaults=True)
    except ValidationError:
        return _parsed(payload)


def print_list(console: Console, entries: list[DeadLetter], *, limit: int) -> None:
    """The entries, newest first, as a table or as two lines each (by width)."""
    more = " (the newest; --limit for more)" if len(entries) >= limit else ""
    console.print(f"{len(entries)} dead letters, newest first{more}", highlight=False)
    if console.width >= TABLE_MIN_WIDTH:
        table = Table(show_edge=False, pad_edge=False)
        for name in ("key", "reason", "status/code", "message", "tries", "last"):
            table.add_column(name, overflow="fold", no_wrap=name in ("key", "last"))
        for e in entries:
            table.add_row(
                e.invoice_key,
                e.reason,
                _status_code(e),
                e.message,
                str(e.attempts),
                local_ms(e.last_at_ms),
            )
        console.print(table)
        return
    for e in entries:
        head = Text(e.invoice_key, style="bold") + f"  {e.reason}"
        if _status_code(e):
            head += f" {_status_code(e)}"
        head += f"  {e.attempts} tries  {local_ms(e.last_at_ms)}"
        console.print(head, highlight=False)
        console.print(Text(e.message), highlight=False, markup=False, style="dim")
    # `Text` wraps under the terminal's width on its own; no line is cut.


def print_entry(console: Console, e: DeadLetter, history: list[dict[str, object]]) -> None:
    """Everything about one entry: why, when, what the user wrote, the payload, the history."""
    p = console.print
    p(Text(e.invoice_key, style="bold") + f"  batch {e.batch}  reason " + Text(e.reason, "red"))
    code = f" {_status_code(e)}" if _status_code(e) else ""
    p(Text(f"error: {e.kind}{code}: {e.message}"))
    p(f"tries: {e.attempts}  first {local_ms(e.first_at_ms)}  last {local_ms(e.last_at_ms)}")
    if e.field_errors:
        p("field errors:")
        for f in e.field_errors:
            p(Text(f"  {f.field}: {f.message}"))
    if e.source is not None:
        _print_source(console, e)
    if e.payload:
        p("payload (defaults left out; edit it with --payload-only):")
        console.print_json(json.dumps(compact_payload(e.payload)))
    elif e.source is not None:
        p("payload: none (the record never parsed as an invoice: fix the rows above)")
    if history:
        table = Table(title="history", title_justify="left", show_edge=False, pad_edge=False)
        for name in ("at", "event", "state", "detail"):
            table.add_column(name, overflow="fold")
        for h in history:
            at = h.get("at_ms")
            table.add_row(
                local_ms(int(at)) if isinstance(at, int | float) else "",
                str(h.get("event", "")),
                str(h.get("state", "")),
                str(h.get("detail", "") or ""),
            )
        p(table)


def _print_source(console: Console, e: DeadLetter) -> None:
    assert e.source is not None
    source = e.source
    lines = [line for line, _ in source.rows]
    where = f"line {lines[0]}" if len(lines) == 1 else f"lines {lines[0]}-{lines[-1]}"
    console.print(
        f"as written ({source.format}, {where}; fix it from `invoicer dlq export --source "
        f"--batch {e.batch}`):",
        highlight=False,
    )
    width = len(str(lines[-1]))
    if source.header is not None:
        console.print(Text(f"  {'':>{width}}  {source.header}", style="dim"), soft_wrap=True)
    for line, text in source.rows:
        console.print(Text(f"  {line:>{width}}  {text}"), soft_wrap=True)


def _parsed(payload: str) -> object:
    try:
        return json.loads(payload)
    except ValueError:
        return payload


def _status_code(e: DeadLetter) -> str:
    status = "" if e.status is None else str(e.status)
    return status + ("" if e.code is None else f"/{e.code}")
