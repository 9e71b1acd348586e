"""Which Redis server instance the ledger's scripts run on, and what follows a new one.

Under `appendfsync everysec` a Redis that restarts after a host crash (or a
failover to an asynchronous replica) may come back without the last second
or two of writes it had acknowledged: a `sending` mark whose request did
leave, a `created` mark whose invoice does exist. Trusting such a ledger
creates duplicates. So every ledger script (`worker/lua/common.lua`) first
compares the server's run id (`INFO server`, new at every start of a Redis
process) with the one its caller checked, and refuses to run elsewhere
(`EPOCH <run id>`), in the same atomic step as its own work. The caller's
process then checks the new instance here, once, before any of its calls is
sent again:

1. `recover.lua`, atomically: if this instance is new to the ledger (its run
   id is not the one in `keys.epoch()`), and the previous one could have
   lost acknowledged writes, mark every record held then, and the head of
   every queue, to be looked up before anything is created and not created
   again until a request sent before the crash can no longer land. The first
   process to get there does it; for the others the epoch is current.
2. the process's own part (`on_new_server` hooks): a worker re-asserts what
   it knows and Redis may have forgotten (`worker.journal`).

A `SCRIPT FLUSH` (same instance) is only a reload. docs/operations.md
("Redis") explains what this covers and what it cannot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from worker.durability import Durability, read_durability, startup_warning
from worker.replies import text

log = logging.getLogger("invoicer.redis")

REFUSED = "EPOCH"
"""How a ledger script's reply starts when it ran on another server instance."""
MAX_CHECKS = 5
"""Checks in a row before giving up (Redis restarting over and over)."""


class EpochError(RuntimeError):
    """Redis kept changing instance while we checked it."""


def refused_on(error: object) -> str | None:
    """The run id a ledger script found, if `error` is its refusal; else `None`."""
    if isinstance(error, ResponseError) and not isinstance(error, NoScriptError):
        message = str(error)
        if message.startswith(REFUSED):
            return message[len(REFUSED) :].strip()
    return None


def with_run_id(env: str, run_id: str) -> str:
    """The key environment `env` (a JSON object) with the run id the scripts check."""
    if not env.endswith("}"):
        raise ValueError("a ledger script's first argument is its key environment (JSON)")
    return f'{env[:-1]},"run_id":{json.dumps(run_id)}}}'


@dataclass(frozen=True)
class RecoveryParams:
    """What a recovery must cover (a worker's own settings; defaults otherwise)."""

    lease_ms: int = 10_000
    window_ms: int = 300_000
    """The landing window: how long a request that left may still be processed."""
    concurrency: int = 100
    """Slots to assume per worker whose heartbeat record does not say."""
    head_extra: int = 500
    """Invoices marked per queue beyond twice the slots of the workers alive."""
    worker: bool = False
    """A worker's settings: stored as the fleet's lease and window."""


@dataclass(frozen=True)
class NewServer:
    """A Redis instance this process had not seen, as `recover.lua` found it."""

    previous_run_id: str
    """The instance the ledger was last checked on ("" if none was)."""
    run_id: str
    marked: int
    """Invoices marked for lookup by this process (0 when another one did it)."""
    lossy: bool
    """The previous instance could have lost acknowledged writes."""


Hook = Callable[[NewServer], Awaitable[None]]


