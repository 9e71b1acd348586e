"""Every usage or configuration error, in every command: one line naming what
to fix, exit 2, never a traceback (`worker.cli.common.guarded`).

Each case runs `invoicer` as a separate process in a project directory of its
own, as a user would; "Redis down" is a port nothing listens on, "wrong
password" a redis-server of this test's own that requires one.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.worker.cli_process import (
    ROOT,
    assert_one_line_error,
    clean_env,
    free_port,
    invoicer,
    project,
)
from worker import embedded

SMALL_CSV = str(ROOT / "samples" / "small.csv")
PASSWORD = "s3cret-redis-pass"

# Commands that need Redis, one of each kind (write, read, steer, dead letters).
REDIS_COMMANDS = [
    ["enqueue", SMALL_CSV, "--provider", "maast"],
    ["status"],
    ["status", "--json"],
    ["report", "--batch", "b-1", "--out", "-"],
    ["dlq", "list"],
    ["dlq", "export"],
    ["pause", "stax"],
    ["resume", "stax"],
]


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server of our own that requires PASSWORD; its port."""
    port = free_port()
    folder = tmp_path_factory.mktemp("auth-redis")
    server = subprocess.Popen(
        [
            *(str(embedded.server_binary()), "--port", str(port), "--bind", "127.0.0.1"),
            *("--requirepass", PASSWORD, "--dir", str(folder), "--save", ""),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=PASSWORD)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield port
    finally:
        client.close()
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize("args", REDIS_COMMANDS, ids=" ".join)
def test_redis_down_is_one_line_naming_the_url(tmp_path: Path, args: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = invoicer(*args, cwd=project(tmp_path), env=clean_env(INVOICER_REDIS_URL=url))
    assert_one_line_error(done, "cannot reach Redis", url, "INVOICER_REDIS_URL")


@pytest.mark.parametrize("args", REDIS_COMMANDS, ids=" ".join)
def test_wrong_redis_password_is_one_line_and_never_echoed(
    tmp_path: Path, password_redis: int, args: list[str]
) -> None:
    wrong = "not-the-password"
    url = f"redis://:{wrong}@127.0.0.1:{password_redis}/0"
    done = invoicer(*args, cwd=project(tmp_path), env=clean_env(INVOICER_REDIS_URL=url))
    line = assert_one_line_error(done, "refused our credentials", "INVOICER_REDIS_URL")
    assert wrong not in done.stderr + done.stdout and PASSWORD not in line


MALFORMED_URLS = [
    "localhost:6379",
    "http://:hunter22@localhost:6379/0",
    "redis://:hunter22@localhost:notaport/0",
    "redis://:hunter22@localhost:6379/seven",
    "unix://",
]


@pytest.mark.parametrize(
    ("args", "url"),
    [
        (args, MALFORMED_URLS[i % len(MALFORMED_URLS)])
        for i, args in enumerate([*REDIS_COMMANDS, ["worker", "--burst"], ["redis", "stop"]])
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_malformed_redis_url_is_one_line_in_every_command(
    tmp_path: Path, args: list[str], url: str
) -> None:
    env = clean_env(INVOICER_REDIS_URL=url, MAAST_API_KEY="k", STAX_API_KEY="k")
    done = invoicer(*args, cwd=project(tmp_path), env=env)
    assert_one_line_error(done, "invalid setting INVOICER_REDIS_URL")
    assert "hunter22" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["report", "--batch", "b-1", "--out", "no/such/dir/r.csv"], "does not exist"),
        (["report", "--batch", "b-1", "--out", "."], "is a directory"),
        (["dlq", "export", "--out", "no/such/dir/d.csv"], "does not exist"),
        (["dlq", "export", "--out", "."], "is a directory"),
    ],
)
def test_bad_out_path_is_one_line_before_any_work(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    # No Redis at all: the path is checked first, nothing is started for it.
    done = invoicer(*args, cwd=project(tmp_path))
    assert_one_line_error(done, "--out", needle)
    assert not (tmp_path / ".invoicer").exists()


def test_missing_and_bad_options_are_one_line(tmp_path: Path) -> None:
    missing = invoicer("enqueue", SMALL_CSV, cwd=project(tmp_path))
    assert_one_line_error(missing, "--provider", "invoicer enqueue --help")
    bad = invoicer("enqueue", SMALL_CSV, "--provider", "paypal", cwd=tmp_path)
    assert_one_line_error(bad, "'paypal' is not one of 'maast', 'stax'")
    assert "Value error" not in bad.stderr
    unknown = invoicer("frobnicate", cwd=tmp_path)
    assert_one_line_error(unknown, "No such command 'frobnicate'")


def test_bad_setting_is_one_line_for_every_command(tmp_path: Path) -> None:
    env = clean_env(INVOICER_MAX_ATTEMPTS="many")
    for args in (["status"], ["enqueue", SMALL_CSV, "--provider", "maast"], ["dlq", "list"]):
        done = invoicer(*args, cwd=project(tmp_path), env=env)
        assert_one_line_error(done, "INVOICER_MAX_ATTEMPTS")


def test_unusable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    env = clean_env(INVOICER_DATA_DIR=str(blocker / "data"))
    done = invoicer("enqueue", SMALL_CSV, "--provider", "maast", cwd=project(tmp_path), env=env)
    assert_one_line_error(done, "cannot start the embedded Redis", "INVOICER_DATA_DIR")
