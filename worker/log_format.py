"""`--log-format json`: one JSON object per log line, keyed by invoice key.

The worker logs one line per state change of an invoice, and those lines
start with what happened and the invoice key (`created maast:INV-1 id=...`,
`retry stax:INV-2 in 4.2s ...`, `dead maast:INV-3 ...`, `lease lost ...`).
The JSON formatter lifts both into fields (`event`, `invoice_key`) so a log
pipeline can follow one invoice without parsing text; a record that carries
them as `extra={"invoice_key": ..., "event": ...}` wins over the text. The
message was already scrubbed by `worker.observability.ScrubFilter`, which runs
before any formatter.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]

_STATE_CHANGE = re.compile(
    r"(?P<event>[a-z][a-z ]{1,30}?) (?P<key>(?:maast|stax)(?:@[^\s:]+)?:[A-Za-z0-9._/-]{1,64})\b"
)
_TEXT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "event"?, "invoice_key"?, "error"?}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        key = getattr(record, "invoice_key", None)
        event = getattr(record, "event", None)
        found = _STATE_CHANGE.match(message) if key is None else None
        if found is not None:
            key, event = found["key"], found["event"]
        if key is not None:
            line["invoice_key"] = key
            line["event"] = event
        if record.exc_info:
            # `exc_text` is the traceback `ScrubFilter` already scrubbed.
            line["error"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(fmt: LogFormat) -> logging.Formatter:
    """The formatter of a log format."""
    return JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT)
