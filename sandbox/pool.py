"""A bounded processing pool: at most N requests of one provider at once, FIFO.

A real provider behind a threaded server, a worker pool or a gateway queue
does not process every request the moment it arrives: requests wait their
turn and are processed when a worker is free, whether or not their client is
still waiting for the answer. That is what turns a client's read timeout
into a duplicate (the client retries; the first request lands later), so the
pool runs each job to completion in its own worker task: cancelling or
abandoning the caller never cancels the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Job(Generic[T]):
    run: Callable[[], Awaitable[T]]
    done: asyncio.Future[T]


class ProcessingPool(Generic[T]):
    """`size` worker tasks taking jobs from one FIFO queue."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._queue: asyncio.Queue[_Job[T] | None] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self.busy = 0
        self.max_waiting = 0

    @property
    def waiting(self) -> int:
        """Jobs queued and not yet started."""
        return self._queue.qsize()

    async def run(self, job: Callable[[], Awaitable[T]]) -> T:
        """Queue `job`, wait for its turn and its result."""
        if not self._workers:
            # Started lazily: the pool is built outside the server's event loop.
            self._workers = [asyncio.create_task(self._work()) for _ in range(self.size)]
        entry = _Job(job, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(entry)
        self.max_waiting = max(self.max_waiting, self.waiting)
        return await asyncio.shield(entry.done)

    def close(self) -> None:
        """Let the workers finish every job already queued, then stop."""
        for _ in self._workers:
            self._queue.put_nowait(None)

    async def _work(self) -> None:
        while (entry := await self._queue.get()) is not None:
            self.busy += 1
            try:
                entry.done.set_result(await entry.run())
            except Exception as exc:  # the caller gets it, as if it had run the job
                entry.done.set_exception(exc)
            finally:
                self.busy -= 1

    def summary(self) -> dict[str, int]:
        """The pool's size and load, JSON-ready."""
        return {
            "size": self.size,
            "busy": self.busy,
            "waiting": self.waiting,
            "max_waiting": self.max_waiting,
        }
