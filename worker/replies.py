"""Redis replies as text, whether or not the client decodes responses.

Our own clients return bytes; a caller's client (the Python API takes one)
may decode. Every reply we read goes through these, once.
"""

from __future__ import annotations

from collections.abc import Mapping

RawHash = Mapping[bytes | str, bytes | str]
"""A hash as HGETALL returns it, with or without `decode_responses`."""


def text(value: bytes | str | None) -> str:
    """A reply as text (`None`, a missing value, as "")."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def decoded(raw: RawHash) -> dict[str, str]:
    """A hash reply with text keys and values."""
    return {text(k): text(v) for k, v in raw.items()}
