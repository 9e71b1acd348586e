"""The request pipeline shared by both simulated providers.

For every provider request: count it, apply the per-IP limit (Stax; Maast
only when throttling is on), authenticate, route (the provider's gateway);
then, in the provider's processing pool when `workers` bounds it, draw a
fault for targeted routes, wait the latency, run the handler, apply
after-commit and late-commit faults (the backend); count the outcome and
feed 4xx answers to the Stax block. Speaks `Request`/`Reply`, never ASGI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sandbox import copies, maast, stax
from sandbox.config import Faults, SandboxConfig
from sandbox.faults import Fault, FaultInjector
from sandbox.limits import IpLimiter, retry_after_header
from sandbox.pool import ProcessingPool
from sandbox.routes import Route, match, segments
from sandbox.state import Call, Doc, Record, SandboxState
from sandbox.wire import JSON_HEADERS, Reply, Request, reply

MAAST_PREFIX = "/platform"
_TOO_MANY = {
    "maast": {"code": 429, "message": "Too many requests", "data": None},
    "stax": {"message": "Too Many Attempts."},
}
_SERVER_ERROR = {
    "maast": {
        "code": 99,
        "message": "Internal server error; Maast has been notified",
        "data": None,
    },
    "stax": {"message": "Server Error"},
}


def provider_of(path: str) -> str:
    """Which provider a path belongs to: Maast under /platform, Stax elsewhere."""
    return "maast" if path == MAAST_PREFIX or path.startswith(MAAST_PREFIX + "/") else "stax"


class Sandbox:
    """The simulated providers' state and behaviour, behind `handle`."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.state = SandboxState()
        self.config = config
        self.faults = FaultInjector(config.faults)
        self.pools: dict[str, ProcessingPool[Reply] | None] = {}
        self.configure(config)

    def configure(self, config: SandboxConfig) -> None:
        """Adopt a new configuration; stored invoices are kept, limits and pools
        restart (requests already queued are still processed)."""
        self.config = config
        self.faults.configure(config.faults)
        for pool in self.pools.values():
            if pool is not None:
                pool.close()
        self.pools = {p: _pool(config.workers) for p in ("maast", "stax")}
        self.limiters = {
            "maast": IpLimiter(
                limit=config.maast_rate_per_window,
                failed_limit=None,
                window_s=config.window_s,
                block_s=0,
                clock=self._clock,
            ),
            "stax": IpLimiter(
                limit=config.stax_rate_per_window,
                failed_limit=config.stax_failed_per_window,
                window_s=config.window_s,
                block_s=config.stax_block_s,
                clock=self._clock,
            ),
        }

    def set_faults(self, faults: Faults) -> None:
        """Adopt new faults (and the Maast duplicate switch when given)."""
        update: dict[str, object] = {"faults": faults}
        if faults.reject_duplicate_numbers is not None:
            update["maast_reject_duplicate_numbers"] = faults.reject_duplicate_numbers
        self.config = self.config.model_copy(update=update)
        self.faults.configure(faults)

    def reset(self) -> None:
        """Forget every invoice, customer, count, limit and fault event; re-seed faults."""
        self.state = SandboxState(generation=self.state.generation + 1)
        self.configure(self.config)

    def copies(self, provider: str) -> dict[str, object]:
        """Per number: created, live, sent; and the summary tests assert on."""
        face = _FACES[provider]
        late = sum(
            1
            for e in self.state.fault_events
            if e["provider"] == provider and e["kind"] == "late_commit" and e["target"] != "lookup"
        )
        return copies.report(self.state.store(provider), face.voided, face.sent, late)

    def pay(self, provider: str, invoice_id: str) -> Doc | None:
        """Mark an invoice paid in full, as its customer would; None if unknown."""
        record = self.state.store(provider).invoices.get(invoice_id)
        if record is None:
            return None
        _FACES[provider].pay(record, self._clock())
        return record.doc

    async def handle(self, request: Request) -> Reply:
        """The answer to one provider request."""
        provider = provider_of(request.path)
        stats = self.state.stats[provider]
        stats.count(self._clock())
        answer = await self._respond(provider, request)
        stats.statuses[_label(answer)] += 1
        counts_as_failed = answer.status != 429 or self.config.stax_count_429_as_failed
        if provider == "stax" and 400 <= answer.status < 500 and counts_as_failed:
            self.limiters["stax"].record_failure(request.client_ip)
        return answer

    async def _respond(self, provider: str, request: Request) -> Reply:
        limiter = self.limiters[provider]
        wait_s = limiter.admit(request.client_ip) if limiter.active else None
        if wait_s is not None:
            return _too_many(provider, retry_after_header(wait_s))
        face = _FACES[provider]
        call = Call(self.config, self.state.store(provider), request, "", self._clock())
        denied = face.authenticate(call)
        if denied is not None:
            return denied
        found = match(face.routes, request.method, segments(request.path, face.prefix))
        if found is None:
            return face.not_found()
        route, call.ident = found
        pool = self.pools[provider]
        if pool is None:
            return await self._process(provider, route, call)
        return await pool.run(lambda: self._process(provider, route, call))

    async def _process(self, provider: str, route: Route, call: Call) -> Reply:
        # Runs to completion even when the client has gone: uvicorn does not
        # cancel a request's task on disconnect, and the pool shields its jobs.
        fault = self.faults.draw(provider, route.target) if route.target else None
        if fault is None:
            call.now_s = self._clock()
            return route.handler(call)
        return await self._faulted(provider, route, call, fault)

    async def _faulted(self, provider: str, route: Route, call: Call, fault: Fault) -> Reply:
        if fault.latency_s > 0:
            await asyncio.sleep(fault.latency_s)
        call.now_s = self._clock()
        if fault.kind == "rate_limited":
            self._event(provider, route, call, fault, None)
            header = (b"retry-after", str(fault.spec.retry_after_s).encode())
            return _too_many(provider, header)
        if fault.kind == "error_before_commit":
            self._event(provider, route, call, fault, None)
            return reply(500, _SERVER_ERROR[provider])
        if fault.kind == "late_commit":
            await asyncio.sleep(fault.spec.hold_s)
            call.now_s = self._clock()
        answer = route.handler(call)
        landed = answer.committed or (route.target == "lookup" and answer.status < 300)
        if not landed or not (fault.after_commit or fault.late):
            return answer
        self._event(provider, route, call, fault, answer.key)
        if fault.late:
            answer.action = "late"  # answered normally: to whoever still listens
            return answer
        if fault.kind == "error_after_commit":
            return reply(500, _SERVER_ERROR[provider], key=answer.key)
        if fault.kind == "timeout_after_commit":
            answer.action, answer.hold_s = "hold", fault.spec.hold_s
        else:
            answer.action, answer.drop_mode = "drop", fault.spec.drop_mode
        return answer

    def _event(
        self, provider: str, route: Route, call: Call, fault: Fault, key: str | None
    ) -> None:
        events = self.state.fault_events
        events.append(
            {
                "seq": len(events) + 1,
                "t": call.now_s,
                "provider": provider,
                "target": route.target,
                "kind": fault.kind,
                "method": call.request.method,
                "path": call.request.path,
                "key": key,
            }
        )


