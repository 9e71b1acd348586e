"""A key pasted with a curly quote, end to end: the CLI refuses it naming the
variable, and a worker it reaches anyway (past the settings' checks) pauses
the provider, leaves every invoice queued and writes the key nowhere: not in
the ledger, the dead letters, `dlq list --json`, `dlq show`, `status`, the
report, the logs, nor the AOF of its Redis (a private one, AOF on, so the
file can be read). Real processes, the sandbox over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.client import SandboxClient
from tests.worker.support import ROOT, worker_env
from worker import embedded

pytestmark = pytest.mark.slow
VISIBLE = "sk-live-4f1c9a0b7e2d"
"""The part of the key any leak would show (as written, or JSON-escaped)."""
CURLY_KEY = VISIBLE + "\u2019"
NUMBERS = [f"Q-{i}" for i in range(5)]


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Redis of this test's own with AOF on; its URL and data directory."""
    data_dir = tmp_path / "redis"
    url, _ = embedded.ensure_running(data_dir)
    yield url, data_dir
    embedded.stop(data_dir)


def run(env: dict[str, str], *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def invoicer(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run(env, "-m", "worker", *args)


def write_csv(path: Path) -> Path:
    rows = ["invoice_number,customer_id,description,quantity,unit_price"]
    rows += [f"{n},CUST0001,Consulting,1,12.50" for n in NUMBERS]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


async def test_a_curly_quote_key_is_refused_at_start_and_leaks_nowhere_past_it(
    aof_redis: tuple[str, Path], sandbox: SandboxClient, sandbox_url: str, tmp_path: Path
) -> None:
    url, data_dir = aof_redis
    env = worker_env(url, sandbox_url, INVOICER_LOG_FORMAT="text", COLUMNS="250")

    # The CLI refuses the key, naming the variable, never the value.
    refused = invoicer({**env, "STAX_API_KEY": CURLY_KEY}, "worker", "--burst")
    assert refused.returncode == 2, refused.stderr
    assert "invalid setting STAX_API_KEY" in refused.stderr and "ASCII" in refused.stderr
    assert VISIBLE not in refused.stderr + refused.stdout

    # A worker that gets it anyway pauses Stax and leaves every invoice queued,
    enqueued = invoicer(env, "enqueue", str(write_csv(tmp_path / "q.csv")), "--provider", "stax")
    assert enqueued.returncode == 0, enqueued.stderr
    batch = enqueued.stdout.split()[1]
    worker = run(
        {**env, "BYPASSED_API_KEY": CURLY_KEY}, "-m", "tests.worker.bypassed_worker", "stax"
    )
    assert worker.returncode == 1, worker.stderr[-3000:]  # stopped behind the pause, saying why
    assert "5 invoice(s) wait on its pause" in worker.stderr and "STAX_API_KEY" in worker.stderr
    assert "Traceback" not in worker.stderr and "unexpected" not in worker.stderr
    status = json.loads(invoicer(env, "status", "--json").stdout)
    (stax,) = [p for p in status["providers"] if p["provider"] == "stax"]
    assert stax["paused"] and stax["paused_until_ms"] is None
    assert "STAX_API_KEY" in stax["paused_reason"]
    assert status["counts"]["queued"] == len(NUMBERS) and status["dead_letters"] == 0
    assert (await sandbox.stats())["providers"]["stax"]["requests"] == 0  # type: ignore[index]

    # and the key is nowhere: not in anything a person or a program reads,
    shown = [worker.stderr, worker.stdout, json.dumps(status)]
    listed = invoicer(env, "dlq", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    shown += [listed.stdout, invoicer(env, "status").stdout]
    for number in NUMBERS:
        show = invoicer(env, "dlq", "show", f"stax:{number}")
        assert show.returncode == 2  # nothing was dead-lettered
        shown.append(show.stdout + show.stderr)
    report = invoicer(env, "report", "--batch", batch, "--out", "-")
    assert report.returncode == 0 and report.stdout.count("queued") == len(NUMBERS)
    shown.append(report.stdout)
    for text in shown:
        assert VISIBLE not in text
    # nor anything Redis was ever told (the AOF logs every write, in order).
    embedded.stop(data_dir)
    written = b"".join(p.read_bytes() for p in data_dir.rglob("*.aof*") if p.is_file())
    assert b"stax:Q-0" in written  # the log is there, and holds the invoices
    assert VISIBLE.encode() not in written
