"""The overview (`/`): every provider's queue, pace and pause, the workers, the last hour.

What it shows, and where each number comes from (nothing here counts):
- queue depth due / deferred, the finish rate and pauses: `worker.status.read_status`;
- queued, in flight and in doubt per provider account: `worker.status.read_account_counts`;
- the limiter's numbers (rate limit, next free slot, the 4xx budget left):
  `ProviderLimiter.budget`, the function `invoicer status` and `/metrics` use;
- the chart: `worker.activity.last_minutes`, per-minute counters the ledger keeps;
- workers: `worker.fleet.read_workers`, one heartbeat record per process;
- jobs refused as malformed (`invoicer refused list`): `worker.refused.refused_count`.
Pause and resume act through `worker.pauses.pause_provider` / `resume_provider`,
as `invoicer pause|resume` do. The live part (`/overview/live`) is polled by htmx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from jobs.models import Provider
from worker.activity import last_minutes
from worker.fleet import WorkerInfo, read_workers
from worker.ledger import State
from worker.limits import ProviderLimiter
from worker.pauses import pause_provider, resume_provider
from worker.refused import refused_count
from worker.status import ProviderStatus, StatusSnapshot, read_account_counts, read_status
from worker.web.context import Context, WebContext
from worker.web.dashboard.access import Acting, Looking
from worker.web.dashboard.chart import Chart, chart
from worker.web.dashboard.render import back, fragment, page

router = APIRouter()

PAUSED_BY = "paused from the dashboard"


@dataclass(frozen=True)
class ProviderCard:
    """One provider account as the overview shows it."""

    status: ProviderStatus
    counts: dict[State, int]
    budget: dict[str, Any]
    chart: Chart

    @property
    def name(self) -> str:
        """`maast`, `stax`."""
        return self.status.provider.value

    @property
    def failures_left(self) -> int | None:
        """Failed (4xx) requests still allowed this minute before we pause; None: no budget."""
        allowed = self.budget.get("failed_per_minute")
        if allowed is None:
            return None
        return max(0, int(allowed) - int(self.budget.get("failures_last_minute") or 0))

    @property
    def usage(self) -> float | None:
        """Invoices finished in the last minute as a share of the rate limit (None: no limit)."""
        limit = self.budget.get("rate_per_minute")
        if not limit:
            return None
        return self.status.finished_last_minute / float(limit)


@dataclass(frozen=True)
class Overview:
    """Everything on the overview, read at one moment."""

    snapshot: StatusSnapshot
    providers: list[ProviderCard]
    workers: list[WorkerInfo]
    refused: int
    """Jobs refused as malformed, waiting for a person (`invoicer refused list`)."""

    @property
    def alive(self) -> int:
        """Worker processes whose last heartbeat is recent."""
        return sum(w.status == "alive" for w in self.workers)


async def read_overview(ctx: WebContext) -> Overview:
    """One read of everything the overview shows (a few round trips, no scan)."""
    providers = list(Provider)
    snapshot = await read_status(
        ctx.redis, ctx.keys, batch=None, providers=providers, accounts=ctx.accounts
    )
    counts = await read_account_counts(ctx.redis, ctx.keys, ctx.accounts)
    cards = []
    for status in snapshot.providers:
        settings = ctx.settings.provider(status.provider)
        budget = await ProviderLimiter(ctx.redis, ctx.keys, settings).budget()
        minutes = await last_minutes(ctx.redis, ctx.keys, status.provider)
        cards.append(
            ProviderCard(
                status=status,
                counts=counts[status.provider],
                budget=budget,
                chart=chart(minutes, settings.rate_per_minute),
            )
        )
    workers = await read_workers(ctx.redis, ctx.keys)
    refused = await refused_count(ctx.redis, ctx.keys)
    return Overview(snapshot=snapshot, providers=cards, workers=workers, refused=refused)


@router.get("/")
async def overview(request: Request, ctx: Context, who: Looking) -> Response:
    """The overview page."""
    return page(request, who, "overview.html", view=await read_overview(ctx))


@router.get("/overview/live")
async def overview_live(request: Request, ctx: Context, who: Looking) -> Response:
    """The overview's live part, for htmx's polling."""
    return fragment(request, who, "_overview_live.html", view=await read_overview(ctx))


@router.post("/providers/{provider}/pause")
async def pause(ctx: Context, provider: Provider, who: Acting) -> Response:
    """Stop every worker from calling `provider` until resumed; its invoices stay queued."""
    newly = await pause_provider(ctx.redis, ctx.keys, provider, ctx.account(provider), PAUSED_BY)
    return back("/", f"{provider.value}: {'paused' if newly else 'was already paused'}")


@router.post("/providers/{provider}/resume")
async def resume(ctx: Context, provider: Provider, who: Acting) -> Response:
    """End any pause of `provider` (a 401/403 one too)."""
    was = await resume_provider(ctx.redis, ctx.keys, provider, ctx.account(provider))
    return back("/", f"{provider.value}: {'resumed' if was else 'was not paused'}")
