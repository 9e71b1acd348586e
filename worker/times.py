"""Timestamps as we print them: ISO 8601 UTC for machines, local time for people.

Every stored time is Unix milliseconds. Machine output (JSON, CSV reports and
exports, webhooks) says `2026-11-22T04:30:12.345Z`; what a person reads in a
terminal (tables, `dlq show`, status titles) says `2026-11-22 05:30:12 CET`,
in the machine's time zone. One function each, so the two never drift apart
(docs/operations.md, "Times").
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso_ms(at_ms: int) -> str:
    """A millisecond timestamp as ISO 8601 UTC, e.g. `2026-11-22T04:30:12.345Z`."""
    when = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_ms(at_ms: int) -> str:
    """A millisecond timestamp in local time for people, e.g. `2026-11-22 05:30:12 CET`."""
    return datetime.fromtimestamp(at_ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
