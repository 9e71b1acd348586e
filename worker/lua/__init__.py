"""The Lua scripts behind every ledger change and every limiter decision.

Each `.lua` file here is one atomic transition; `common.lua` is prepended to
each ledger script and `limit_common.lua` to each limiter script
(`limit_*.lua`, used by `worker.limits` and `worker.pauses`): Redis scripts
cannot import. Key formats stay in `worker.keys.Keys` and arq's job format
in `worker.arq_job`: `script_env` turns them into templates the scripts fill
in, passed as the first argument of every call, so no key name is spelled
twice. This module only loads, registers and calls scripts (`ScriptBatch`
sends the calls of concurrent jobs together); what they mean is documented
in `worker.ledger`, `worker.held`, `worker.enqueue` and `worker.dead_letter`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from jobs.models import Provider
from worker.arq_job import job_template
from worker.keys import ARQ_IN_PROGRESS, ARQ_JOB, Keys
from worker.metrics import ENQUEUE_TO_CREATED_BUCKETS_S

INVOICES_PER_CALL = 50
"""Invoices per call of a bulk script (enqueue, reject): the key environment is
decoded once per call, and Redis is never blocked for long (about 1 ms per call)."""

_HOLE = "\x00"


def _template(name: str) -> list[str]:
    """`invoicer:ledger:\\x00` -> ["invoicer:ledger:", ""]."""
    before, after = name.split(_HOLE)
    return [before, after]


def script_env(keys: Keys) -> str:
    """The key templates (and the arq job template) every script receives as ARGV[1] (JSON)."""
    job_id = keys.job_id(_HOLE, 7)
    before, after = job_id.split(_HOLE)
    if not after.endswith("7"):  # keys.job_id must end with the generation
        raise ValueError(f"unexpected job id format {job_id!r}")
    env = {
        "ledger": _template(keys.ledger(_HOLE)),
        "history": _template(keys.history(_HOLE)),
        "batch": _template(keys.batch(_HOLE)),
        "members": _template(keys.batch_members(_HOLE)),
        "batch_seq": _template(keys.batch_sequence(_HOLE)),
        "batches": keys.batches(),
        "dead_letter": _template(keys.dead_letter(_HOLE)),
        "dlq_reasons": keys.dead_letter_reasons(),
        "dlq_reason": _template(keys.dead_letters_by_reason(_HOLE)),
        "dlq_batch": _template(keys.dead_letters_of_batch(_HOLE)),
        "dlq_batch_reasons": _template(keys.dead_letter_reasons_of_batch(_HOLE)),
        "dlq_batch_reason": _template(keys.dead_letters_of_batch_reason(_HOLE, "")),
        "dlq_provider": {p.value: keys.dead_letters_of_provider(p) for p in Provider},
        "dlq_provider_reason": {
            p.value: _template(keys.dead_letters_of_provider_reason(p, _HOLE)) for p in Provider
        },
        "job_id": [before, after[:-1]],
        "totals": keys.totals(),
        "account_totals": _template(keys.account_totals(_HOLE)),
        "leases": keys.leases(),
        "dead_letters": keys.dead_letters(),
        "duplicates": keys.duplicates(),
        "duplicate": _template(keys.duplicate(_HOLE)),
        "queue": {p.value: keys.queue(p) for p in Provider},
        "throughput": {p.value: keys.throughput(p) for p in Provider},
        "account_throughput": _template(keys.account_throughput(_HOLE)),
        "per_minute": {p.value: _template(keys.per_minute(p, _HOLE)) for p in Provider},
        "arq_job": ARQ_JOB,
        "arq_in_progress": ARQ_IN_PROGRESS,
        "job": job_template(),
        "metrics": keys.metrics(),
        "enqueue_buckets": list(ENQUEUE_TO_CREATED_BUCKETS_S),
    }
    return json.dumps(env, separators=(",", ":"))


def limit_source(name: str) -> str:
    """The full text of limiter script `limit_<name>.lua` (its prelude included)."""
    folder = resources.files(__name__)
    common = folder.joinpath("limit_common.lua").read_text(encoding="utf-8")
    return common + "\n" + folder.joinpath(f"limit_{name}.lua").read_text(encoding="utf-8")


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


ScriptArgs = Sequence[str | int]


@dataclass
class _Call:
    script: AsyncScript
    args: ScriptArgs
    done: asyncio.Future[Any]


@dataclass(eq=False)
class ScriptBatch:
    """Calls scripts on one Redis, sending the calls made in the same turn of
    the event loop as one pipeline.

    A worker runs dozens of jobs at once and each round trip costs a socket
    write (~70 us of CPU, more than the script itself): jobs whose calls
    fall in the same turn share one. Each caller still gets its own reply
    (or exception) back, in order; one call alone goes out as it would
    without batching. Scripts are independent: one failing fails only its
    caller, and a script Redis forgot (NOSCRIPT) is loaded and run again.
    """

    redis: aioredis.Redis
    window_s: float = 0.0
    """How long the first call of a batch waits for others (0: this turn only)."""
    _pending: list[_Call] = field(default_factory=list)

    async def __call__(self, script: AsyncScript, args: ScriptArgs) -> Any:
        """Run `script` with `args` (no keys: ours get theirs from ARGV[1])."""
        loop = asyncio.get_running_loop()
        call = _Call(script, args, loop.create_future())
        self._pending.append(call)
        if len(self._pending) == 1:
            if self.window_s > 0:
                loop.call_later(self.window_s, self._flush)
            else:
                loop.call_soon(self._flush)
        return await call.done

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        # Retrieve the task's own exception so asyncio never warns about it:
        # every caller already got its result or error through `done`.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _send(self, batch: list[_Call]) -> None:
        try:
            if len(batch) == 1:
                call = batch[0]
                _settle(call, await call.script(args=list(call.args)))
                return
            async with self.redis.pipeline(transaction=False) as pipe:
                for call in batch:
                    pipe.execute_command("EVALSHA", call.script.sha, 0, *call.args)
                replies = await pipe.execute(raise_on_error=False)
            for call, reply in zip(batch, replies, strict=True):
                if isinstance(reply, NoScriptError):
                    reply = await call.script(args=list(call.args))  # loads it, once
                _settle(call, reply)
        except BaseException as error:
            for call in batch:
                if call.done.done():
                    continue
                if isinstance(error, Exception):
                    call.done.set_exception(error)
                else:  # cancelled (shutdown): so are the callers
                    call.done.cancel()
            raise


def _settle(call: _Call, reply: Any) -> None:
    if call.done.done():  # its caller was cancelled meanwhile
        return
    if isinstance(reply, Exception):
        call.done.set_exception(reply)
    else:
        call.done.set_result(reply)
