"""Refused jobs: what no worker may run, how it is recognised, where it goes.

Anything can sit in a queue: Redis hands a worker whatever was written
there, by us, by a bug, by another program or by hand. arq's own `run_job`
trusts the job it reads (a string `"t"`, an `"et"` of `1e300`, a hash where
the job should be, a retry counter that is not a number: each raised out of
arq and stopped the worker, and the next worker died on the same job). So a
worker checks every job before arq touches it (`worker.arq_worker` takes
jobs with a script that checks the Redis types and sizes, then
`problem_of` checks the body), and refuses what does not pass:

- one WARNING line with the job id and why (the job is gone afterwards: once);
- the job leaves its queue, in one script, into the refused-jobs list
  (`Keys.refused_jobs`: newest first, capped), which `invoicer status` counts
  and `invoicer refused list` shows;
- when the job id names an invoice of ours whose ledger record still runs
  that job, the invoice is dead-lettered (reason `refused_job`), so it is
  never stranded: `invoicer dlq requeue` writes it a fresh job.

A well-formed job for an invoice the ledger does not know goes to the same
list (`refuse_unknown`), and so does a job arq itself failed on despite the
checks. Keys that are not ours (an id without our prefix) are only taken out
of our queue: `arq:job:<id>` may be another program's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from importlib import resources
from typing import cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from jobs.errors import ErrorInfo
from jobs.models import Provider
from worker.arq_job import JOB_FUNCTION, MAX_TRIES
from worker.held import LeaseLost
from worker.keys import ARQ_IN_PROGRESS, ARQ_JOB, ARQ_RETRY, InvoiceKey, Keys
from worker.ledger import Ledger, UnreadableRecord

log = logging.getLogger("invoicer.worker")

MAX_JOB_BYTES = 4096
"""Largest job body a worker reads: ours are ~100 bytes (an invoice key and a few numbers)."""
MAX_JOB_ID_BYTES = 512
"""Longest job id a worker takes: ours are the prefix, an invoice key and a generation."""
MAX_ENQUEUE_MS = 32_503_680_000_000
"""Year 3000 in ms: later enqueue times are nonsense (and near year 9999 arq's
conversion to a datetime overflows)."""
KEEP_REFUSED = 1000
"""Entries the refused-jobs list keeps (the newest)."""
SHOWN_CHARS = 300
"""How much of a refused job (its id, its body) an entry and a log line show."""
REFUSED_REASON = "refused_job"
"""The dead-letter reason of an invoice whose job was refused."""

# worker/lua/refuse_job.lua: what it takes is in its header.
_REFUSE_LUA = resources.files("worker.lua").joinpath("refuse_job.lua").read_text("utf-8")


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` as a log line or an entry may show it: printable, and cut at `limit`."""
    safe = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return safe if len(safe) <= limit else safe[:limit] + f"... ({len(text):,} characters)"


def owned_invoice(job_id: str, keys: Keys) -> InvoiceKey | None:
    """The invoice a job id of ours names (`Keys.job_id`), or `None` if it is not ours."""
    if not job_id.startswith(keys.prefix):
        return None
    name, hash_sign, generation = job_id[len(keys.prefix) :].rpartition("#")
    if not hash_sign or not generation.isdigit():
        return None
    try:
        return InvoiceKey.parse(name)
    except ValueError:
        return None


def problem_of(job_id: str, body: bytes, keys: Keys, provider: Provider) -> str | None:
    """Why the job `body` under `job_id` may not run in `provider`'s queue (`None`: it may).

    The checks are those arq's `run_job` and our runner rely on without
    checking: the shape `worker.arq_job` writes (`{"t", "f", "a", "k", "et"}`,
    integers where arq does arithmetic), our function, one invoice-key
    argument, and an id of ours that names that invoice in this queue.
    """
    try:
        data = json.loads(body)
    except ValueError:
        return "its body is not JSON"
    if not isinstance(data, dict):
        return f"its body is a JSON {type(data).__name__}, not an object"
    function, args, kwargs = data.get("f"), data.get("a"), data.get("k")
    if function != JOB_FUNCTION:
        return f"it runs {shown(repr(function), 80)}, not {JOB_FUNCTION}"
    if not _is_int(data.get("t"), 0, MAX_TRIES - 1):
        return f'its try count "t" is {shown(repr(data.get("t")), 80)}, not a whole number'
    if not _is_int(data.get("et"), 0, MAX_ENQUEUE_MS):
        return f'its enqueue time "et" is {shown(repr(data.get("et")), 80)}, not a time in ms'
    if kwargs != {} or not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], str):
        return "its arguments are not one invoice key"
    owner = owned_invoice(job_id, keys)
    if owner is None:
        return f"its id is not one of ours ({keys.prefix}<invoice key>#<generation>)"
    if str(owner) != args[0]:
        return f"its argument {shown(args[0], 80)} is not the invoice its id names"
    if owner.provider is not provider:
        return f"it belongs to the {owner.provider.value} queue, not {provider.value}'s"
    return None


def _is_int(value: object, low: int, high: int) -> bool:
    # bool is an int to Python, never to arq's arithmetic on our behalf
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


