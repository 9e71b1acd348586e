"""The sandbox's memory: stored invoices and customers, and request statistics.

Everything lives in plain dicts on one event loop. Handlers never await
between reading and writing a store, so no lock is needed: a create checks
for a duplicate and stores in one uninterrupted step. No persistence.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sandbox.config import SandboxConfig
from sandbox.wire import Request, encode

Doc = dict[str, object]
"""An invoice or customer as the provider returns it (JSON-ready, Decimal money)."""

_TICKS_PER_S = 100


@dataclass(slots=True)
class Record:
    """One stored invoice: its document and a cache of its JSON."""

    doc: Doc
    seq: int
    key: str | None
    """Maast invoice_number / Stax meta.reference (None when absent)."""
    _json: bytes | None = None

    def json(self) -> bytes:
        """The document's JSON, encoded once per change."""
        if self._json is None:
            self._json = encode(self.doc)
        return self._json

    def update(self, **fields: object) -> None:
        """Change fields of the document (and drop the cached JSON)."""
        self.doc.update(fields)
        self._json = None


@dataclass
class Store:
    """One provider's invoices and customers."""

    invoices: dict[str, Record] = field(default_factory=dict)
    """By provider id (Maast's integer id as a string), in creation order."""
    by_key: dict[str, list[str]] = field(default_factory=dict)
    created_counts: Counter[str] = field(default_factory=Counter)
    customers: dict[str, Doc] = field(default_factory=dict)
    recipients: dict[str, list[object]] = field(default_factory=dict)
    """Provider id -> every send's recipients, in order."""
    generation: int = 0
    """How many resets came before this store (mixed into generated ids)."""

    def add(self, invoice_id: str, doc: Doc, key: str | None) -> Record:
        """Store a new invoice and count its key."""
        record = Record(doc, len(self.invoices) + 1, key)
        self.invoices[invoice_id] = record
        if key is not None:
            self.by_key.setdefault(key, []).append(invoice_id)
            self.created_counts[key] += 1
        return record

    def duplicates(self) -> list[str]:
        """Keys created more than once."""
        return sorted(k for k, n in self.created_counts.items() if n > 1)


@dataclass
class ProviderStats:
    """Request counts of one provider."""

    ticks: Counter[int] = field(default_factory=Counter)
    """Requests per 10 ms tick (epoch * 100): enough for any one-second window."""
    statuses: Counter[str] = field(default_factory=Counter)
    requests: int = 0

    def count(self, now_s: float) -> None:
        """Count one request arriving at `now_s`."""
        self.requests += 1
        self.ticks[int(now_s * _TICKS_PER_S)] += 1

    def per_second(self) -> dict[int, int]:
        """Requests per whole epoch second."""
        seconds: Counter[int] = Counter()
        for tick, n in self.ticks.items():
            seconds[tick // _TICKS_PER_S] += n
        return dict(sorted(seconds.items()))

    def busiest_window(self, window_s: int = 1) -> tuple[float, int]:
        """Start (epoch s) and count of the busiest sliding window of `window_s` seconds."""
        best_start, best = 0.0, 0
        ticks = sorted(self.ticks.items())
        running, tail = 0, 0
        for tick, n in ticks:
            running += n
            while ticks[tail][0] <= tick - window_s * _TICKS_PER_S:
                running -= ticks[tail][1]
                tail += 1
            if running > best:
                best_start, best = ticks[tail][0] / _TICKS_PER_S, running
        return best_start, best

    def summary(self) -> Doc:
        """The provider's counts, JSON-ready."""
        start, busiest = self.busiest_window()
        start_5s, busiest_5s = self.busiest_window(5)
        return {
            "requests": self.requests,
            "per_second": {str(s): n for s, n in self.per_second().items()},
            "busiest_second": {"start": start, "count": busiest},
            "busiest_5s": {"start": start_5s, "count": busiest_5s},
            "status_counts": dict(sorted(self.statuses.items())),
        }


@dataclass
class SandboxState:
    """All mutable sandbox state; `reset` by making a new one."""

    maast: Store = field(default_factory=Store)
    stax: Store = field(default_factory=Store)
    stats: dict[str, ProviderStats] = field(
        default_factory=lambda: {"maast": ProviderStats(), "stax": ProviderStats()}
    )
    fault_events: list[Doc] = field(default_factory=list)
    generation: int = 0

    def __post_init__(self) -> None:
        self.maast.generation = self.stax.generation = self.generation

    def store(self, provider: str) -> Store:
        """The store of `provider` ("maast" or "stax")."""
        return self.maast if provider == "maast" else self.stax


@dataclass(slots=True)
class Call:
    """What a provider handler gets: the request and the world it acts on."""

    config: SandboxConfig
    store: Store
    request: Request
    ident: str
    """The `{id}` path segment, when the route has one ('' otherwise)."""
    now_s: float

    def customer_exists(self, customer_id: str) -> bool:
        """Whether `customer_id` is known (configured, saved, or all exist)."""
        known = self.config.customers
        return known is None or customer_id in known or customer_id in self.store.customers
