"""Logging, Sentry and the scrubbing that keeps secrets out of both.

One log line per state change (`start maast:INV-1 try=2`, `created ...`,
`retry ... in 4.2s ...`, `dead ...`). Every record passes a filter that masks
anything shaped like a credential (Authorization headers, `*_API_KEY=...`,
passwords in Redis URLs) before any handler sees it; Sentry events go
through the same scrubbing.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from pydantic import SecretStr

from worker.log_format import LogFormat, formatter

_PATTERNS = (
    # `Authorization: Basic x`, and as a dict or JSON: `'Authorization': 'Bearer x'`.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]?\s*[\"']?(?:basic|bearer)\s+)[A-Za-z0-9+/=._~-]+"),
    re.compile(r"(?i)((?:api[_-]?key|token|password|secret)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;]+"),
    re.compile(r"(rediss?://[^:/@\s]*:)[^@\s]+(@)"),
)
MASK = "***"


def scrub(text: str) -> str:
    """`text` with anything shaped like a credential masked."""
    for pattern in _PATTERNS:
        text = pattern.sub(
            lambda m: m.group(1) + MASK + (m.group(2) if m.lastindex == 2 else ""), text
        )
    return text


class ScrubFilter(logging.Filter):
    """Masks credentials in every log record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(level: int = logging.INFO, fmt: LogFormat = "text") -> None:
    """Log to stderr, one line per event (text, or JSON: `worker.log_format`), secrets scrubbed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # arq logs every job at INFO; our runner already logs each state change.
    logging.getLogger("arq").setLevel(logging.WARNING)
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _scrub_event(event: Any, _hint: Any) -> Any:
    """Sentry `before_send`: scrub every string in the event, recursively."""
    if isinstance(event, str):
        return scrub(event)
    if isinstance(event, dict):
        return {k: _scrub_event(v, None) for k, v in event.items()}
    if isinstance(event, list):
        return [_scrub_event(v, None) for v in event]
    return event


def setup_sentry(dsn: SecretStr | None) -> bool:
    """Start Sentry (with its arq integration) when a DSN is configured."""
    if dsn is None:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn.get_secret_value(),
        send_default_pii=False,
        before_send=_scrub_event,
        traces_sample_rate=0.0,
    )
    return True
