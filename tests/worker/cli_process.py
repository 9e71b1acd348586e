"""Running `invoicer` as a user does: a separate process, a clean environment, a directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any invoicer or provider setting, plus `extra`."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MAAST_", "STAX_", "INVOICER_"))
    }
    env.update(PYTHONPATH=str(ROOT), COLUMNS="100", **extra)
    return env


def invoicer(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`invoicer ARGS` in `cwd`, waited for, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=cwd,
        env=clean_env() if env is None else env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def project(path: Path) -> Path:
    """A project directory: one holding a `.env` file (here empty)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / ".env").write_text("", encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, one `error:` line on stderr holding every needle, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]
