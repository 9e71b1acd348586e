"""`SandboxClient`: the async Python face of the /_sandbox inspection and fault API.

For tests, benchmarks, the demo and the chaos suite. Amounts come back as
Decimal (the JSON is parsed with `parse_float=Decimal`). Talks only to the
sandbox's /_sandbox routes, never to the simulated providers.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Literal, cast

import httpx2

from sandbox.config import Faults, SandboxConfig
from sandbox.copies import CopiesSummary, NumberCopies

ProviderName = Literal["maast", "stax"]
JsonObject = dict[str, object]


class SandboxClient:
    """Reads and steers a running sandbox at `base_url`."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self._http = httpx2.AsyncClient(base_url=base_url, timeout=timeout_s, trust_env=False)

    async def __aenter__(self) -> SandboxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def _get(self, path: str) -> object:
        response = await self._http.get(f"/_sandbox{path}")
        response.raise_for_status()
        return json.loads(response.content, parse_float=Decimal)

    async def _post(self, path: str, body: str | None = None) -> object:
        headers = {"content-type": "application/json"}
        response = await self._http.post(f"/_sandbox{path}", content=body or "", headers=headers)
        response.raise_for_status()
        return json.loads(response.content, parse_float=Decimal)

    async def stats(self) -> JsonObject:
        """`providers.{maast,stax}.{requests, per_second, busiest_second,
        busiest_5s, status_counts}`, `fault_events` and `blocked_ips`."""
        return cast(JsonObject, await self._get("/stats"))

    async def invoices(self, provider: ProviderName) -> list[JsonObject]:
        """Every invoice created at `provider`, as the provider returns it."""
        return cast(list[JsonObject], await self._get(f"/invoices/{provider}"))

    async def created_counts(self, provider: ProviderName) -> dict[str, int]:
        """How many invoices were created per Maast invoice_number / Stax meta.reference."""
        doc = cast(JsonObject, await self._get(f"/created/{provider}"))
        return cast(dict[str, int], doc["counts"])

    async def duplicates(self, provider: ProviderName) -> list[str]:
        """Numbers / references created more than once."""
        doc = cast(JsonObject, await self._get(f"/created/{provider}"))
        return cast(list[str], doc["duplicates"])

    async def copies(self, provider: ProviderName) -> dict[str, NumberCopies]:
        """Per invoice number (Maast) / meta.reference (Stax): created, live, sent."""
        doc = cast(JsonObject, await self._get(f"/numbers/{provider}"))
        numbers = cast(dict[str, dict[str, int]], doc["numbers"])
        return {n: NumberCopies(**counts) for n, counts in numbers.items()}

    async def copies_summary(self, provider: ProviderName) -> CopiesSummary:
        """Totals, the numbers whose live / sent count is not 1, numbers sent more
        than once, voided invoices and late commits, at `provider`."""
        doc = cast(JsonObject, await self._get(f"/numbers/{provider}"))
        return CopiesSummary(**cast(dict[str, object], doc["summary"]))  # type: ignore[arg-type]

    async def pay(self, provider: ProviderName, invoice_id: str | int) -> JsonObject:
        """Have the customer pay an invoice in full; the invoice as stored."""
        return cast(JsonObject, await self._post(f"/invoices/{provider}/{invoice_id}/pay"))

    async def pools(self) -> dict[str, dict[str, int]]:
        """Per provider with `workers` set: `size`, `busy`, `waiting`, `max_waiting`."""
        return cast(dict[str, dict[str, int]], (await self.stats())["pools"])

    async def fault_events(self) -> list[JsonObject]:
        """The faults that fired, in order."""
        return cast(list[JsonObject], (await self.stats())["fault_events"])

    async def set_faults(self, faults: Faults) -> None:
        """Replace the faults in force (re-seeds the draws)."""
        await self._post("/faults", faults.model_dump_json())

    async def configure(self, config: SandboxConfig) -> None:
        """Replace the whole configuration (stored invoices are kept)."""
        await self._post("/config", config.model_dump_json())

    async def reset(self) -> None:
        """Forget everything the sandbox stored and counted."""
        await self._post("/reset")
