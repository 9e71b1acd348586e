"""What a batch name means, the same for `invoicer enqueue --batch` and the
Python API (and HTTP, which calls it): a label; every run is a batch of its
own whose id starts with the name. And the README's Python snippet runs as
written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from jobs.models import Provider
from tests.worker.cli_process import ROOT, clean_env, invoicer, project
from tests.worker.support import invoice
from tests.worker.test_ledger import hgetall
from worker import api
from worker.keys import Keys
from worker.settings import load_settings

KEYS = Keys()
SMALL_CSV = str(ROOT / "samples" / "small.csv")


async def test_each_call_with_a_name_is_a_batch_of_its_own(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    s = load_settings({"INVOICER_REDIS_URL": redis_url}, env_file=None)
    first = await api.enqueue_invoices(
        [invoice("N-1"), invoice("N-2")], provider=Provider.MAAST, batch="nightly", settings=s
    )
    second = await api.enqueue_invoices(
        [invoice("N-3"), invoice("N-1")], provider=Provider.MAAST, batch="nightly", settings=s
    )

    assert first.batch_id != second.batch_id
    assert first.batch_id.startswith("nightly-") and second.batch_id.startswith("nightly-")
    # N-1 stays in the batch that took it first; the second run counts it as queued.
    assert (second.accepted, second.duplicates, second.records) == (1, 1, 2)
    one = await hgetall(redis_client, KEYS.batch(first.batch_id))
    two = await hgetall(redis_client, KEYS.batch(second.batch_id))
    assert (one[b"total"], two[b"total"], one[b"name"], two[b"name"]) == (
        b"2",
        b"1",
        b"nightly",
        b"nightly",
    )


def test_the_cli_means_the_same(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    env = clean_env(INVOICER_REDIS_URL=redis_url)
    args = ("enqueue", SMALL_CSV, "--provider", "maast", "--batch", "2026-11 month end", "--json")
    runs = [json.loads(invoicer(*args, cwd=project(tmp_path), env=env).stdout) for _ in range(2)]

    assert runs[0]["batch_id"] != runs[1]["batch_id"]
    assert all(r["batch_id"].startswith("2026-11-month-end-") for r in runs)
    assert (runs[0]["accepted"], runs[1]["duplicates"]) == (5, 5)


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
    assert re.match(r"nightly-[0-9a-f]{8} 1 1 \[\] \[\]$", done.stdout.strip()), done.stdout
