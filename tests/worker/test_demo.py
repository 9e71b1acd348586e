"""`invoicer demo` (what `make demo` runs) works from a clean directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.worker.terminal import run_in_pty, screen
from worker import embedded

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_month_end_exactly_once(tmp_path: Path) -> None:
    # Given a clean directory and no configuration at all,
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MAAST_", "STAX_", "INVOICER_"))
    }
    env.update(PYTHONPATH=str(ROOT), COLUMNS="120", INVOICER_DATA_DIR=str(tmp_path / "data"))
    try:
        # When the demo runs,
        done = subprocess.run(
            [sys.executable, "-m", "worker", "demo"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        embedded.stop(tmp_path / "data" / "demo")
    # Then it ends with a summary proving every valid invoice exists once at the sandbox.
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    figures = {
        label.strip(): int(value.replace(",", ""))
        for label, value in re.findall(r"^(\S.{0,29}?|  \S.{0,27}?)\s+([\d,]+)(?:\s|$)", out, re.M)
    }
    assert figures["created at the sandbox"] == 994, out[-2000:]
    assert figures["dead-lettered"] == 6 and "invalid: 6" in out
    assert figures["still waiting"] == 0
    assert figures["duplicates at the provider"] == 0
    # and last, the one command that opens the dashboard on the demo's data.
    last = out.rstrip().splitlines()[-1].split()
    assert last[0] == f"INVOICER_DATA_DIR={tmp_path / 'data' / 'demo'}", out[-500:]
    assert last[1:] == [".venv/bin/invoicer", "web"], out[-500:]
    assert "embedded Redis" in done.stderr
    # Without a terminal: no log lines about the faults it injects on purpose
    # (the summary counts them), the invalid records it mentions are shown,
    # and the view is drawn once.
    assert "WARNING" not in done.stderr, done.stderr[-3000:]
    assert "WARNING" not in out, out[-3000:]
    assert "6 invalid records kept out and dead-lettered:" in out
    assert "line 250 (invoice INV-2501-00142) field quantity: must be greater than 0" in out
    views = [
        line for line in out.splitlines() if re.match(r"batch demo-month-end-[0-9a-f]+ for ", line)
    ]
    assert len(views) == 1, out[-3000:]


def test_demo_in_a_terminal_leaves_one_view_and_fits_80_columns(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MAAST_", "STAX_", "INVOICER_"))
    }
    env.update(PYTHONPATH=str(ROOT), TERM="xterm-256color", INVOICER_DATA_DIR=str(tmp_path / "d"))
    env.pop("COLUMNS", None)
    try:
        code, output = run_in_pty(
            [sys.executable, "-m", "worker", "demo"],
            cwd=tmp_path,
            env=env,
            columns=80,
            rows=30,
            timeout_s=240,
        )
    finally:
        embedded.stop(tmp_path / "d" / "demo")
    assert code == 0, output[-3000:]
    shown = screen(output, 80)
    # The live view redrew itself in place: one heading left, not one per refresh.
    headings = [line for line in shown if re.match(r"batch demo-month-end-[0-9a-f]+ for ", line)]
    assert len(headings) == 1, "\n".join(shown[-80:])
    assert not any("WARNING" in line for line in shown)
    states = next(i for i, line in enumerate(shown) if line.startswith("queued"))
    # Every line of the view fits 80 columns: nothing wrapped into the next one.
    assert all(len(line) <= 80 for line in shown[states - 1 : states + 9])
    assert shown[states + 2].split()[2] == "994"  # created, under its own heading


def test_demo_without_its_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # An installed wheel has no samples/: the demo says what to pass, no traceback.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOICER_")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="300", INVOICER_DATA_DIR=str(tmp_path / "data"))
    missing = tmp_path / "absent.csv"
    done = subprocess.run(
        [sys.executable, "-m", "worker", "demo", "--file", str(missing)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "pass --file" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "demo").exists()  # refused before starting anything
