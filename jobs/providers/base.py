"""What every provider client shares: its config, its HTTP client, the `HttpProvider` base.

`HttpProvider` sends one request through the transport-error mapper
(`answers.map_transport_errors`) and turns its answer into a body or an
`InvoiceError`; its subclasses supply how to authenticate, what to check
locally, the create body, what an answer means and the calls. It
knows nothing about Maast or Stax field names and never retries, sleeps or
touches Redis: retry policy is the worker's.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx2 as httpx
from httpx_aiohttp.httpx2 import AiohttpTransport

from jobs.errors import ConfigurationError, FieldError, InvoiceError
from jobs.models import Invoice, InvoiceReceipt, keeper_of
from jobs.ports import PreparedRequest
from jobs.providers.answers import Operation, map_transport_errors, refuse_problems
from jobs.providers.json_body import body_of, dumps

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class ProviderConfig:
    """How to reach one provider account; the key never shows in `repr`."""

    base_url: str
    api_key: str = field(repr=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_connections: int = 100

    def __repr__(self) -> str:
        return (
            f"ProviderConfig(base_url={self.base_url!r}, api_key='***', "
            f"connect_timeout_s={self.connect_timeout_s}, read_timeout_s={self.read_timeout_s}, "
            f"max_connections={self.max_connections})"
        )


def build_client(
    config: ProviderConfig, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one shared client of a provider account, with explicit timeouts.

    Uses the aiohttp transport (far less CPU per request under concurrency)
    unless `transport` is given, e.g. `httpx.MockTransport` in tests.
    """
    timeout = httpx.Timeout(
        connect=config.connect_timeout_s,
        read=config.read_timeout_s,
        write=config.read_timeout_s,
        # Waiting for a free pooled connection means waiting for other requests
        # to finish reading, so it gets the read budget, not the connect one.
        pool=config.read_timeout_s,
    )
    limits = _limits(config)
    return httpx.AsyncClient(
        base_url=config.base_url,
        timeout=timeout,
        limits=limits,
        transport=transport if transport is not None else AiohttpTransport(limits=limits),
        # worker/settings.py is the only reader of the environment: no proxy
        # or certificate settings may sneak in from it here.
        trust_env=False,
        follow_redirects=False,
    )


def _limits(config: ProviderConfig) -> httpx.Limits:
    return httpx.Limits(
        max_connections=config.max_connections,
        max_keepalive_connections=config.max_connections,
    )


def with_answer(receipt: InvoiceReceipt, answer: InvoiceReceipt) -> InvoiceReceipt:
    """`receipt` with the status and flags of the same invoice in a later answer;
    a copy once sent stays sent (a void does not unsend it)."""
    return receipt.model_copy(
        update={
            "status": answer.status,
            "voided": answer.voided,
            "sent": receipt.sent or answer.sent,
        }
    )


MIN_SECRET_CHARS = 4
"""Shorter "secrets" are not masked in error texts: they would mask ordinary words."""


def _header_safe(value: str) -> bool:
    """True when `value` can go into an HTTP header as it is (printable ASCII)."""
    return value.isascii() and value.isprintable()


# --- the client base ---------------------------------------------------------


