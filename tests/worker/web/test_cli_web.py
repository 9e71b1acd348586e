"""`invoicer web` as a user runs it: the bind rule, and a real uvicorn answering."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx2

from tests.worker.support import ROOT


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("INVOICER_", "MAAST_", "STAX_"))
    }
    env.update(INVOICER_REDIS_URL=redis_url, PYTHONPATH=str(ROOT), **extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_refuses_a_public_address_without_a_token(redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker", "web", "--host", "0.0.0.0"],
        env=_env(redis_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "INVOICER_ADMIN_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_serves_healthz_and_stops_on_sigterm(redis_url: str) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "worker", "web", "--port", str(port)],
        env=_env(redis_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx2.TransportError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "invoicer web did not start in 30 s"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["redis"] == "ok"
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err.decode()[-2000:]
