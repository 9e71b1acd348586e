"""Which embedded Redis a command uses: the project's, from any directory of
the project, and never a new, empty one that would report a false all-clear.

Runs `invoicer` as separate processes in temporary project directories (each
marked by a `.env` file), each with its own embedded Redis, stopped afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.worker.cli_process import (
    ROOT,
    assert_one_line_error,
    clean_env,
    invoicer,
    project,
)
from worker import embedded

SMALL_CSV = str(ROOT / "samples" / "small.csv")


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Path]:
    """A project directory; whatever embedded Redis the test starts in it is stopped."""
    root = project(tmp_path / "p")
    yield root
    for data in (root / ".invoicer", root / ".invoicer" / "demo", root / "data"):
        embedded.stop(data)


def enqueue_small(cwd: Path) -> str:
    done = invoicer("enqueue", SMALL_CSV, "--provider", "maast", "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    batch_id: str = json.loads(done.stdout)["batch_id"]
    return batch_id


def status_json(cwd: Path, *args: str) -> dict[str, object]:
    done = invoicer("status", "--json", *args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, object] = json.loads(done.stdout)
    return parsed


def test_status_from_a_subdirectory_reads_the_projects_redis(proj: Path) -> None:
    batch = enqueue_small(proj)
    deep = proj / "invoices" / "2026-11"
    deep.mkdir(parents=True)

    assert status_json(deep)["total"] == 5
    assert status_json(deep, "--batch", batch)["remaining"] == 5
    report = invoicer("report", "--batch", batch, "--out", "r.csv", cwd=deep)
    assert report.returncode == 0, report.stderr
    assert len((deep / "r.csv").read_text().splitlines()) == 6
    # One data directory, at the project's root: none was made in the subdirectory.
    assert not (deep / ".invoicer").exists()


def test_enqueue_from_a_subdirectory_uses_the_projects_data_dir(proj: Path) -> None:
    sub = proj / "sub"
    sub.mkdir()
    enqueue_small(sub)

    assert (proj / ".invoicer").is_dir() and not (sub / ".invoicer").exists()
    assert status_json(proj)["total"] == 5


def test_readers_never_start_an_empty_redis(tmp_path: Path) -> None:
    elsewhere = project(tmp_path / "elsewhere")
    for args in (["status"], ["status", "--json"], ["dlq", "list"], ["pause", "stax"]):
        done = invoicer(*args, cwd=elsewhere)
        assert_one_line_error(done, f"no embedded Redis in {elsewhere / '.invoicer'}/")
        assert "INVOICER_DATA_DIR" in done.stderr
    assert not (elsewhere / ".invoicer").exists()


def test_a_reader_names_the_demos_redis_when_the_default_one_is_absent(proj: Path) -> None:
    # What `make demo` leaves: .invoicer/demo/ with data, nothing in .invoicer/ itself.
    embedded.ensure_running(proj / ".invoicer" / "demo")

    done = invoicer("status", cwd=proj)

    line = assert_one_line_error(done, "no embedded Redis")
    assert f"INVOICER_DATA_DIR={proj / '.invoicer' / 'demo'}" in line


def test_a_stopped_redis_is_restarted_over_its_data_not_emptied(proj: Path) -> None:
    enqueue_small(proj)
    stop = invoicer("redis", "stop", cwd=proj)
    assert stop.returncode == 0 and "stopped" in stop.stdout

    done = invoicer("status", "--json", cwd=proj / ".invoicer")  # even from inside it
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total"] == 5


def test_data_dir_in_the_env_file_is_relative_to_that_file(proj: Path) -> None:
    (proj / ".env").write_text("INVOICER_DATA_DIR=data\n", encoding="utf-8")
    sub = proj / "sub"
    sub.mkdir()
    enqueue_small(sub)

    assert (proj / "data").is_dir() and not (sub / "data").exists()
    assert status_json(proj)["total"] == 5
    shown = invoicer("status", cwd=sub)
    assert f"embedded Redis in {proj / 'data'}/" in shown.stderr


def test_data_dir_in_the_environment_is_relative_to_the_current_directory(proj: Path) -> None:
    enqueue_small(proj)
    env = clean_env(INVOICER_DATA_DIR=".invoicer")

    assert json.loads(invoicer("status", "--json", cwd=proj, env=env).stdout)["total"] == 5
    sub = proj / "sub"
    sub.mkdir()
    assert_one_line_error(invoicer("status", cwd=sub, env=env), f"{sub / '.invoicer'}/")
