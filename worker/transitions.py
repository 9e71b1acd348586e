"""How a held record's changes reach Redis: one script each, batched, lease-checked.

`Transitions` runs the scripts that change a record a worker holds
(`worker/lua/held.lua`, `dead_letter.lua`) for a `Ledger` and every
`worker.held.HeldEntry` it hands out. Each call carries the holder's lease
token: the script refuses a holder that lost its lease (`LeaseLost`) or asks
for a change the record's state does not allow (`InvalidTransition`), and a
change that renews the lease moves the holder's own deadline on. The calls of
concurrent jobs share round trips (`ScriptBatch`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from time import monotonic
from typing import Protocol

import redis.asyncio as aioredis

from jobs.errors import ErrorInfo
from worker.dead_letter import entry_fields
from worker.error_json import error_to_json
from worker.keys import Keys
from worker.lua import ScriptBatch, Scripts, script_env
from worker.replies import text
from worker.retry_policy import PERMANENT_REASONS, TRANSIENT_REASONS

BATCH_WINDOW_S = 0.002
"""How long a claim or transition waits for those of other jobs to share its
round trip: under load ~5 calls go together (a round trip costs the worker
~70 us of CPU); alone, a call is 2 ms later, well within the pickup budget."""


_RENEWING = frozenset(
    {"heartbeat", "sending", "created", "verified", "verify_later", "send_started"}
)
"""Transitions whose script renews the lease (worker/lua/held.lua)."""


class LeaseLost(Exception):
    """Another worker took this invoice over; stop touching it."""


class InvalidTransition(RuntimeError):
    """A holder asked for a change its record's state does not allow (a bug)."""


class Holder(Protocol):
    """What a transition needs of the entry it changes (`worker.held.HeldEntry`)."""

    invoice_key: str
    token: str
    deadline: float
    """When the lease ends by this process's clock (`monotonic()`)."""


class Transitions:
    """The scripts that change held records, on one Redis: shared by a
    `Ledger` and every entry it hands out."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, lease_ms: int, window_ms: int) -> None:
        self.redis = redis
        self.lease_ms = lease_ms
        self.window_ms = window_ms
        self.margin_s = min(1.0, lease_ms / 4000)
        """How much of a lease must be left to start a request."""
        self.on_request: Callable[[str, str], None] | None = None
        """Told (invoice key, job id) as each request leaves (`worker.journal`)."""
        self.scripts = Scripts.register(redis)
        self.env = script_env(keys)
        # Claims and transitions of concurrent jobs share round trips.
        self.batch = ScriptBatch(redis, window_s=BATCH_WINDOW_S)

    async def heartbeat(self, held: Iterable[Holder]) -> None:
        """Extend the leases of entries this process still holds (one pipeline)."""
        entries = list(held)
        if not entries:
            return
        started = monotonic()
        # Gathered calls go out together, in one pipeline (`ScriptBatch`).
        calls = [self.batch(self.scripts.held, self._held_args(e, "heartbeat")) for e in entries]
        replies = await asyncio.gather(*calls)
        for entry, reply in zip(entries, replies, strict=True):
            if text(reply[0]) == "ok":
                entry.deadline = started + self.lease_ms / 1000

    async def change(
        self,
        entry: Holder,
        op: str,
        data: str = "",
        *,
        count_failure: bool = False,
        flag: bool | None = None,
        aux: str = "",
    ) -> Sequence[bytes | str]:
        """Run one held-entry transition (see `worker/lua/held.lua`); its reply.

        `flag` is the script's op-specific flag (default: `count_failure`),
        `aux` its op-specific extra argument.
        """
        flagged = count_failure if flag is None else flag
        started = monotonic()
        reply: Sequence[bytes | str] = await self.batch(
            self.scripts.held, [*self._held_args(entry, op, data, flagged), aux]
        )
        self._check(entry, op, reply)
        if op in _RENEWING and not (len(reply) > 2 and text(reply[2]) == "released"):
            entry.deadline = started + self.lease_ms / 1000
        return reply

    async def dead_letter(
        self,
        entry: Holder,
        error: ErrorInfo,
        *,
        attempts: int,
        exhausted: bool | None,
        may_have_landed: bool | None = None,
    ) -> None:
        """Dead-letter a held entry (see `worker.held.HeldEntry.dead_letter`)."""
        if exhausted is None:
            exhausted = error.reason in TRANSIENT_REASONS
        fields = entry_fields(error, attempts=attempts, reason="exhausted" if exhausted else None)
        if may_have_landed is None:
            may_have_landed = error.reason not in PERMANENT_REASONS
        maybe_landed = "1" if may_have_landed else "0"
        reply = await self.scripts.dead_letter(
            args=[
                self.env,
                "",
                entry.invoice_key,
                entry.token,
                error_to_json(error),
                fields,
                maybe_landed,
            ]
        )
        self._check(entry, "dead_letter", reply)

    def _held_args(
        self, entry: Holder, op: str, data: str = "", count_failure: bool = False
    ) -> list[str | int]:
        flag = "1" if count_failure else "0"
        return [
            self.env,
            "",
            entry.invoice_key,
            entry.token,
            op,
            self.lease_ms,
            data,
            flag,
            self.window_ms,
        ]

    @staticmethod
    def _check(entry: Holder, op: str, reply: Sequence[bytes | str]) -> None:
        status = text(reply[0])
        if status == "lost":
            raise LeaseLost(f"{entry.invoice_key}: lease lost")
        if status == "bad":
            raise InvalidTransition(f"{entry.invoice_key}: cannot {op} from {text(reply[1])}")
