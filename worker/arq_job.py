"""arq's wire format as we use it: what an invoice job looks like in Redis.

One arq job per invoice and generation: the function `JOB_FUNCTION` with the
invoice key as its only argument, stored under `arq:job:<job id>` as JSON
(`serialize_job`), never pickle, so reading a job never runs code. arq builds
that body in `arq.jobs.serialize_job` as `{"t": try, "f": function, "a":
args, "k": kwargs, "et": enqueue time ms}`; our Lua scripts write the same
body themselves (enqueue, requeue, a reaped job written again), from the
template `job_template` gives them, so the format is spelled here only.

This module imports nothing from arq: `invoicer enqueue` must not pay for it.
"""

from __future__ import annotations

import json
from typing import Any

JOB_FUNCTION = "create_invoice_job"
"""The arq function every invoice job runs (`worker.runner.create_invoice_job`)."""
MAX_TRIES = 100_000
"""arq's own try limit, only a backstop: arq counts every pick-up, rate-limit
deferrals included, and arq calls nothing once it is reached, so our own
budget (`worker.retry_policy`) decides when to give up, well before."""

_ARGS_HOLE = "\x00args"
_TIME_HOLE = "\x00time"


def serialize_job(data: dict[str, Any]) -> bytes:
    """arq job serializer: JSON, so writing to Redis never means running code."""
    return json.dumps(data).encode()


def deserialize_job(raw: bytes) -> dict[str, Any]:
    """arq job deserializer (JSON)."""
    result: dict[str, Any] = json.loads(raw)
    return result


def job_template() -> list[str]:
    """A first try of `JOB_FUNCTION` as `serialize_job` writes it, cut in three
    where a script puts the arguments (a JSON array) and the enqueue time (ms).

    `'{"t": 1, "f": "create_invoice_job", "a": '`, `', "k": {}, "et": '`, `'}'`.
    """
    data = {"t": 1, "f": JOB_FUNCTION, "a": _ARGS_HOLE, "k": {}, "et": _TIME_HOLE}
    body = serialize_job(data).decode()
    before, rest = body.split(json.dumps(_ARGS_HOLE))
    between, after = rest.split(json.dumps(_TIME_HOLE))
    return [before, between, after]
