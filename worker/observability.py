"""Logging, Sentry and the scrubbing that keeps secrets out of both.

One log line per state change (`start maast:INV-1 try=2`, `created ...`,
`retry ... in 4.2s ...`, `dead ...`). Every record passes a filter that masks
anything shaped like a credential (Authorization headers, `*_API_KEY=...`,
passwords in Redis URLs), and every configured secret by its value
(`protect`), in the message and in the traceback, before any handler sees
it; Sentry events go through the same scrubbing.

Scrubbing is the last line of defence: the first is never to build stored or
logged text from something that can hold a secret (`describe_bug`).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import PurePath
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

from pydantic import SecretStr

from worker.log_format import LogFormat, formatter
from worker.settings import Settings

_PATTERNS = (
    # `Authorization: Basic x`, and as a dict or JSON: `'Authorization': 'Bearer x'`.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]?\s*[\"']?(?:basic|bearer)\s+)[A-Za-z0-9+/=._~-]+"),
    re.compile(r"(?i)((?:api[_-]?key|token|password|secret)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;]+"),
    re.compile(r"(rediss?://[^:/@\s]*:)[^@\s]+(@)"),
)
MASK = "***"
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


MIN_PROTECTED_CHARS = 6
"""Shorter values are not masked by value: they would mask ordinary words."""
_protected: set[str] = set()
"""The configured secrets (and the forms they take on the wire), masked wherever they appear."""


def protect(settings: Settings) -> None:
    """Mask `settings`' secrets by value in every log line and Sentry event from now on.

    Logging is set up before settings are read (a bad setting must be
    reported), so the values join the filter here, once they are known.
    """
    for value in _secret_values(settings):
        if len(value) >= MIN_PROTECTED_CHARS:
            # As written, and as JSON writes it (a non-ASCII character escaped).
            _protected.update({value, json.dumps(value)[1:-1]})


def _secret_values(settings: Settings) -> list[str]:
    values: list[str] = []
    for provider in (settings.maast, settings.stax):
        if provider.api_key is not None:
            key = provider.api_key.get_secret_value()
            values += [key, base64.b64encode(f":{key}".encode()).decode()]  # Maast's Basic token
    for token in (settings.admin_token, settings.read_token, settings.webhook_secret):
        if token is not None:
            values.append(token.get_secret_value())
    if settings.redis_url is not None:
        values.append(urlparse(settings.redis_url.get_secret_value()).password or "")
    if settings.sentry_dsn is not None:
        values.append(urlparse(settings.sentry_dsn.get_secret_value()).username or "")
    return values


def scrub(text: str) -> str:
    """`text` with every protected secret and anything shaped like a credential masked."""
    for secret in sorted(_protected, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
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
        # Formatters reuse `exc_text` once set: the traceback is scrubbed too
        # (an exception's text may quote a header, a URL with a password...).
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(_TRACEBACKS.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


_TRACEBACKS = logging.Formatter()


def describe_bug(bug: BaseException) -> str:
    """What to store about an exception that is not ours to explain: its type
    and where it was raised (`KeyError in jobs/providers/stax.py:97 (receipt_from)`).

    Never its text or repr: an httpx or aiohttp exception, or a
    UnicodeEncodeError raised while writing a header, can carry the request
    and its Authorization header. The full exception goes to Sentry, scrubbed.
    """
    frames = traceback.extract_tb(bug.__traceback__)
    if not frames:
        return type(bug).__name__
    last = frames[-1]
    parts = PurePath(last.filename).parts
    shown = "/".join(parts[-2:]) if len(parts) >= 2 else last.filename
    return f"{type(bug).__name__} in {shown}:{last.lineno} ({last.name})"


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


_PERSONAL_KEYS = re.compile(
    r"(?i)^(e-?mail|street|address(_?line)?_?\d?|line_?[12]|city|zip|postal_?code|phone"
    r"|first_?name|last_?name|api_?key|authorization|cookie|token|password|secret|dsn)$"
)
"""Keys whose values never leave for Sentry, whatever they hold."""
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_ADDRESS_FIELD = re.compile(
    r"(?i)([\"']?(?:street|address(?:_?line)?_?\d?|line_?[12])[\"']?\s*[:=]\s*[\"'])[^\"']*"
)
FILTERED = "[Filtered]"


def scrub_personal(text: str) -> str:
    """`scrub(text)`, and e-mail addresses and street-address fields masked too."""
    text = _EMAIL.sub("[email]", scrub(text))
    return _ADDRESS_FIELD.sub(lambda m: m.group(1) + FILTERED, text)


def _scrub_event(event: Any, _hint: Any) -> Any:
    """Sentry `before_send`: credentials, e-mail and street addresses out of every string,
    and the values of personal or secret keys (`email`, `street`, `api_key`...) dropped."""
    if isinstance(event, str):
        return scrub_personal(event)
    if isinstance(event, dict):
        return {
            k: FILTERED if isinstance(k, str) and _PERSONAL_KEYS.match(k) else _scrub_event(v, None)
            for k, v in event.items()
        }
    if isinstance(event, list | tuple):
        return [_scrub_event(v, None) for v in event]
    return event


def setup_sentry(dsn: SecretStr | None) -> bool:
    """Start Sentry (with its arq integration) when a DSN is configured.

    The arq integration reports a job's exception only for functions wrapped
    when the worker is built by arq's `create_worker`; ours are built
    otherwise (`invoicer worker` makes its `Worker`s directly, and arq's CLI
    calls `setup_sentry` only at start-up, after the worker exists), so
    `worker.app` wraps the job function itself with `job_reporting`.
    Business outcomes (rejections, retries) are returned or raised as arq's
    `Retry`, never as errors: only bugs reach Sentry.
    """
    if dsn is None:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.arq import ArqIntegration

    sentry_sdk.init(
        dsn=dsn.get_secret_value(),
        send_default_pii=False,
        before_send=_scrub_event,
        traces_sample_rate=0.0,
        integrations=[ArqIntegration()],
    )
    return True


def job_reporting(name: str, coroutine: F) -> F:
    """`coroutine` wrapped as sentry-sdk's arq integration wraps job functions.

    Reports what it raises (not arq's `Retry`) with the job's id and try, when
    Sentry is set up (it checks at each call); a plain call otherwise.
    """
    from sentry_sdk.integrations.arq import _wrap_coroutine  # the integration's own

    return cast(F, _wrap_coroutine(name, cast(Any, coroutine)))
