"""`invoicer demo --serve`: the dashboard is up on the demo's data until Ctrl-C, then all stops."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import psutil
import pytest

from worker import embedded

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"dashboard on (http://127\.0\.0\.1:\d+/)")


def wait_for(path: Path, pattern: re.Pattern[str] | str, process: subprocess.Popen[bytes]) -> str:
    """The first match of `pattern` in the file `path`, as the process writes it."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        found = re.search(pattern, text)
        if found:
            return found.group(1) if found.groups() else found.group(0)
        assert process.poll() is None, f"the demo exited early:\n{text[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in:\n{path.read_text(errors='replace')[-3000:]}")


def start(tmp_path: Path, sample: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MAAST_", "STAX_", "INVOICER_"))
    }
    env.update(PYTHONPATH=str(ROOT), COLUMNS="120", INVOICER_DATA_DIR=str(tmp_path / "data"))
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker", "demo", "--serve", "--port", "0", "--file", sample],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )
    return process, out, err


def interrupt_and_check_all_stopped(
    process: subprocess.Popen[bytes], url: str, data_dir: Path
) -> int:
    """Ctrl-C (SIGINT to the whole group, as a terminal sends it); then nothing is left."""
    started = [process.pid] + [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
    assert len(started) >= 2  # the demo and its provider sandbox at least
    assert embedded.is_running(data_dir)
    os.killpg(process.pid, signal.SIGINT)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    time.sleep(0.2)
    alive = [p for p in started if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not alive, f"still running: {alive}"
    assert not embedded.is_running(data_dir), "the demo's Redis was left running"
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    return code


def test_the_dashboard_serves_the_demo_data_until_ctrl_c(tmp_path: Path) -> None:
    process, out, err = start(tmp_path, str(ROOT / "samples" / "small.csv"))
    data_dir = tmp_path / "data" / "demo"
    try:
        url = wait_for(err, URL, process)
        assert httpx2.get(url, timeout=10).status_code == 200  # up while the demo runs
        batch = wait_for(out, r"demo's data at http://127\.0\.0\.1:\d+/batches/(\S+)", process)
        page = httpx2.get(f"{url}batches/{batch}", timeout=10)
        assert page.status_code == 200 and 'id="batch-progress"' in page.text
        assert "local, no login" in page.text  # no token set: loopback only, no login
        time.sleep(1)
        assert process.poll() is None  # it waits for Ctrl-C: nobody has pressed it
        code = interrupt_and_check_all_stopped(process, url, data_dir)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        embedded.stop(data_dir)
    assert code == 0, err.read_text()[-3000:]
    assert "duplicates at the provider" in out.read_text()
    assert "Traceback" not in err.read_text()


def test_ctrl_c_during_the_run_stops_everything_too(tmp_path: Path) -> None:
    process, out, err = start(tmp_path, str(ROOT / "samples" / "month-end.csv"))
    data_dir = tmp_path / "data" / "demo"
    try:
        url = wait_for(err, URL, process)
        wait_for(out, r"enqueued [\d,]+ invoices", process)
        code = interrupt_and_check_all_stopped(process, url, data_dir)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        embedded.stop(data_dir)
    # The workers finished what they held; the summary says what is still waiting.
    assert code in (0, 1, 130), err.read_text()[-3000:]
    assert "stopped" in err.read_text()
    # (The sandbox may log the held requests it cancels as it stops; the demo itself may not fail.)
    assert "worker/cli/" not in err.read_text()
