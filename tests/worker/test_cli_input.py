"""`invoicer enqueue` input as a user gives it: `--format`, `-` (standard
input), names without a known extension, and files without a single record
(0-byte CSV and JSONL agree: exit 2, no batch made). Separate processes
against the test Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.worker.cli_process import ROOT, assert_one_line_error, clean_env, invoicer, project
from worker.keys import Keys

SMALL_CSV = ROOT / "samples" / "small.csv"
SMALL_JSONL = ROOT / "samples" / "small.jsonl"
KEYS = Keys()


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test Redis, flushed (the commands run in other processes)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def enqueue(
    tmp_path: Path, redis_url: str, *args: str, stdin: str | None = None
) -> tuple[int, str, str]:
    done = invoicer(
        "enqueue",
        *args,
        "--provider",
        "maast",
        "--json",
        cwd=project(tmp_path),
        env=clean_env(INVOICER_REDIS_URL=redis_url),
        stdin=stdin,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(("sample", "fmt"), [(SMALL_CSV, "csv"), (SMALL_JSONL, "jsonl")])
def test_standard_input_with_format(
    redis_sync: redis.Redis, redis_url: str, tmp_path: Path, sample: Path, fmt: str
) -> None:
    code, out, err = enqueue(tmp_path, redis_url, "-", "--format", fmt, stdin=sample.read_text())
    from_file = enqueue(tmp_path, redis_url, str(sample))

    assert code in (0, 1), err
    report, again = json.loads(out), json.loads(from_file[1])
    # The same records, read the same way: the second run finds them queued.
    assert report["accepted"] == again["duplicates"] > 0
    assert report["invalid"] == again["invalid"]


def test_format_overrides_an_unknown_extension(
    redis_sync: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    export = tmp_path / "export.txt"
    export.write_bytes(SMALL_CSV.read_bytes())

    unknown = invoicer("enqueue", str(export), "--provider", "maast", cwd=project(tmp_path))
    assert_one_line_error(unknown, "export.txt", "--format csv")
    code, out, err = enqueue(tmp_path, redis_url, str(export), "--format", "csv")
    assert code == 0, err
    assert json.loads(out)["accepted"] == 5


def test_standard_input_without_format_is_a_usage_error(tmp_path: Path) -> None:
    done = invoicer(
        "enqueue", "-", "--provider", "maast", cwd=project(tmp_path), stdin=SMALL_CSV.read_text()
    )
    assert_one_line_error(done, "standard input", "--format")


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("empty.csv", "", "the file is empty"),
        ("empty.jsonl", "", "no invoices in it"),
        ("blank.jsonl", "\n  \n\n", "no invoices in it"),
        ("header.csv", SMALL_CSV.read_text().splitlines()[0] + "\n", "no invoices in it"),
    ],
)
def test_a_file_without_records_exits_2_and_makes_no_batch(
    redis_sync: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    name: str,
    content: str,
    needle: str,
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    done = invoicer(
        "enqueue",
        str(path),
        "--provider",
        "maast",
        cwd=project(tmp_path),
        env=clean_env(INVOICER_REDIS_URL=redis_url),
    )
    assert_one_line_error(done, name, needle)
    assert redis_sync.zcard(KEYS.batches()) == 0
    # And the same from standard input.
    piped = invoicer(
        "enqueue",
        "-",
        "--format",
        name.rpartition(".")[2],
        "--provider",
        "maast",
        cwd=tmp_path,
        env=clean_env(INVOICER_REDIS_URL=redis_url),
        stdin=content,
    )
    assert_one_line_error(piped, "standard input", needle)
    assert redis_sync.zcard(KEYS.batches()) == 0
