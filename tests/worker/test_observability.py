"""Scrubbing: credentials never reach a log line or a Sentry event."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from pydantic import SecretStr

from worker import observability
from worker.observability import (
    MASK,
    ScrubFilter,
    _scrub_event,
    describe_bug,
    scrub,
    setup_logging,
    setup_sentry,
)
from worker.settings import load_settings

KEY = "9edec21a31c0xyz789e30a3416abc123"
"""Shaped like a Maast API key (docs/providers.md, Maast, "Authentication")."""
BASIC = "OTAwMDAwMDAwMDA5OTE6OWVkZWMyMWEzMWMweHl6"
BEARER = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-_x"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Basic {BASIC}", BASIC),
        (f"authorization: bearer {BEARER}", BEARER),
        (f"Authorization=Bearer {BEARER}", BEARER),
        (f"headers={{'Authorization': 'Bearer {BEARER}'}}", BEARER),
        (f'{{"Authorization": "Basic {BASIC}"}}', BASIC),
        (f"MAAST_API_KEY={KEY}", KEY),
        (f"STAX_API_KEY = '{KEY}'", KEY),
        (f"api_key: {KEY}", KEY),
        (f'{{"api_key": "{KEY}"}}', KEY),
        (f"x-api-key: {KEY}", KEY),
        (f"password={KEY}", KEY),
        (f"INVOICER_ADMIN_TOKEN={KEY}", KEY),
        (f"redis://:{KEY}@127.0.0.1:6379/0", KEY),
        (f"rediss://default:{KEY}@redis.example:6380", KEY),
    ],
)
def test_scrub_masks_credentials(text: str, secret: str) -> None:
    cleaned = scrub(text)
    assert secret not in cleaned
    assert MASK in cleaned


def test_scrub_keeps_what_is_not_a_credential() -> None:
    text = "created maast:INV-1 id=abc123 0.84s; redis://127.0.0.1:6379/0; no authorization given"
    assert scrub(text) == text


def test_scrub_keeps_the_shape_of_the_line() -> None:
    assert scrub(f"Authorization: Basic {BASIC} sent") == "Authorization: Basic *** sent"
    assert scrub(f"redis://:{KEY}@host:6379/1") == "redis://:***@host:6379/1"


class ListHandler(logging.Handler):
    """Keeps every formatted line it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def scrubbed_logger() -> Iterator[tuple[logging.Logger, ListHandler]]:
    logger = logging.getLogger("invoicer.test-scrub")
    handler = ListHandler()
    handler.addFilter(ScrubFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield logger, handler
    logger.removeHandler(handler)


def test_filter_masks_a_key_logged_by_accident(
    scrubbed_logger: tuple[logging.Logger, ListHandler],
) -> None:
    logger, handler = scrubbed_logger
    # Given code that logs a request's headers (a mistake, but one that happens)
    headers = {"Authorization": f"Bearer {BEARER}", "Content-Type": "application/json"}
    logger.warning("request failed: headers=%s", headers)
    logger.info("config MAAST_API_KEY=%s", KEY)
    logger.error("cannot reach %s", f"redis://:{KEY}@127.0.0.1:6379/0")
    # Then no line carries the secret, and the rest of each line is kept
    assert len(handler.lines) == 3
    assert all(KEY not in line and BEARER not in line for line in handler.lines)
    assert "request failed" in handler.lines[0] and "application/json" in handler.lines[0]


def test_filter_leaves_clean_records_alone(
    scrubbed_logger: tuple[logging.Logger, ListHandler],
) -> None:
    logger, handler = scrubbed_logger
    logger.info("created %s id=%s %.2fs", "maast:INV-1", "p-1", 0.84)
    assert handler.lines == ["created maast:INV-1 id=p-1 0.84s"]


def test_filter_masks_for_caplog_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(ScrubFilter())
    logging.getLogger("invoicer.worker").warning("retry with api_key=%s", KEY)
    assert KEY not in caplog.text
    assert caplog.records[0].getMessage() == "retry with api_key=***"


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, put back as it was after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    arq_level = logging.getLogger("arq").level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("arq").setLevel(arq_level)


def test_setup_logging_scrubs_every_line(
    root_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(logging.INFO)
    assert len(root_logging.handlers) == 1
    logging.getLogger("invoicer.worker").warning("start with STAX_API_KEY=%s", KEY)
    err = capsys.readouterr().err
    assert "start with STAX_API_KEY=***" in err
    assert KEY not in err


def test_sentry_before_send_scrubs_nested_strings() -> None:
    event: dict[str, Any] = {
        "message": f"failed with api_key={KEY}",
        "exception": {
            "values": [{"type": "ProviderUnavailable", "value": f"Authorization: Basic {BASIC}"}]
        },
        "breadcrumbs": {"values": [{"message": f"redis://:{KEY}@h:6379", "level": "info"}]},
        "extra": {"attempt": 2, "ok": True, "none": None, "ratio": 0.5},
    }
    cleaned = _scrub_event(event, {})
    assert KEY not in repr(cleaned) and BASIC not in repr(cleaned)
    assert cleaned["exception"]["values"][0]["type"] == "ProviderUnavailable"
    assert cleaned["extra"] == {"attempt": 2, "ok": True, "none": None, "ratio": 0.5}


def test_sentry_is_off_without_a_dsn() -> None:
    assert setup_sentry(None) is False


def test_sentry_is_started_with_the_scrubber(monkeypatch: pytest.MonkeyPatch) -> None:
    # sentry_sdk.init is replaced: the real one patches arq for the whole process.
    seen: dict[str, Any] = {}
    monkeypatch.setattr(sentry_sdk, "init", lambda **kwargs: seen.update(kwargs))
    assert setup_sentry(SecretStr("https://public@sentry.example/1")) is True
    assert seen["before_send"] is _scrub_event
    assert seen["send_default_pii"] is False
    assert seen["dsn"] == "https://public@sentry.example/1"


CURLY_KEY = "sk-live-0123456789abcdef\u2019"


@pytest.fixture
def protected() -> Iterator[None]:
    """`protect` a Stax key (shaped like no credential pattern), undone afterwards."""
    before = set(observability._protected)
    settings = load_settings({"STAX_API_KEY": "sk-live-0123456789abcdef"}, env_file=None)
    observability.protect(settings)
    # A key pasted with a curly quote never passes the settings: add it by hand.
    observability._protected.update({CURLY_KEY, json.dumps(CURLY_KEY)[1:-1]})
    yield
    observability._protected.clear()
    observability._protected.update(before)


def test_a_protected_secret_is_masked_by_value_anywhere(protected: None) -> None:
    bare = f"UnicodeEncodeError('ascii', 'Bearer {CURLY_KEY}', 13, 14, 'ordinal not in range')"
    for text in (bare, json.dumps({"message": bare}), f"key={CURLY_KEY[:-1]} and more"):
        cleaned = scrub(text)
        assert "0123456789abcdef" not in cleaned and MASK in cleaned


def test_the_traceback_of_a_logged_exception_is_scrubbed(
    protected: None, scrubbed_logger: tuple[logging.Logger, ListHandler]
) -> None:
    logger, handler = scrubbed_logger
    try:
        f"Bearer {CURLY_KEY}".encode("ascii")
    except UnicodeEncodeError as exc:
        error = exc
    try:
        raise RuntimeError(f"request failed: {error!r}") from error
    except RuntimeError:
        logger.exception("job failed")
    (line,) = handler.lines
    assert "Traceback" in line and "RuntimeError" in line
    assert "0123456789abcdef" not in line


def test_describe_bug_names_the_type_and_the_place_never_the_text() -> None:
    try:
        f"Bearer {CURLY_KEY}".encode("ascii")
    except UnicodeEncodeError as exc:
        described = describe_bug(exc)
    assert described.startswith("UnicodeEncodeError in ")
    assert "test_observability.py:" in described and "0123" not in described
