"""Stax's validation rules for a create-invoice body (docs/sandbox.md, What it simulates).

Pure: a parsed JSON body in, Laravel-style field errors
(`{"field": ["The field is required."]}`) and the typed values out. Funding
must add up to the total exactly, in Decimal; meta is limited to 60,000
characters of compact JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from sandbox.wire import encode

META_MAX_CHARS = 60_000


@dataclass
class StaxDraft:
    """The typed values of a create body, and the field errors found."""

    customer_id: str = ""
    url: str = ""
    total: Decimal = Decimal(0)
    meta: dict[str, object] = field(default_factory=dict)
    send_now: bool = False
    errors: dict[str, list[str]] = field(default_factory=dict)

    def refuse(self, name: str, message: str) -> None:
        """Record `message` for field `name`."""
        self.errors.setdefault(name, []).append(message)

    @property
    def reference(self) -> str | None:
        """`meta.reference`, our idempotency key at Stax, when given as text."""
        value = self.meta.get("reference")
        return value if isinstance(value, str) else None


def label(name: str) -> str:
    """Laravel's human name of a field: `customer_id` -> `customer id`."""
    return name.replace("_", " ")


def amount(value: object) -> Decimal | None:
    """A Laravel `numeric`: a JSON number or a numeric string, as Decimal."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def check_create(body: dict[str, object]) -> StaxDraft:
    """Validate a create-invoice body; `draft.errors` empty means valid."""
    draft = StaxDraft()
    draft.customer_id = _required_text(draft, body, "customer_id")
    draft.url = _required_text(draft, body, "url")
    _check_total(draft, body.get("total"))
    _check_meta(draft, body.get("meta"))
    for flag in ("send_now", "is_partial_payment_enabled"):
        if flag in body and not isinstance(body[flag], bool):
            draft.refuse(flag, f"The {label(flag)} field must be true or false.")
    draft.send_now = body.get("send_now") is True
    _check_files(draft, body.get("files"))
    _check_funding(draft, body.get("funding"))
    return draft


def _required_text(draft: StaxDraft, body: dict[str, object], name: str) -> str:
    value = body.get(name)
    if value is None or value == "":
        draft.refuse(name, f"The {label(name)} field is required.")
        return ""
    if not isinstance(value, str):
        draft.refuse(name, f"The {label(name)} must be a string.")
        return ""
    return value


def _check_total(draft: StaxDraft, value: object) -> None:
    if value is None or value == "":
        draft.refuse("total", "The total field is required.")
        return
    number = amount(value)
    if number is None:
        draft.refuse("total", "The total must be a number.")
    elif number < 0:
        draft.refuse("total", "The total must be at least 0.")
    else:
        draft.total = number


def _check_meta(draft: StaxDraft, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        draft.refuse("meta", "The meta must be an array.")
        return
    if len(encode(value).decode()) > META_MAX_CHARS:
        draft.refuse("meta", f"The meta may not be greater than {META_MAX_CHARS} characters.")
    draft.meta = value


def _check_files(draft: StaxDraft, value: object) -> None:
    # The sandbox stores no files, so every file id is unknown.
    if value is None:
        return
    if not isinstance(value, list):
        draft.refuse("files", "The files must be an array.")
        return
    for i in range(len(value)):
        draft.refuse(f"files.{i}", f"The selected files.{i} is invalid.")


def _check_funding(draft: StaxDraft, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        draft.refuse("funding", "The funding must be an array.")
        return
    legs: list[Decimal] = []
    for i, leg in enumerate(value):
        where = f"funding.{i}"
        if not isinstance(leg, dict):
            draft.refuse(where, f"The {where} must be an array.")
            continue
        if not isinstance(leg.get("account_id"), str) or not leg.get("account_id"):
            draft.refuse(f"{where}.account_id", f"The {where}.account_id field is required.")
        number = amount(leg.get("amount"))
        if number is None:
            draft.refuse(f"{where}.amount", f"The {where}.amount must be a number.")
        else:
            legs.append(number)
    complete = legs and len(legs) == len(value) and "total" not in draft.errors
    if complete and sum(legs, Decimal(0)) != draft.total:
        draft.refuse("funding", "The sum of the funding amounts must equal the invoice total.")
