"""What Redis promises about the writes it acknowledged, and what we make of it.

Redis acknowledges a write before it is on disk unless it runs with `appendonly
yes` and `appendfsync always`. With `everysec` (the usual production setting)
a host crash or power loss loses about the last second of acknowledged
writes; with `appendfsync no` the operating system decides (up to ~30 s on
Linux); with `appendonly no` everything since the last RDB snapshot. A
failover to an asynchronous replica loses what it had not received yet, under
any setting.

`read_durability` reads the settings (`CONFIG GET`, which managed Redis
services may refuse: then we say we could not check), `startup_warning` says
at start what they risk, naming the setting, and `confirm_enqueued` decides
whether an `enqueue` may report its records as safe. Losing writes is
detected and recovered from by `worker.epoch`; docs/operations.md ("Redis")
explains all of it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from worker.replies import text

SETTLE_S = 2.0
"""Under `everysec`, how old a write must be before we count it on disk: Redis
starts an fsync every second and delays writes when one takes longer than
two (`aof_delayed_fsync` counts those)."""
SETTLE_MAX_S = 10.0
"""How long `confirm_enqueued` waits for a pending fsync before giving up."""


class Policy(StrEnum):
    """How Redis persists acknowledged writes."""

    ALWAYS = "always"
    """`appendonly yes`, `appendfsync always`: on disk before the reply."""
    EVERYSEC = "everysec"
    """`appendonly yes`, `appendfsync everysec`: a host crash loses ~1-2 s."""
    OS = "no"
    """`appendonly yes`, `appendfsync no`: the OS flushes when it likes (~30 s)."""
    OFF = "off"
    """`appendonly no`: only RDB snapshots, if any."""
    UNKNOWN = "unknown"
    """`CONFIG GET` refused (managed Redis): we cannot tell."""


@dataclass(frozen=True)
class Durability:
    """One server's persistence settings and identity, as read at one moment."""

    policy: Policy
    run_id: str
    replicas: int = 0
    """Replicas connected (a failover to one may lose what it had not received)."""
    refused: str = ""
    """Why `CONFIG GET` failed, when it did."""

    @property
    def loses_acknowledged_writes(self) -> bool:
        """Whether a crash of this server can lose writes it acknowledged."""
        return self.policy is not Policy.ALWAYS or self.replicas > 0


async def read_durability(redis: aioredis.Redis) -> Durability:
    """The persistence settings and run id of the server `redis` talks to."""
    info = cast(dict[str, Any], await redis.info("server"))
    replication = cast(dict[str, Any], await redis.info("replication"))
    replicas = int(replication.get("connected_slaves", 0) or 0)
    try:
        reply = await redis.execute_command("CONFIG", "GET", "append*")  # type: ignore[no-untyped-call]
    except ResponseError as error:  # CONFIG disabled or renamed
        return Durability(Policy.UNKNOWN, str(info["run_id"]), replicas, str(error)[:200])
    config = _pairs(reply)
    if config.get("appendonly") != "yes":
        policy = Policy.OFF
    else:
        policy = {"always": Policy.ALWAYS, "everysec": Policy.EVERYSEC, "no": Policy.OS}.get(
            config.get("appendfsync", ""), Policy.UNKNOWN
        )
    return Durability(policy, str(info["run_id"]), replicas)


def _pairs(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):  # RESP3, or redis-py's parsed form
        return {text(k): text(v) for k, v in reply.items()}
    values = [text(v) for v in reply]
    return dict(zip(values[::2], values[1::2], strict=True))


_RISK = {
    Policy.EVERYSEC: (
        "Redis runs with appendfsync everysec: a host crash can lose the last second or two "
        "of acknowledged writes. Workers detect the restart and look invoices up before "
        'creating any that may have been in flight (docs/operations.md, "Redis"); '
        "appendfsync always makes every acknowledged write durable"
    ),
    Policy.OS: (
        "Redis runs with appendfsync no: a host crash can lose up to ~30 s of acknowledged "
        "writes, more than the recovery after a restart covers; set appendfsync always "
        "(or everysec)"
    ),
    Policy.OFF: (
        "Redis runs with appendonly no: a restart loses every write since its last snapshot, "
        "and invoices in flight then may be created twice or forgotten; set appendonly yes "
        "and appendfsync always (or everysec)"
    ),
    Policy.UNKNOWN: (
        "could not read Redis's persistence settings ({refused}): make sure it runs with "
        "appendonly yes and appendfsync always (or everysec)"
    ),
}


def startup_warning(durability: Durability) -> str | None:
    """What the settings risk, naming the setting to change; `None` if nothing."""
    lines = []
    template = _RISK.get(durability.policy)
    if template is not None:
        lines.append(template.format(refused=durability.refused or "CONFIG GET refused"))
    if durability.replicas:
        lines.append(
            f"Redis has {durability.replicas} replica(s): a failover to one loses what it had "
            "not received yet; workers treat it like a crash"
        )
    return "; ".join(lines) or None


@dataclass(frozen=True)
class Confirmation:
    """Whether the records an enqueue wrote are safe from a Redis crash."""

    durable: bool | None
    """True: on disk; False: Redis restarted meanwhile, some may be lost; None: not promised."""
    message: str


async def confirm_enqueued(
    redis: aioredis.Redis, before: Durability, *, last_write_at: float
) -> Confirmation:
    """Wait until what was enqueued since `before` was read is on disk, if Redis can say.

    Under `always` it is at once. Under `everysec`, once the last write is
    `SETTLE_S` old and no fsync is pending or was delayed, with the same server
    instance throughout (its run id). A changed run id means Redis restarted
    (or failed over) during the run: some records may be lost, and the user is
    told to run the same command again (enqueueing is idempotent).

    Args:
        last_write_at: `time.monotonic()` when the last write was acknowledged.
    """
    again = "run the same command again to be sure (it is safe: enqueueing is idempotent)"
    if before.policy is Policy.EVERYSEC:
        await asyncio.sleep(max(0.0, last_write_at + SETTLE_S - time.monotonic()))
        persistence = await _settled(redis)
    else:
        persistence = {}
    now = await read_durability(redis)
    if now.run_id != before.run_id:
        lost = "Redis restarted during this run: some records may be lost"
        return Confirmation(False, f"{lost}; {again}")
    if before.policy is Policy.ALWAYS:
        return Confirmation(True, "on disk (appendfsync always)")
    if before.policy is Policy.EVERYSEC:
        if persistence.get("aof_last_write_status", "ok") != "ok":
            failed = "Redis reports a failed AOF write"
            return Confirmation(False, f"{failed}; {again} once it is fixed")
        if int(persistence.get("aof_pending_bio_fsync", 0) or 0):
            slow = "Redis's disk is slow (an fsync is still pending)"
            return Confirmation(None, f"{slow}; if Redis crashes now, {again}")
        return Confirmation(True, f"on disk (appendfsync everysec, after {SETTLE_S:.0f} s)")
    return Confirmation(None, startup_warning(before) or "not promised")


async def _settled(redis: aioredis.Redis) -> dict[str, Any]:
    """INFO persistence once no fsync is pending (or `SETTLE_MAX_S` passed)."""
    deadline = time.monotonic() + SETTLE_MAX_S
    while True:
        persistence = cast(dict[str, Any], await redis.info("persistence"))
        pending = int(persistence.get("aof_pending_bio_fsync", 0) or 0)
        if not pending or time.monotonic() > deadline:
            return persistence
        await asyncio.sleep(0.1)
