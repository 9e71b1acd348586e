"""Which worker processes are alive: one heartbeat record per process, in one Redis hash.

arq's health check is one key per queue, shared by every worker draining it:
it cannot tell three live workers from one. Each worker process here writes
its own field of `keys.workers()` (`host:pid:random` -> JSON: host, pid,
queues, started, last beat, invoices held) every `BEAT_S` seconds, and marks
it stopped on a clean exit. A reader calls a worker alive when its last beat
is under `DEAD_AFTER_S` old, dead when it is older and the worker never said
it stopped. Records of workers gone for a day are pruned by the writers.
One HGETALL reads them all: the dashboard and `/metrics` pay the same for
one worker or fifty.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from jobs.models import Provider
from worker.keys import Keys
from worker.replies import decoded

BEAT_S = 2.0
DEAD_AFTER_S = 10.0
"""Five missed beats: a worker stalled this long (or killed) shows as dead."""
FORGET_AFTER_S = 24 * 3600.0


@dataclass(frozen=True)
class WorkerInfo:
    """One worker process as its last heartbeat described it."""

    worker_id: str
    host: str
    pid: int
    queues: list[str]
    started_at_ms: int
    last_beat_ms: int
    holding: int
    stopped: bool
    status: Literal["alive", "dead", "stopped"]

    def as_dict(self) -> dict[str, object]:
        """Plain data for the API and the dashboard."""
        return {
            "worker_id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "queues": self.queues,
            "started_at_ms": self.started_at_ms,
            "last_beat_ms": self.last_beat_ms,
            "holding": self.holding,
            "status": self.status,
        }


class Heartbeat:
    """This process's heartbeat record."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        providers: Sequence[Provider],
        *,
        concurrency: int | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.worker_id = f"{self.host}:{self.pid}:{secrets.token_hex(3)}"
        self.queues = [p.value for p in providers]
        self.concurrency = concurrency
        """Jobs at once per queue: a recovery after a Redis crash counts them (`worker.epoch`)."""
        self.started_at_ms = int(time.time() * 1000)
        self._last = 0.0

    async def beat(self, holding: int, *, force: bool = False) -> None:
        """Write the record (at most every `BEAT_S`, unless `force`)."""
        now = time.monotonic()
        if not force and now - self._last < BEAT_S:
            return
        self._last = now
        await self._write(holding, stopped=False)

    async def stop(self) -> None:
        """Mark this worker stopped (a clean exit, not a death)."""
        await self._write(0, stopped=True)

    async def _write(self, holding: int, *, stopped: bool) -> None:
        now_ms = int(time.time() * 1000)
        record = {
            "host": self.host,
            "pid": self.pid,
            "queues": self.queues,
            "started_at_ms": self.started_at_ms,
            "last_beat_ms": now_ms,
            "holding": holding,
            "stopped": stopped,
        }
        if self.concurrency is not None:
            record["concurrency"] = self.concurrency
        await self.redis.hset(self.keys.workers(), self.worker_id, json.dumps(record))  # type: ignore[misc]


async def read_workers(
    redis: aioredis.Redis, keys: Keys, *, now_ms: int | None = None
) -> list[WorkerInfo]:
    """Every known worker process, newest first; prunes those gone for a day."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    raw = decoded(await redis.hgetall(keys.workers()))  # type: ignore[misc]
    found: list[WorkerInfo] = []
    forgotten: list[str] = []
    for worker_id, value in raw.items():
        try:
            data = json.loads(value)
            last = int(data["last_beat_ms"])
        except (ValueError, KeyError, TypeError):
            forgotten.append(worker_id)  # not ours to read: drop it
            continue
        if now - last > FORGET_AFTER_S * 1000:
            forgotten.append(worker_id)
            continue
        stopped = bool(data.get("stopped"))
        alive = now - last <= DEAD_AFTER_S * 1000
        found.append(
            WorkerInfo(
                worker_id=worker_id,
                host=str(data.get("host", "")),
                pid=int(data.get("pid", 0)),
                queues=[str(q) for q in data.get("queues", [])],
                started_at_ms=int(data.get("started_at_ms", 0)),
                last_beat_ms=last,
                holding=int(data.get("holding", 0)),
                stopped=stopped,
                status="stopped" if stopped else ("alive" if alive else "dead"),
            )
        )
    if forgotten:
        await redis.hdel(keys.workers(), *forgotten)  # type: ignore[misc]
    return sorted(found, key=lambda w: -w.last_beat_ms)
