"""What a batch name means, the same for `invoicer enqueue --batch` and the
Python API: one name, one batch (calls add to it); no name, a batch per run;
a name taken by another provider account refused. And the README's Python
snippet runs as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from tests.worker.cli_process import ROOT, assert_one_line_error, clean_env, invoicer, project
from tests.worker.support import invoice
from tests.worker.test_ledger import hgetall
from worker import api
from worker.enqueue import BatchMismatch
from worker.keys import Keys
from worker.settings import load_settings

KEYS = Keys()
SMALL_CSV = str(ROOT / "samples" / "small.csv")


async def test_calls_with_one_name_make_one_batch(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    s = load_settings({"INVOICER_REDIS_URL": redis_url}, env_file=None)
    first = await api.enqueue_invoices(
        [invoice("N-1"), invoice("N-2")], provider=Provider.MAAST, batch="Nightly", settings=s
    )
    second = await api.enqueue_invoices(
        [invoice("N-3"), invoice("N-1")], provider=Provider.MAAST, batch="nightly", settings=s
    )

    assert first.batch_id == second.batch_id == "nightly"
    assert (second.accepted, second.duplicates) == (1, 1)
    counts = await hgetall(redis_client, KEYS.batch("nightly"))
    assert (counts[b"total"], counts[b"queued"], counts[b"name"]) == (b"3", b"3", b"Nightly")
    unnamed = [
        (await api.enqueue_invoices([invoice(f"U-{i}")], provider=Provider.MAAST, settings=s))
        for i in range(2)
    ]
    assert unnamed[0].batch_id != unnamed[1].batch_id
    with pytest.raises(BatchMismatch, match="nightly"):
        await api.enqueue_invoices(
            [invoice("S-1")], provider=Provider.STAX, batch="nightly", settings=s
        )


def test_the_cli_means_the_same(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    env = clean_env(INVOICER_REDIS_URL=redis_url)
    cwd = project(tmp_path)
    runs = [
        invoicer(
            "enqueue",
            SMALL_CSV,
            "--provider",
            "maast",
            "--batch",
            "2026-11 month end",
            "--json",
            cwd=cwd,
            env=env,
        )
        for _ in range(2)
    ]
    reports = [json.loads(run.stdout) for run in runs]
    assert [r["batch_id"] for r in reports] == ["2026-11-month-end"] * 2
    assert (reports[0]["accepted"], reports[1]["duplicates"]) == (5, 5)
    taken = invoicer(
        "enqueue", SMALL_CSV, "--provider", "stax", "--batch", "2026-11 Month End", cwd=cwd, env=env
    )
    assert_one_line_error(taken, "--batch", "another --batch name")
    nameless = invoicer(
        "enqueue", SMALL_CSV, "--provider", "maast", "--batch", "!!!", cwd=cwd, env=env
    )
    assert_one_line_error(nameless, "--batch", "no letter or digit")


def test_the_readme_python_snippet_runs_as_written(redis_url: str, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"From Python, for other systems:\n\n```python\n(.*?)```", readme, re.S)
    assert snippet is not None
    script = tmp_path / "snippet.py"
    script.write_text(snippet.group(1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=project(tmp_path),
        env=clean_env(INVOICER_REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("nightly 1 1 [] []")
