"""What every benchmark shares: the Redis, child processes, sample files, verdict lines.

Owns the bench's plumbing only: it never decides a goal's target or verdict
(each goal module does). Redis is `INVOICER_REDIS_URL` when set, else an
embedded one started in a temporary directory; a goal flushes only the db
its URL names. Child processes get a clean environment (no MAAST_*, STAX_*,
INVOICER_* from the caller) plus exactly the settings a goal gives them, and
run in a scratch directory so no `.env` or `.invoicer/` is read or written.
"""

from __future__ import annotations

import calendar
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from worker import embedded

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SCRIPT = PROJECT_ROOT / "samples" / "make_month_end.py"
_DROPPED_PREFIXES = ("MAAST_", "STAX_", "INVOICER_", "SENTRY_")


@dataclass(frozen=True)
class Goal:
    """One goal's verdict: our figure beside the baseline measured in the same run."""

    name: str
    value: str
    target: str
    passed: bool
    baseline: str
    notes: tuple[str, ...] = ()

    def line(self) -> str:
        """`GOAL <name>: <value> (target <target>) PASS|FAIL`."""
        verdict = "PASS" if self.passed else "FAIL"
        return f"GOAL {self.name}: {self.value} (target {self.target}) {verdict}"


@dataclass(frozen=True)
class Bench:
    """Where a bench run keeps its state: the Redis URL and a scratch directory."""

    redis_url: str
    workdir: Path

    def flush(self) -> None:
        """Empty the one Redis db this run uses (never another)."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()

    def redis_version(self) -> str:
        """The server's `redis_version`."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            info = client.info("server")
            assert isinstance(info, dict)
            return str(info["redis_version"])
        finally:
            client.close()


@contextlib.contextmanager
def bench_env() -> Iterator[Bench]:
    """A scratch directory and a Redis: `INVOICER_REDIS_URL`, else an embedded one."""
    with tempfile.TemporaryDirectory(prefix="invoicer-bench-") as tmp:
        workdir = Path(tmp)
        url = os.environ.get("INVOICER_REDIS_URL")
        if url:
            yield Bench(url, workdir)
            return
        data_dir = workdir / "redis"
        embedded_url, _ = embedded.ensure_running(data_dir)
        try:
            yield Bench(embedded_url, workdir)
        finally:
            embedded.stop(data_dir)


def child_env(bench: Bench, settings: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child process: the caller's, minus our settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["INVOICER_REDIS_URL"] = bench.redis_url
    env.update(settings)
    return env


def spawn(bench: Bench, args: Sequence[str], settings: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start `python <args>` in the scratch directory; stdout piped, stderr to a log file."""
    log = open(bench.workdir / "children.log", "a")  # noqa: SIM115 (the child owns it)
    try:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=bench.workdir,
            env=child_env(bench, settings),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    finally:
        log.close()  # the child holds its own copy of the descriptor


def stop(process: subprocess.Popen[str], timeout_s: float = 15.0) -> None:
    """SIGTERM a child (graceful), then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def sample_csv(bench: Bench, count: int) -> Path:
    """A generated month-end CSV of `count` valid invoices (cached per run)."""
    path = bench.workdir / f"month-end-{count}.csv"
    if not path.exists():
        subprocess.run(
            [
                sys.executable,
                str(SAMPLE_SCRIPT),
                "--count",
                str(count),
                "--out",
                str(path),
                "--invalid",
                "0",
            ],
            check=True,
            capture_output=True,
        )
    return path


def maast_epoch_s(db_timestamp: str) -> float:
    """Maast's `db_timestamp` (`2025-01-31T12:00:00.123-0000`, UTC) as epoch seconds."""
    stamp, millis = db_timestamp[:19], db_timestamp[20:23]
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S")) + int(millis) / 1000


def median(values: Sequence[float]) -> float:
    """The median (these machines are noisy: never a single run)."""
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """The `p`-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def machine(bench: Bench) -> list[str]:
    """Lines describing where the figures come from."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"machine: nproc {os.cpu_count()}, CPU {model}, load average {load}",
        f"python {platform.python_version()}, redis {bench.redis_version()}",
    ]
