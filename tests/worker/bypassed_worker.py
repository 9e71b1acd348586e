"""`python -m tests.worker.bypassed_worker PROVIDER`: `invoicer worker --burst`
for one provider whose API key skipped the settings' checks.

The settings refuse a key HTTP headers cannot carry (a pasted curly quote)
before any worker starts. This stands for every way past that check (a
`ProviderConfig` built by hand, an older version's settings): the key comes
from `BYPASSED_API_KEY` and is put in with `model_copy`, which validates
nothing. Exit codes as `invoicer worker --burst`'s.
"""

from __future__ import annotations

import asyncio
import os
import sys

from pydantic import SecretStr

from jobs.models import Provider
from worker.app import run_workers
from worker.observability import setup_logging
from worker.settings import load_settings


def main() -> int:
    provider = Provider(sys.argv[1])
    key = os.environ.pop("BYPASSED_API_KEY")
    settings = load_settings(env_file=None)
    account = settings.provider(provider).model_copy(update={"api_key": SecretStr(key)})
    settings = settings.model_copy(update={provider.value: account})
    setup_logging()
    run = asyncio.run(run_workers(settings, [provider], burst=True))
    for queue in run.stalled:
        print(f"stopped: {queue.describe()}", file=sys.stderr)
    return 1 if run.stalled else 0


if __name__ == "__main__":
    sys.exit(main())
