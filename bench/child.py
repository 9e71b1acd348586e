"""Child processes of the bench: `python -m bench.child invoicer|arq-noop [args]`.

`invoicer ARGS`: exactly `invoicer ARGS` (same logging set-up, same CLI),
but it prints `{"t_start": <epoch s>}` on stdout once everything is imported,
just before the command runs, so a goal can time from worker start.

`arq-noop`: a plain arq `Worker` in burst mode draining no-op jobs, with the
options `invoicer worker` gives its own arq workers (poll delay, max_jobs,
JSON serializer, keep_result...) and the settings of the environment. Prints
`{"t_start", "first", "last", "done"}` (epoch seconds, job count) at the end.

Settings come from the environment the parent built (`bench.common.child_env`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from arq.worker import Worker, func

from jobs.models import Provider
from worker.app import redis_settings, worker_options
from worker.cli import app
from worker.observability import setup_logging
from worker.settings import load_settings

NOOP_FUNCTION = "noop"
_done_at: list[float] = []


async def noop(ctx: dict[str, Any], *args: object, **kwargs: object) -> None:
    """The baseline job: record when it ran, do nothing else."""
    _done_at.append(time.time())


async def drain_noops() -> dict[str, float]:
    """Run arq's own worker over the Maast queue until empty; when jobs ran."""
    settings = load_settings(env_file=None)
    options = worker_options(settings, Provider.MAAST)
    options["functions"] = [func(noop, name=NOOP_FUNCTION)]
    worker = Worker(
        **options, redis_settings=redis_settings(settings), burst=True, handle_signals=False
    )
    t_start = time.time()
    try:
        await worker.async_run()
    finally:
        await worker.close()
    first, last = (min(_done_at), max(_done_at)) if _done_at else (t_start, t_start)
    return {"t_start": t_start, "first": first, "last": last, "done": len(_done_at)}


def main(argv: list[str]) -> None:
    """Dispatch on the first argument."""
    if argv[:1] == ["arq-noop"]:
        print(json.dumps(asyncio.run(drain_noops())), flush=True)
        return
    if argv[:1] != ["invoicer"]:
        raise SystemExit("usage: python -m bench.child invoicer ARGS... | arq-noop")
    setup_logging()
    print(json.dumps({"t_start": time.time()}), flush=True)
    app(argv[1:], standalone_mode=False)


if __name__ == "__main__":
    main(sys.argv[1:])
