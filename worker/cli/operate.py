"""`invoicer pause|resume PROVIDER` and `invoicer redis stop`."""

from __future__ import annotations

from typing import Annotated

import typer

from jobs.models import Provider
from worker import embedded
from worker.cli import common
from worker.pauses import pause_provider, resume_provider


def register(app: typer.Typer) -> None:
    """Add `pause`, `resume` and the `redis` group to the app."""
    app.command("pause")(pause)
    app.command("resume")(resume)
    redis_app = typer.Typer(help="The embedded Redis (used when INVOICER_REDIS_URL is unset).")
    redis_app.command("stop")(redis_stop)
    app.add_typer(redis_app, name="redis")


def pause(
    provider: Annotated[Provider, typer.Argument(help="maast or stax")],
    reason: Annotated[str, typer.Option(help="Shown in status and logs.")] = "paused by operator",
    minutes: Annotated[
        float | None, typer.Option(min=0, help="Resume by itself after this long.")
    ] = None,
) -> None:
    """Stop every worker from calling PROVIDER; records stay queued."""
    s = common.with_redis_url(common.settings(), create=False)
    ttl_s = minutes * 60 if minutes else None
    account = s.provider(provider).account

    async def go() -> bool:
        async with common.redis_client(s) as r:
            return await pause_provider(r, common.keys(s), provider, account, reason, ttl_s)

    newly = common.run(go())
    common.out.print(f"{provider.value}: {'paused' if newly else 'already paused'} ({reason})")


def resume(provider: Annotated[Provider, typer.Argument(help="maast or stax")]) -> None:
    """Let workers call PROVIDER again (clears any pause, including a 401/403 one)."""
    s = common.with_redis_url(common.settings(), create=False)
    account = s.provider(provider).account

    async def go() -> bool:
        async with common.redis_client(s) as r:
            return await resume_provider(r, common.keys(s), provider, account)

    was = common.run(go())
    common.out.print(f"{provider.value}: {'resumed' if was else 'was not paused'}")


def redis_stop() -> None:
    """Shut the embedded Redis down (its data stays in the data directory)."""
    s = common.settings()
    stopped = embedded.stop(s.data_dir)
    common.out.print("embedded Redis stopped" if stopped else "no embedded Redis was running")
