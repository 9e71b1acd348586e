"""The inspection and fault API under /_sandbox/ (no auth, never counted in stats).

Read what was created (per provider, with per-key counts and duplicates,
and per number the live and sent copies), request rates, status counts,
processing-pool load and fault events; pay an invoice as its customer
would; change faults or the whole configuration; reset. JSON is written
with `wire.encode`, so amounts keep their exact digits (FastAPI's encoder
would turn Decimals into floats).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Response

from sandbox.config import Faults, SandboxConfig
from sandbox.core import Sandbox
from sandbox.wire import encode

ProviderName = Literal["maast", "stax"]


def _json(doc: object) -> Response:
    return Response(encode(doc), media_type="application/json")


def public_config(config: SandboxConfig) -> dict[str, object]:
    """The configuration without its API keys."""
    return config.model_dump(
        mode="json", exclude={"maast_keys", "maast_forbidden_keys", "stax_keys"}
    )


def inspection_router(sandbox: Sandbox) -> APIRouter:
    """The /_sandbox routes, bound to `sandbox`."""
    router = APIRouter(prefix="/_sandbox", tags=["sandbox"])

    @router.get("/health")
    async def health() -> Response:
        """Liveness: the server answers."""
        return _json({"ok": True})

    @router.get("/stats")
    async def stats() -> Response:
        """Request counts per second and by status, busiest second, fault events."""
        state = sandbox.state
        return _json(
            {
                "providers": {p: s.summary() for p, s in state.stats.items()},
                "fault_events": state.fault_events,
                "blocked_ips": sandbox.limiters["stax"].blocked(),
                "pools": {p: pool.summary() for p, pool in sandbox.pools.items() if pool},
            }
        )

    @router.get("/invoices/{provider}")
    async def invoices(provider: ProviderName) -> Response:
        """Every invoice created at `provider`, in creation order."""
        store = sandbox.state.store(provider)
        return _json([r.doc for r in store.invoices.values()])

    @router.get("/created/{provider}")
    async def created(provider: ProviderName) -> Response:
        """Creations per invoice number (Maast) / meta.reference (Stax), and duplicates."""
        store = sandbox.state.store(provider)
        return _json({"counts": dict(store.created_counts), "duplicates": store.duplicates()})

    @router.get("/numbers/{provider}")
    async def numbers(provider: ProviderName) -> Response:
        """Per number: invoices created, live (not voided), sent (live and sent);
        the summary: totals, numbers whose live or sent count is not 1, numbers
        sent more than once, voided invoices, late commits."""
        return _json(sandbox.copies(provider))

    @router.post("/invoices/{provider}/{invoice_id}/pay")
    async def pay(provider: ProviderName, invoice_id: str) -> Response:
        """The customer pays the invoice in full (status PAID)."""
        doc = sandbox.pay(provider, invoice_id)
        if doc is None:
            raise HTTPException(404, f"no {provider} invoice {invoice_id}")
        return _json(doc)

    @router.get("/recipients/{provider}")
    async def recipients(provider: ProviderName) -> Response:
        """Every send's recipients, per provider invoice id."""
        return _json(sandbox.state.store(provider).recipients)

    _control_routes(router, sandbox)
    return router


def _control_routes(router: APIRouter, sandbox: Sandbox) -> None:
    @router.get("/faults")
    async def get_faults() -> Response:
        """The faults in force."""
        return _json(sandbox.config.faults.model_dump(mode="json"))

    @router.post("/faults")
    async def set_faults(faults: Faults) -> Response:
        """Replace the faults (re-seeds the draws, re-arms 429 bursts)."""
        sandbox.set_faults(faults)
        return _json(sandbox.config.faults.model_dump(mode="json"))

    @router.get("/config")
    async def get_config() -> Response:
        """The configuration in force (API keys left out)."""
        return _json(public_config(sandbox.config))

    @router.post("/config")
    async def set_config(config: SandboxConfig) -> Response:
        """Replace the whole configuration; stored invoices are kept."""
        sandbox.configure(config)
        return _json(public_config(sandbox.config))

    @router.post("/reset")
    async def reset() -> Response:
        """Forget all invoices, customers, stats, limits and fault events."""
        sandbox.reset()
        return _json({"ok": True})