class HttpProvider(ABC):
    """Owns one shared HTTP client and sends requests through the error mapper.

    Subclasses supply the authentication, the local checks, the create body
    and the create / find_all / send / void calls of
    `jobs.ports.InvoiceProvider`; `find` is built here on `find_all`.

    Requests go straight to the client's transport: the client's own layers
    (auth and redirect flows, cookies, event hooks, URL and header merging)
    do nothing for us (no auth object, redirects off, no cookies) and cost
    about as much CPU as the transport itself. The client still owns the
    configuration (timeouts, default headers) and the transport's lifetime.
    """

    def __init__(
        self, config: ProviderConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self._transport = transport or AiohttpTransport(limits=_limits(config))
        try:
            self._client = build_client(config, self._transport)
        except httpx.InvalidURL:
            raise ConfigurationError(
                f"{self.name}: the base URL is not a usable URL", setting="base_url"
            ) from None
        self._timeout = self._client.timeout.as_dict()
        self._base_url = config.base_url.rstrip("/")
        self._sent_headers: httpx.Headers | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    name: str
    """The provider's name in messages ("Maast")."""
    create_path: str
    """Where invoices are created (and, for both providers, listed)."""

    @abstractmethod
    def _authorization(self, *, redacted: bool) -> str:
        """The `Authorization` header; the key shown as `***` when `redacted`."""

    @abstractmethod
    def _problems(self, invoice: Invoice) -> Sequence[FieldError]:
        """What the provider is known to reject in `invoice` (local rules)."""

    @abstractmethod
    def _create_body(self, invoice: Invoice) -> dict[str, object]:
        """The create request's JSON body."""

    @abstractmethod
    def _error_for(
        self, response: httpx.Response, payload: object, operation: Operation
    ) -> InvoiceError | None:
        """The error an answer means (`payload` is its parsed JSON), or `None` for a success."""

    def _headers(self, *, redacted: bool = False) -> dict[str, str]:
        return {
            "Authorization": self._authorization(redacted=redacted),
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    def validate(self, invoice: Invoice) -> None:
        """Refuse locally what the provider would reject (all problems at once).

        A refused request is worse than a wasted one: Stax blocks the IP
        after ten in a minute. `create` does not call this: the create
        procedure (`jobs.create_invoice`) validates once, before any request.

        Raises:
            InvoiceInvalid: one `FieldError` per problem.
        """
        refuse_problems(invoice.number, self._problems(invoice), self.name)

    def prepare_create(self, invoice: Invoice) -> PreparedRequest:
        """The exact create request, with the key shown as `***`."""
        return PreparedRequest(
            method="POST",
            url=self._url(self.create_path),
            headers=self._headers(redacted=True),
            json=self._create_body(invoice),
        )

    def _url(self, path: str) -> str:
        return self._base_url + path

    def _wire_headers(self) -> httpx.Headers:
        # The client's defaults (User-Agent, Accept-Encoding...) under ours,
        # as `client.request` would merge them; built once (the key is fixed).
        if self._sent_headers is None:
            ours = self._headers()
            if not _header_safe(self.config.api_key) or not all(map(_header_safe, ours.values())):
                # httpx would raise UnicodeEncodeError and aiohttp ValueError,
                # both holding the header: say what to fix, never the value.
                raise ConfigurationError(
                    f"{self.name}: the API key cannot be sent in an HTTP header: it holds a "
                    "character headers do not allow (not plain ASCII, or a control character)",
                    setting="api_key",
                )
            headers = httpx.Headers(self._client.headers)
            headers.update(ours)  # case-insensitive: ours replace the defaults
            self._sent_headers = headers
        return self._sent_headers

    def _redacted(self, error: InvoiceError) -> InvoiceError:
        """`error` with this account's key masked, should a provider echo it back.

        The last line of defence: an error's text is stored in the ledger, the
        dead letters and the pause reason, and logged.
        """
        token = self._authorization(redacted=False).rpartition(" ")[2]
        secrets = [s for s in (self.config.api_key, token) if len(s) >= MIN_SECRET_CHARS]

        def mask(text: str) -> str:
            for secret in secrets:
                text = text.replace(secret, "***")
            return text

        masked = mask(error.message)
        fields = tuple(FieldError(mask(f.field), mask(f.message)) for f in error.field_errors)
        if masked != error.message or fields != error.field_errors:
            error.message, error.args, error.field_errors = masked, (masked,), fields
        return error

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, str | int | list[str]] | None = None,
    ) -> httpx.Response:
        """Send one request; transport failures come out as `InvoiceError`s."""
        content = dumps(body).encode() if body is not None else None
        headers = self._wire_headers()
        try:
            request = httpx.Request(
                method,
                self._url(path),
                params=params,
                content=content,
                headers=headers,
                extensions={"timeout": self._timeout},
            )
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            # Nothing has left: the base URL cannot make a request at all.
            raise ConfigurationError(
                f"{self.name}: cannot build a request from the base URL ({type(exc).__name__})",
                setting="base_url",
            ) from None
        with map_transport_errors():
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()  # closes the response stream at its end
            except BaseException:
                await response.aclose()
                raise
        return response

    async def _answer(
        self,
        method: str,
        path: str,
        operation: Operation,
        *,
        body: object = None,
        params: Mapping[str, str | int | list[str]] | None = None,
    ) -> object:
        """Send one request: its JSON body on success, else the `InvoiceError` the answer means.

        Raises:
            InvoiceError: from the transport or from the answer, translated once.
        """
        try:
            response = await self._request(method, path, body=body, params=params)
        except InvoiceError as error:
            raise self._redacted(error) from error.__cause__
        payload = body_of(response)  # parsed once, for the error check and the caller
        refused = self._error_for(response, payload, operation)
        if refused is not None:
            raise self._redacted(refused)
        return payload

    @abstractmethod
    async def create(self, invoice: Invoice, *, send_now: bool) -> InvoiceReceipt:
        """Create the invoice (sent at once only when `send_now` and the provider
        can); `jobs.create_invoice` has validated it first."""

    @abstractmethod
    async def find_all(self, invoice: Invoice) -> list[InvoiceReceipt]:
        """Every copy holding our number, live and voided, oldest first."""

    async def find(self, invoice: Invoice) -> InvoiceReceipt | None:
        """The live copy a lookup adopts (`keeper_of`), or `None` when none is live.

        Raises:
            InvoiceError: the provider could not list every copy.
        """
        copies = await self.find_all(invoice)
        live = [c for c in copies if not c.voided]
        if len(live) > 1:
            ids = ", ".join(c.provider_id for c in live)
            log.warning(
                "%s holds %d live invoices numbered %s: %s",
                self.name,
                len(live),
                invoice.number,
                ids,
            )
        return keeper_of(copies)

    @abstractmethod
    async def send(self, receipt: InvoiceReceipt, invoice: Invoice) -> InvoiceReceipt:
        """Send a created draft to the customer; returns the updated receipt."""

    @abstractmethod
    async def void(self, receipt: InvoiceReceipt) -> InvoiceReceipt:
        """Void one copy; already voided counts as voided; `CannotVoid` if paid."""

    async def aclose(self) -> None:
        """Close the shared HTTP client."""
        await self._client.aclose()