class Epoch:
    """The server instance one Redis client's ledger calls are checked against.

    One per client (`Epoch.of`), shared by every ledger script call made
    through it (`worker.lua.LedgerScript`, `worker.lua.ScriptBatch`).
    """

    _registry: ClassVar[weakref.WeakKeyDictionary[aioredis.Redis, Epoch]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, redis: aioredis.Redis, params: RecoveryParams | None = None) -> None:
        self.redis = redis
        self.params = params or RecoveryParams()
        self.run_id: str | None = None
        self.durability: Durability | None = None
        self.changes = 0
        """How often the server instance changed under this process."""
        self.seen: list[NewServer] = []
        self.last_ok: float | None = None
        """`monotonic()` when a ledger call last ran on the checked instance (sent then)."""
        self._hooks: list[Hook] = []
        self._check: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, redis: aioredis.Redis) -> Epoch:
        """The epoch of `redis` (made on first use)."""
        epoch = cls._registry.get(redis)
        if epoch is None:
            epoch = cls._registry[redis] = cls(redis)
        return epoch

    def configure(self, params: RecoveryParams) -> None:
        """Use a worker's lease, window and concurrency for recoveries."""
        self.params = params

    def answered(self, sent_at: float) -> None:
        """A ledger call sent at `sent_at` ran on the checked instance."""
        if self.last_ok is None or sent_at > self.last_ok:
            self.last_ok = sent_at

    def on_new_server(self, hook: Hook) -> None:
        """Call `hook` after a recovery, before any other ledger call is sent again."""
        self._hooks.append(hook)

    async def env(self, env: str) -> str:
        """`env` for the instance checked last, checking one first if none was."""
        while True:
            check = self._check
            if check is not None and check is not asyncio.current_task():
                await asyncio.shield(check)
                continue
            if self.run_id is None:
                await self.refused(env, None)
                continue
            return with_run_id(env, self.run_id)

    async def refused(self, env: str, run_id: str | None) -> None:
        """A script refused to run for `run_id` (`None`: nothing checked yet): check now.

        Concurrent refusals share one check; a refusal for an instance that
        was already replaced returns at once.
        """
        if self._check is None:
            if self.run_id is not None and self.run_id != run_id:
                return
            self._check = asyncio.ensure_future(self._certify(env))
            self._check.add_done_callback(self._checked)
        await asyncio.shield(self._check)

    def _checked(self, task: asyncio.Task[None]) -> None:
        if self._check is task:
            self._check = None
        if not task.cancelled():
            task.exception()  # retrieved here; the callers get it through `refused`

    async def _certify(self, env: str) -> None:
        for _ in range(MAX_CHECKS):
            durability = await read_durability(self.redis)
            try:
                reply = await self._recover(env, durability)
            except ResponseError as error:
                if refused_on(error) is not None:
                    continue  # a new instance again, between the INFO and the script
                raise
            break
        else:
            raise EpochError(f"Redis changed instance {MAX_CHECKS} times while we checked it")
        before = self.run_id
        outcome = text(reply[0])
        previous, marked, lossy = text(reply[1]), int(text(reply[2])), text(reply[3]) == "1"
        if before is not None and previous and before != previous:
            lossy = True  # it changed more than once while this process looked away
        found = NewServer(previous, durability.run_id, marked, lossy)
        self.run_id, self.durability = durability.run_id, durability
        if before is None and self.params.worker:  # enqueue says it in its report
            warning = startup_warning(durability)
            if warning:
                log.warning("%s", warning)
        if outcome != "current":
            self._report(found, outcome)
        if before is not None and before != durability.run_id:
            self.changes += 1
            self.seen.append(found)
            for hook in self._hooks:
                await hook(found)

    async def _recover(self, env: str, durability: Durability) -> list[bytes | str]:
        from worker.lua import source  # worker.lua calls through this module

        p = self.params
        args = [
            with_run_id(env, durability.run_id),
            "",
            durability.policy.value,
            durability.replicas,
            p.lease_ms,
            p.window_ms,
            p.concurrency,
            p.head_extra,
            "1" if p.worker else "0",
            self.run_id or "",
        ]
        script = self.redis.register_script(source("recover"))
        reply: list[bytes | str] = await script(args=args)
        return reply

    @staticmethod
    def _report(found: NewServer, outcome: str) -> None:
        if not found.lossy:
            if outcome == "recovered":
                log.info(
                    "Redis is a new instance (run id %s, was %s); it lost no acknowledged writes",
                    found.run_id[:8],
                    found.previous_run_id[:8],
                )
            return
        was = found.previous_run_id[:8] or "unknown: the ledger's epoch was missing"
        log.warning(
            "Redis is a new instance (run id %s, was %s) that may have lost acknowledged writes: "
            "%d invoice(s) in flight or next in line will be looked up before any create "
            '(docs/operations.md, "Redis")',
            found.run_id[:8],
            was,
            found.marked,
        )
