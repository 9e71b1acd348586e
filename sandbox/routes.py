"""A tiny path router for the provider endpoints (faster than Starlette's for this).

A route is a method, a tuple of path segments where "{id}" matches any one
segment, a handler and the fault target it belongs to (None: never faulted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sandbox.config import Target
from sandbox.state import Call
from sandbox.wire import Reply

Handler = Callable[[Call], Reply]
ID = "{id}"


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint."""

    method: str
    pattern: tuple[str, ...]
    handler: Handler
    target: Target | None = None


def match(
    routes: Sequence[Route], method: str, segments: Sequence[str]
) -> tuple[Route, str] | None:
    """The route for `method` + `segments` and the `{id}` segment ('' if none)."""
    for route in routes:
        if route.method != method or len(route.pattern) != len(segments):
            continue
        ident = ""
        for want, got in zip(route.pattern, segments, strict=True):
            if want == ID:
                ident = got
            elif want != got:
                break
        else:
            return route, ident
    return None


def segments(path: str, prefix: str = "") -> list[str]:
    """The path's segments after `prefix`, ignoring empty ones (trailing slash)."""
    return [s for s in path[len(prefix) :].split("/") if s]