@dataclass(frozen=True)
class RefusedJob:
    """One entry of the refused-jobs list."""

    job_id: str
    queue: str
    reason: str
    at_ms: int
    body: str
    """The start of what the job held (or what kind of key it was)."""
    invoice_key: str | None = None
    """The invoice the job named, when the id is ours."""
    dead_lettered: bool = False
    """Its invoice was dead-lettered (reason `refused_job`)."""

    def as_dict(self) -> dict[str, object]:
        """The entry as stored and as `invoicer refused list --json` prints it."""
        return {
            "job_id": self.job_id,
            "queue": self.queue,
            "reason": self.reason,
            "at_ms": self.at_ms,
            "body": self.body,
            "invoice_key": self.invoice_key,
            "dead_lettered": self.dead_lettered,
        }

    @classmethod
    def parse(cls, raw: bytes | str) -> RefusedJob:
        """An entry as the list holds it (JSON); a malformed one says so."""
        try:
            data = json.loads(raw)
            return cls(
                job_id=str(data["job_id"]),
                queue=str(data["queue"]),
                reason=str(data["reason"]),
                at_ms=int(data["at_ms"]),
                body=str(data.get("body", "")),
                invoice_key=data.get("invoice_key"),
                dead_lettered=bool(data.get("dead_lettered")),
            )
        except (ValueError, KeyError, TypeError):
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            return cls(job_id="?", queue="?", reason="unreadable entry", at_ms=0, body=shown(text))


class Refusals:
    """Refuses jobs on one Redis: the list, the queue, and the dead letter of their invoice."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, ledger: Ledger) -> None:
        self._redis = redis
        self.keys = keys
        """Key names under the installation's prefix."""
        self._ledger = ledger
        self._script: AsyncScript = redis.register_script(_REFUSE_LUA)

    def owner_of(self, job_id: str) -> InvoiceKey | None:
        """The invoice a job id of ours names (`owned_invoice`)."""
        return owned_invoice(job_id, self.keys)

    async def refuse(
        self,
        queue: str,
        job_id: bytes | str,
        why: str,
        body: str = "",
        *,
        park_invoice: bool = True,
        level: int = logging.WARNING,
    ) -> None:
        """Take `job_id` out of `queue` into the refused-jobs list and log it once.

        Args:
            park_invoice: dead-letter the invoice the id names, when the
                ledger still runs this job (False: its record is past that).
        """
        raw_id = job_id if isinstance(job_id, bytes) else job_id.encode()
        text_id = raw_id.decode(errors="backslashreplace")
        owner = owned_invoice(text_id, self.keys)
        invoice_key = str(owner) if owner is not None else None
        dead = False
        if park_invoice and invoice_key is not None:
            dead = await self._dead_letter(invoice_key, text_id, why)
        entry = RefusedJob(
            job_id=shown(text_id),
            queue=queue,
            reason=why,
            at_ms=int(time.time() * 1000),
            body=shown(body),
            invoice_key=invoice_key,
            dead_lettered=dead,
        )
        arq_keys = [prefix.encode() + raw_id for prefix in (ARQ_JOB, ARQ_RETRY, ARQ_IN_PROGRESS)]
        keys: list[bytes | str] = [queue, *arq_keys, self.keys.refused_jobs()]
        args: list[bytes | str | int] = [raw_id, json.dumps(entry.as_dict()), KEEP_REFUSED]
        await self._script(keys=keys, args=[*args, "1" if owner else "0"])
        then = f"; its invoice {invoice_key} is dead-lettered ({REFUSED_REASON})" if dead else ""
        log.log(
            level,
            "refused job %s in %s: %s; moved to the refused-jobs list (invoicer refused list)%s",
            entry.job_id,
            queue,
            why,
            then,
        )

    async def refuse_unknown(self, queue: str, job_id: str, invoice_key: str) -> None:
        """A well-formed job for an invoice the ledger does not know: listed and logged."""
        await self.refuse(queue, job_id, f"no ledger record for {invoice_key}: not ours to run")

    async def _dead_letter(self, invoice_key: str, job_id: str, why: str) -> bool:
        # A record damaged too (it does not parse, our scripts fail on it)
        # stays as it is: the refused entry names it, which is what a person needs.
        try:
            held = await self._ledger.claim(invoice_key, job_id)
        except UnreadableRecord as damaged:
            with contextlib.suppress(LeaseLost, ResponseError):
                await damaged.held.release()
            return False
        except ResponseError:
            return False
        if held is None:  # not this job's (superseded, finished, held elsewhere) or no record
            return False
        info = ErrorInfo(
            kind="RefusedJob",
            reason=REFUSED_REASON,
            message=f"its job {shown(job_id, 120)} was refused: {why}; requeue writes a fresh one",
        )
        try:
            await held.dead_letter(info, attempts=held.failures, exhausted=False)
        except ResponseError:
            return False
        finally:
            with contextlib.suppress(LeaseLost, ResponseError):
                await held.release()
        return True


async def refused_count(redis: aioredis.Redis, keys: Keys) -> int:
    """How many entries the refused-jobs list holds."""
    return int(await cast(Awaitable[int], redis.llen(keys.refused_jobs())))


async def refused_jobs(redis: aioredis.Redis, keys: Keys, limit: int = 50) -> list[RefusedJob]:
    """The newest `limit` entries of the refused-jobs list, newest first."""
    items = redis.lrange(keys.refused_jobs(), 0, max(0, limit - 1))
    raw = await cast(Awaitable[list[bytes | str]], items)
    return [RefusedJob.parse(item) for item in raw]


async def clear_refused(redis: aioredis.Redis, keys: Keys) -> int:
    """Empty the refused-jobs list; how many entries it held."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.llen(keys.refused_jobs())
        pipe.delete(keys.refused_jobs())
        count, _ = await pipe.execute()
    return int(count)