def _too_many(provider: str, retry_after: tuple[bytes, bytes]) -> Reply:
    return reply(429, _TOO_MANY[provider], headers=[*JSON_HEADERS, retry_after])


def _stax_not_found() -> Reply:
    return reply(404, {"message": "Not Found"})


@dataclass(frozen=True)
class _Face:
    """How one provider authenticates, routes and says "no such path"."""

    authenticate: Callable[[Call], Reply | None]
    routes: Sequence[Route]
    prefix: str
    not_found: Callable[[], Reply]
    voided: copies.Rule
    sent: copies.Rule
    pay: Callable[[Record, float], None]


_FACES = {
    "maast": _Face(
        maast.authenticate,
        maast.ROUTES,
        MAAST_PREFIX,
        maast.not_found,
        maast.voided,
        maast.sent,
        maast.pay,
    ),
    "stax": _Face(
        stax.authenticate, stax.ROUTES, "", _stax_not_found, stax.voided, stax.sent, stax.pay
    ),
}


def _pool(workers: int | None) -> ProcessingPool[Reply] | None:
    return None if workers is None else ProcessingPool(workers)


_LABELS = {"drop": "dropped", "hold": "held", "late": "late"}


def _label(answer: Reply) -> str:
    return _LABELS.get(answer.action) or str(answer.status)
