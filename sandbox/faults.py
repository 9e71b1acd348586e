"""Deterministic fault injection: which targeted request gets which fault.

One `random.Random` per provider, seeded from `Faults.seed` and the provider
name, draws exactly two numbers per targeted or slowed request (outcome,
jitter), so the same seed and the same request sequence give the same faults,
whatever the other provider does. Deciding only: `core.py` and `app.py`
apply the decision.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from sandbox.config import Faults, FaultSpec, Target

FaultKind = Literal[
    "rate_limited",
    "error_before_commit",
    "error_after_commit",
    "timeout_after_commit",
    "drop_after_commit",
    "late_commit",
]
PROVIDERS = ("maast", "stax")


@dataclass(frozen=True, slots=True)
class Fault:
    """The decision for one request."""

    kind: FaultKind | None
    latency_s: float
    spec: FaultSpec

    @property
    def after_commit(self) -> bool:
        """The fault fires only once the request has changed state."""
        return self.kind in ("error_after_commit", "timeout_after_commit", "drop_after_commit")

    @property
    def late(self) -> bool:
        """The request is held before it is acted on (a late commit)."""
        return self.kind == "late_commit"


class FaultInjector:
    """Draws faults for targeted requests, per provider, from a seed."""

    def __init__(self, faults: Faults) -> None:
        self.configure(faults)

    def configure(self, faults: Faults) -> None:
        """Adopt `faults`: re-seed, re-arm bursts."""
        self.faults = faults
        self._specs = {p: faults.for_provider(p) for p in PROVIDERS}
        self._rngs = {p: random.Random(f"{faults.seed}:{p}") for p in PROVIDERS}
        self._bursts = {p: self._specs[p].burst_429 for p in PROVIDERS}

    def draw(self, provider: str, target: Target) -> Fault | None:
        """The fault for the next `target` request at `provider`, if any."""
        spec = self._specs[provider]
        targeted, slowed = target in spec.targets, target in spec.slowed
        if spec.inert or not (targeted or slowed):
            return None
        rng = self._rngs[provider]
        outcome, jitter = rng.random(), rng.random()
        latency_s = (spec.latency_ms + jitter * spec.latency_jitter_ms) / 1000 if slowed else 0.0
        if not targeted:
            return Fault(None, latency_s, spec)
        if self._bursts[provider] > 0:
            self._bursts[provider] -= 1
            return Fault("rate_limited", latency_s, spec)
        return Fault(_pick(outcome, spec), latency_s, spec)


def _pick(u: float, spec: FaultSpec) -> FaultKind | None:
    bands: tuple[tuple[FaultKind, float], ...] = (
        ("rate_limited", spec.throttle),
        ("error_before_commit", spec.error_before_commit),
        ("error_after_commit", spec.error_after_commit),
        ("timeout_after_commit", spec.timeout_after_commit),
        ("drop_after_commit", spec.drop_after_commit),
        ("late_commit", spec.late_commit),
    )
    edge = 0.0
    for kind, p in bands:
        edge += p
        if u < edge:
            return kind
    return None
