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
import hashlib
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from time import monotonic
from typing import Any, ClassVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError

from jobs.models import Provider
from worker.arq_job import job_template
from worker.epoch import Epoch, EpochError, refused_on
from worker.keys import ARQ_IN_PROGRESS, ARQ_JOB, Keys
from worker.metrics import ENQUEUE_TO_CREATED_BUCKETS_S

INVOICES_PER_CALL = 50
"""Invoices per call of a bulk script (enqueue, reject): the key environment is
decoded once per call, and Redis is never blocked for long (about 1 ms per call)."""

MAX_ROUNDS = 4
"""Times a call is sent before giving up (reloads and new instances in between)."""

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
        "epoch": keys.epoch(),
        "epochs": keys.epochs(),
        "workers": keys.workers(),
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


ScriptArgs = Sequence[str | int | bytes]

_SHA: dict[str, tuple[str, str]] = {}
"""Script name -> (full source, SHA1): the files never change while we run."""


def _compiled(name: str) -> tuple[str, str]:
    found = _SHA.get(name)
    if found is None:
        text = source(name)
        found = _SHA[name] = (text, hashlib.sha1(text.encode()).hexdigest())
    return found


async def _evalsha(redis: aioredis.Redis, sha: str, args: ScriptArgs) -> Any:
    # execute_command, not evalsha: redis-py types EVALSHA's arguments as str only.
    return await redis.execute_command("EVALSHA", sha, 0, *args)  # type: ignore[no-untyped-call]


@dataclass(frozen=True, eq=False)
class LedgerScript:
    """One ledger script on one Redis client, every call checked against its epoch.

    Called like redis-py's `AsyncScript` (`await script(args=[env, ...])`).
    A call refused on a new server instance (`worker.epoch`) is checked and
    sent again by `ScriptBatch`, which also batches concurrent calls.
    """

    name: str
    source: str
    sha: str
    redis: aioredis.Redis

    async def __call__(self, *, args: ScriptArgs, client: Pipeline | None = None) -> Any:
        """Run the script with `args` (ARGV[1] its key environment) on the checked instance.

        With `client` (a transaction that needs the script among its other
        commands), the call is only queued, for the instance checked now: if
        Redis changes instance before the transaction runs, its reply is the
        refusal (`worker.epoch.refused_on`), and the caller runs it again.
        """
        if client is None:
            return await ScriptBatch.shared(self.redis)(self, args)
        sent = [await Epoch.of(self.redis).env(str(args[0])), *args[1:]]
        # redis-py's own script object: the transaction loads it if Redis forgot it.
        script = self.redis.register_script(self.source)
        return await script(args=sent, client=client)

    async def direct(self, args: ScriptArgs) -> Any:
        """Run it with `args` as they are (ARGV[1] already names an instance): for
        `worker.epoch` hooks, which run while every other call waits."""
        try:
            return await _evalsha(self.redis, self.sha, args)
        except NoScriptError:
            await self.redis.script_load(self.source)
            return await _evalsha(self.redis, self.sha, args)


@dataclass(frozen=True)
class Scripts:
    """The ledger scripts of one Redis client (EVALSHA, reloaded on NOSCRIPT,
    refused and re-sent on a new server instance: `worker.epoch`)."""

    enqueue: LedgerScript
    claim: LedgerScript
    held: LedgerScript
    dead_letter: LedgerScript
    reap: LedgerScript
    discard: LedgerScript
    reject: LedgerScript
    cancel: LedgerScript
    reassert: LedgerScript

    @classmethod
    def register(cls, redis: aioredis.Redis) -> Scripts:
        """The scripts on `redis` (no round trip until first use)."""
        names = (
            "enqueue", "claim", "held", "dead_letter", "reap", "discard", "reject", "cancel",
            "reassert",
        )  # fmt: skip
        return cls(**{name: LedgerScript(name, *_compiled(name), redis) for name in names})


