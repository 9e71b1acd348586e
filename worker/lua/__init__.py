"""The Lua scripts behind every ledger change, and the key names they use.

Each `.lua` file here is one atomic transition; `common.lua` is prepended to
each of them (Redis scripts cannot import). Key formats stay in
`worker.keys.Keys`: `script_env` turns them into templates the scripts fill
in, passed as the first argument of every call, so no key name is spelled
twice. This module only loads and registers scripts; what they mean is
documented in `worker.ledger` and `worker.enqueue`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from jobs.models import Provider
from worker.keys import ARQ_IN_PROGRESS, ARQ_JOB, Keys

JOB_FUNCTION = "create_invoice_job"
"""The arq function every invoice job runs (`worker.runner.create_invoice_job`)."""

_HOLE = "\x00"


def _template(name: str) -> list[str]:
    """`invoicer:ledger:\\x00` -> ["invoicer:ledger:", ""]."""
    before, after = name.split(_HOLE)
    return [before, after]


def script_env(keys: Keys, job_function: str = JOB_FUNCTION) -> str:
    """The key templates every script receives as ARGV[1] (JSON)."""
    job_id = keys.job_id(_HOLE, 7)
    before, after = job_id.split(_HOLE)
    if not after.endswith("7"):  # keys.job_id must end with the generation
        raise ValueError(f"unexpected job id format {job_id!r}")
    env = {
        "ledger": _template(keys.ledger(_HOLE)),
        "history": _template(keys.history(_HOLE)),
        "batch": _template(keys.batch(_HOLE)),
        "members": _template(keys.batch_members(_HOLE)),
        "dead_letter": _template(keys.dead_letter(_HOLE)),
        "job_id": [before, after[:-1]],
        "totals": keys.totals(),
        "leases": keys.leases(),
        "dead_letters": keys.dead_letters(),
        "queue": {p.value: keys.queue(p) for p in Provider},
        "throughput": {p.value: keys.throughput(p) for p in Provider},
        "arq_job": ARQ_JOB,
        "arq_in_progress": ARQ_IN_PROGRESS,
        "fn": job_function,
    }
    return json.dumps(env, separators=(",", ":"))


def source(name: str) -> str:
    """The full text of script `name` (common prelude included)."""
    folder = resources.files(__name__)
    common = folder.joinpath("common.lua").read_text(encoding="utf-8")
    return common + "\n" + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Scripts:
    """The registered scripts of one Redis client (EVALSHA, reloaded on NOSCRIPT)."""

    enqueue: AsyncScript
    claim: AsyncScript
    held: AsyncScript
    dead_letter: AsyncScript
    reap: AsyncScript
    discard: AsyncScript
    reject: AsyncScript

    @classmethod
    def register(cls, redis: aioredis.Redis) -> Scripts:
        """Register every script on `redis` (no round trip until first use)."""
        names = ("enqueue", "claim", "held", "dead_letter", "reap", "discard", "reject")
        return cls(**{name: redis.register_script(source(name)) for name in names})
