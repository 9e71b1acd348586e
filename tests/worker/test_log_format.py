"""`--log-format json`: one JSON object per line, keyed by invoice key, still scrubbed."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from worker.log_format import JsonFormatter
from worker.observability import ScrubFilter, setup_logging

from .support import ROOT


def _line(message: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("invoicer.worker", logging.INFO, __file__, 1, message, args, None)
    for name, value in extra.items():
        setattr(record, name, value)
    ScrubFilter().filter(record)
    parsed: dict[str, object] = json.loads(JsonFormatter().format(record))
    return parsed


@pytest.mark.parametrize(
    ("message", "args", "event", "key"),
    [
        ("%s %s id=%s %.2fs", ("created", "maast:INV-1", "m_9", 0.5), "created", "maast:INV-1"),
        ("retry %s in %.1fs %s", ("stax@eu:INV/7", 4.2, "timeout"), "retry", "stax@eu:INV/7"),
        ("lease lost %s: another worker took it over", ("maast:A.1",), "lease lost", "maast:A.1"),
    ],
)
def test_state_changes_carry_event_and_invoice_key(
    message: str, args: tuple[object, ...], event: str, key: str
) -> None:
    line = _line(message, *args)
    assert line["event"] == event and line["invoice_key"] == key
    assert line["level"] == "info" and line["logger"] == "invoicer.worker"


def test_extra_fields_win_and_secrets_stay_scrubbed() -> None:
    line = _line("call failed Authorization: Bearer sk-live-123", invoice_key="stax:X", event="e")
    assert line["invoice_key"] == "stax:X" and "sk-live-123" not in str(line)
    assert "invoice_key" not in _line("worker started")


def test_the_global_option_and_the_setting_select_json(tmp_path: object) -> None:
    probe = (
        "import logging, sys; from worker.cli import main; sys.argv=['invoicer', *sys.argv[1:]];\n"
        "import worker.cli.common as c\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "logging.getLogger('invoicer.worker').info('dead %s invalid', 'maast:INV-9')"
    )
    for args, env in (
        (["--log-format", "json", "redis", "stop"], {}),
        (["redis", "stop"], {"INVOICER_LOG_FORMAT": "json"}),
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(tmp_path),
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        )
        last = json.loads(done.stderr.strip().splitlines()[-1])
        assert last["invoice_key"] == "maast:INV-9" and last["event"] == "dead", done.stderr
    setup_logging()
