"""Every way creating an invoice can fail, as one tree.

```
InvoiceError
  TransientError        try later; nothing is wrong with the invoice
    ProviderUnavailable   not processed: connect error, 502/503, 500 before commit
      ProviderUnreachable   no connection at all (refused, DNS, connect timeout)
    RateLimited           429 or no limiter slot in time; carries retry_after_s
    OutcomeUnknown        may have landed: read timeout, dropped connection, 500
  PermanentError        will never succeed as it is: dead-letter now
    InvoiceInvalid        our own validation failed
    InvoiceRejected       provider 400/422 (Maast code 2): status, code, field errors
    InvoiceConflict       same number already used with different content
  ConfigurationError    an operator must act: missing or bad key (401/403)
  CannotVoid            a copy the provider will not void (paid): an operator must look

NotYet                  not a failure: come back in retry_after_s (landing window, lease)
```

`CannotVoid` is not a `PermanentError`: those prove the provider did not
create the invoice, and a copy that cannot be voided exists.

`NotYet` stands outside the `InvoiceError` tree on purpose: it says nothing
went wrong, only that acting now could create a duplicate (an earlier
request may still land, or the holder's lease is too close to its end). It
counts no failure and is never dead-lettered (docs/operations.md, "The
landing window").

Provider modules raise these and nothing else: httpx errors and HTTP
statuses are translated once, at the provider boundary. Messages never carry
secrets: an error may be logged, dead-lettered or sent to Sentry.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    """One field the provider or our validation refused, and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvoiceError(Exception):
    """Base of every invoice failure; carries the provider's answer when there was one."""

    reason: str = "error"
    """A short stable word for dashboards and `dlq list --reason`."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field_errors: tuple[FieldError, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field_errors = field_errors

    def __repr__(self) -> str:
        parts = [repr(self.message)]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code is not None:
            parts.append(f"code={self.code!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def describe(self) -> str:
        """One line for people: class, status, code, message and field errors."""
        head = type(self).__name__
        if self.status is not None:
            head += f"({self.status}{'/' + self.code if self.code else ''})"
        text = f"{head}: {self.message}"
        if self.field_errors:
            text += " [" + "; ".join(str(e) for e in self.field_errors) + "]"
        return text


class TransientError(InvoiceError):
    """Try later; nothing is wrong with the invoice."""

    reason = "transient"


class ProviderUnavailable(TransientError):
    """The provider did not process the request: it is safe to send it again."""

    reason = "unavailable"


class ProviderUnreachable(ProviderUnavailable):
    """No connection could be made (refused, no such host, connect timeout):
    nothing was sent, and it says nothing about the invoice. Many in a row
    mean the provider account (its base URL, the network) needs a look."""

    reason = "unreachable"


class RateLimited(TransientError):
    """The provider (429) or our limiter asked us to wait `retry_after_s`."""

    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class OutcomeUnknown(TransientError):
    """The request may have landed: look the invoice up before creating again."""

    reason = "outcome_unknown"


class PermanentError(InvoiceError):
    """Will never succeed as it is: dead-letter now."""

    reason = "permanent"


class InvoiceInvalid(PermanentError):
    """Our own validation refused the invoice before any request was sent."""

    reason = "invalid"


class InvoiceRejected(PermanentError):
    """The provider refused the invoice (400/422, Maast code 2)."""

    reason = "rejected"


class InvoiceConflict(PermanentError):
    """The invoice number is already used with different content."""

    reason = "conflict"


class CannotVoid(InvoiceError):
    """The provider will not void this copy (it was paid): an operator must look.

    Raised by `InvoiceProvider.void`; an invoice that is already voided is not
    this error (voiding it again succeeds).
    """

    reason = "cannot_void"

    def __init__(
        self,
        message: str,
        *,
        invoice_status: str,
        status: int | None = None,
        code: str | None = None,
        field_errors: tuple[FieldError, ...] = (),
    ) -> None:
        super().__init__(message, status=status, code=code, field_errors=field_errors)
        self.invoice_status = invoice_status
        """The copy's status at the provider (e.g. PAID)."""


class ConfigurationError(InvoiceError):
    """An operator must act: a missing or refused API key, a bad setting.

    Also what a request that cannot even be built raises (a key HTTP headers
    cannot carry, a malformed base URL): nothing left, nothing to retry per
    invoice, the provider account is what needs fixing.
    """

    reason = "configuration"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field_errors: tuple[FieldError, ...] = (),
        setting: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, field_errors=field_errors)
        self.setting = setting
        """The account setting to fix ("api_key", "base_url"), when known."""


class NotYet(Exception):
    """Control flow, not a failure: run this invoice's job again in `retry_after_s`.

    Raised by `jobs.create_invoice` when a lookup found nothing while an
    earlier create may still land, or when an unverified invoice's landing
    window has not passed; and by a ledger entry whose lease is too close to
    its end to start a request.
    """

    def __init__(self, retry_after_s: float, why: str) -> None:
        super().__init__(f"not yet ({why}): again in {retry_after_s:.1f}s")
        self.retry_after_s = max(0.0, retry_after_s)
        self.why = why


@dataclass(frozen=True)
class ErrorInfo:
    """An `InvoiceError` as plain data, for the ledger, dead letters and reports."""

    kind: str
    reason: str
    message: str
    status: int | None = None
    code: str | None = None
    field_errors: tuple[FieldError, ...] = field(default=())

    @classmethod
    def of(cls, error: InvoiceError) -> ErrorInfo:
        return cls(
            kind=type(error).__name__,
            reason=error.reason,
            message=error.message,
            status=error.status,
            code=error.code,
            field_errors=error.field_errors,
        )
