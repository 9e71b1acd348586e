"""Sandbox configuration: provider switches, limits and faults, as one model.

`SandboxConfig` is what `create_app`, `serve` and `running_sandbox` take and
what `POST /_sandbox/config` accepts; `Faults` (a field of it) is what
`POST /_sandbox/faults` accepts. This module only describes; it never acts.
Every switch defaults to the provider behaviour docs/providers.md describes;
the switches play the other side of its open questions (docs/sandbox.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Target = Literal["create", "send", "lookup", "void"]
"""Which kind of provider call a fault may hit (`void`: Maast cancel, Stax delete)."""

Probability = float
_P = Field(default=0.0, ge=0.0, le=1.0)

DEFAULT_MAAST_KEY = "maast-sandbox-key"
DEFAULT_MAAST_FORBIDDEN_KEY = "maast-forbidden-key"
DEFAULT_STAX_KEY = "stax-sandbox-key"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FaultSpec(_Model):
    """What can go wrong with one provider's targeted calls.

    The outcome probabilities (`throttle`, the errors, the timeouts, the drop
    and `late_commit`) are exclusive: one uniform draw per targeted request
    picks at most one of them, so they must sum to <= 1.
    """

    latency_ms: float = Field(default=0.0, ge=0.0)
    latency_jitter_ms: float = Field(default=0.0, ge=0.0)
    """Extra latency drawn uniformly from [0, jitter) on top of `latency_ms`."""
    throttle: Probability = _P
    """Probability of a 429 with Retry-After, before anything is done."""
    error_before_commit: Probability = _P
    """Probability of a 500 before the invoice is stored (nothing happened)."""
    error_after_commit: Probability = _P
    """Probability of a 500 after the invoice is stored (it exists)."""
    timeout_after_commit: Probability = _P
    """Probability of holding the response `hold_s` after storing the invoice."""
    drop_after_commit: Probability = _P
    """Probability of closing the connection without a response after storing."""
    late_commit: Probability = _P
    """Probability of holding the request `hold_s` *before* acting on it, then
    acting (storing, sending, voiding) and answering whoever still listens: a
    request the provider queued or processed slowly, committed after the
    client's read timeout gave up on it."""
    burst_429: int = Field(default=0, ge=0)
    """The next `burst_429` targeted requests get 429, whatever the draws say."""
    retry_after_s: int = Field(default=1, ge=0)
    hold_s: float = Field(default=5.0, ge=0.0)
    """How long `timeout_after_commit` holds the response, and `late_commit` the
    request: longer than the client's read timeout."""
    drop_mode: Literal["close", "head"] = "close"
    """`close`: close the TCP connection before any response byte; `head`: send
    the status line and headers, then close without the body."""
    targets: frozenset[Target] = frozenset({"create"})
    latency_targets: frozenset[Target] | None = None
    """Which calls get the latency; `None`: the same as `targets`. Lets a slow
    provider (every call kind) carry outcome faults on creates only."""

    @model_validator(mode="after")
    def _exclusive(self) -> FaultSpec:
        total = (
            self.throttle
            + self.error_before_commit
            + self.error_after_commit
            + self.timeout_after_commit
            + self.drop_after_commit
            + self.late_commit
        )
        if total > 1.0:
            raise ValueError("fault probabilities must add up to at most 1")
        return self

    @property
    def slowed(self) -> frozenset[Target]:
        """The calls that get the latency."""
        return self.targets if self.latency_targets is None else self.latency_targets

    @property
    def inert(self) -> bool:
        """True when this spec can never change a request (a fast path)."""
        return self == _INERT


_INERT = FaultSpec()


class Faults(FaultSpec):
    """Faults for both providers (the top-level fields), or per provider.

    `maast` / `stax`, when given, replace the top-level spec for that provider.
    `reject_duplicate_numbers`, when given, flips the Maast duplicate switch.
    """

    seed: int = 0
    """Seeds `random.Random`: the same seed and request sequence give the same faults."""
    maast: FaultSpec | None = None
    stax: FaultSpec | None = None
    reject_duplicate_numbers: bool | None = None

    def for_provider(self, provider: str) -> FaultSpec:
        """The spec that applies to `provider` ("maast" or "stax")."""
        own = self.maast if provider == "maast" else self.stax
        if own is not None:
            return own
        return FaultSpec.model_validate(self.model_dump(include=set(FaultSpec.model_fields)))


class SandboxConfig(_Model):
    """Everything the sandbox can be told; defaults follow docs/providers.md."""

    maast_keys: frozenset[str] = Field(default=frozenset({DEFAULT_MAAST_KEY}), repr=False)
    maast_forbidden_keys: frozenset[str] = Field(
        default=frozenset({DEFAULT_MAAST_FORBIDDEN_KEY}), repr=False
    )
    """Keys that authenticate but have no access: 403 {code:6}."""
    maast_key_as_username: bool = False
    """Also accept the key in the Basic username position (Kill Bill style)."""
    stax_keys: frozenset[str] = Field(default=frozenset({DEFAULT_STAX_KEY}), repr=False)
    stax_unauthorized_body: Literal["object", "array"] = "object"
    customers: frozenset[str] | None = None
    """Customer ids that exist at both providers; `None`: every id exists."""
    maast_reject_duplicate_numbers: bool = False
    maast_unknown_invoice_status: Literal[400, 404] = 404
    """Answer for an unknown invoice id: 400 {code:2} or 404 {code:7}."""
    maast_rate_per_window: int | None = Field(default=None, gt=0)
    """Maast throttling (per client IP), off by default: Maast publishes no limit."""
    stax_create_status: Literal[200, 201] = 200
    stax_keywords_match_reference: bool = True
    stax_reject_draft_sends: bool = False
    stax_rate_per_window: int | None = Field(default=100, gt=0)
    """Stax requests per client IP per window; beyond: 429 with Retry-After."""
    stax_failed_per_window: int | None = Field(default=10, gt=0)
    """More failed (4xx) Stax responses than this per window block the IP."""
    stax_count_429_as_failed: bool = False
    """Whether the sandbox's own 429s count toward the 4xx block."""
    window_s: float = Field(default=60.0, gt=0)
    """The rate-limit window of both providers (a minute; shorten for tests)."""
    stax_block_s: float = Field(default=3600.0, ge=0)
    workers: int | None = Field(default=None, gt=0)
    """At most this many requests per provider are processed at once; the rest
    wait in arrival order and are processed even after their client gave up
    (a threaded server with a small pool). `None`: no bound."""
    faults: Faults = Faults()