@dataclass
class _Call:
    script: LedgerScript
    env: str
    """ARGV[1] as the caller gave it (without the instance)."""
    args: list[str | int | bytes]
    """As sent: ARGV[1] names the instance checked (`worker.epoch.with_run_id`)."""
    run_id: str
    done: asyncio.Future[Any]


@dataclass(eq=False)
class ScriptBatch:
    """Calls ledger scripts on one Redis, sending the calls made in the same
    turn of the event loop as one pipeline.

    A worker runs dozens of jobs at once and each round trip costs a socket
    write (~70 us of CPU, more than the script itself): jobs whose calls
    fall in the same turn share one. Each caller still gets its own reply
    (or exception) back, in order; one call alone goes out as it would
    without batching. Scripts are independent: one failing fails only its
    caller. A script Redis forgot (NOSCRIPT) is loaded and run again; one
    refused because Redis is a new instance (`worker.epoch`) is run again
    once this process has checked that instance.
    """

    redis: aioredis.Redis
    window_s: float = 0.0
    """How long the first call of a batch waits for others (0: this turn only)."""
    _pending: list[_Call] = field(default_factory=list)

    _shared: ClassVar[weakref.WeakKeyDictionary[aioredis.Redis, ScriptBatch]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def shared(cls, redis: aioredis.Redis) -> ScriptBatch:
        """The batch (this turn only) that plain script calls on `redis` share."""
        batch = cls._shared.get(redis)
        if batch is None:
            batch = cls._shared[redis] = cls(redis)
        return batch

    async def __call__(self, script: LedgerScript, args: ScriptArgs) -> Any:
        """Run `script` with `args` (no keys: ours get theirs from ARGV[1])."""
        epoch = Epoch.of(self.redis)
        env = str(args[0])
        sent = await epoch.env(env)
        loop = asyncio.get_running_loop()
        call = _Call(script, env, [sent, *args[1:]], epoch.run_id or "", loop.create_future())
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
            pending = batch
            for _ in range(MAX_ROUNDS):
                pending = await self._round(pending)
                if not pending:
                    return
            for call in pending:
                _settle(call, EpochError(f"{call.script.name}: Redis keeps changing instance"))
        except BaseException as error:
            for call in batch:
                if call.done.done():
                    continue
                if isinstance(error, Exception):
                    call.done.set_exception(error)
                else:  # cancelled (shutdown): so are the callers
                    call.done.cancel()
            raise

    async def _round(self, calls: list[_Call]) -> list[_Call]:
        """Send `calls`, settle what can be; returns those to send again."""
        sent_at = monotonic()
        replies = await self._replies(calls)
        again: list[_Call] = []
        refused: _Call | None = None
        ran = False
        forgotten: dict[str, str] = {}
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError):
                forgotten[call.script.sha] = call.script.source
                again.append(call)
            elif refused_on(reply) is not None:
                refused = refused or call
                again.append(call)
            else:
                ran = ran or not isinstance(reply, Exception)
                _settle(call, reply)
        if ran and refused is None:  # the script ran: proof the checked instance answered
            Epoch.of(self.redis).answered(sent_at)
        for text in forgotten.values():
            await self.redis.script_load(text)
        if refused is not None:
            epoch = Epoch.of(self.redis)
            await epoch.refused(refused.env, refused.run_id)
            for call in again:
                call.args[0] = await epoch.env(call.env)
                call.run_id = epoch.run_id or ""
        return [call for call in again if not call.done.done()]

    async def _replies(self, calls: list[_Call]) -> list[Any]:
        if len(calls) == 1:
            call = calls[0]
            try:
                return [await _evalsha(self.redis, call.script.sha, call.args)]
            except ResponseError as error:  # NOSCRIPT, a refusal, or the script's own error
                return [error]
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.execute_command("EVALSHA", call.script.sha, 0, *call.args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies


def _settle(call: _Call, reply: Any) -> None:
    if call.done.done():  # its caller was cancelled meanwhile
        return
    if isinstance(reply, Exception):
        call.done.set_exception(reply)
    else:
        call.done.set_result(reply)
