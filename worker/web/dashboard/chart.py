"""The overview's chart: created and rejected per minute over the last hour, as SVG geometry.

Drawn on the server (the template turns this into `<rect>`s and a dashed
line), so the page needs no charting library and no script: one bar per
minute, rejected stacked on created, against the provider's rate limit.
The y axis always shows the limit, so a glance tells how close the run is
to it; with no limit configured (Maast publishes none) there is no line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.activity import Minute

WIDTH = 600
HEIGHT = 150
TOP = 12
"""Room above the highest bar for the limit's label."""
GAP = 1


@dataclass(frozen=True)
class Bar:
    """One minute: its created part (bottom) and rejected part (on top), in pixels."""

    x: float
    width: float
    created_y: float
    created_h: float
    rejected_y: float
    rejected_h: float
    label: str
    """The tooltip: minute, created, rejected."""


@dataclass(frozen=True)
class Chart:
    """Everything the template draws."""

    width: int
    height: int
    bars: list[Bar]
    limit: float | None
    limit_y: float | None
    y_max: float
    created: int
    rejected: int


def chart(minutes: Sequence[Minute], limit_per_minute: float | None) -> Chart:
    """The bars of `minutes` (oldest first) scaled so the limit and the highest bar fit."""
    peak = max((m.created + m.rejected for m in minutes), default=0)
    y_max = max(float(peak), limit_per_minute or 0.0, 1.0) * 1.1
    usable = HEIGHT - TOP
    slot = WIDTH / max(1, len(minutes))

    def height_of(count: int) -> float:
        return round(usable * count / y_max, 2)

    bars = []
    for i, m in enumerate(minutes):
        created_h, rejected_h = height_of(m.created), height_of(m.rejected)
        created_y = HEIGHT - created_h
        minutes_ago = len(minutes) - 1 - i
        when = "this minute" if minutes_ago == 0 else f"{minutes_ago} min ago"
        bars.append(
            Bar(
                x=round(i * slot + GAP / 2, 2),
                width=round(max(1.0, slot - GAP), 2),
                created_y=created_y,
                created_h=created_h,
                rejected_y=round(created_y - rejected_h, 2),
                rejected_h=rejected_h,
                label=f"{when}: {m.created} created, {m.rejected} rejected",
            )
        )
    limit_y = None
    if limit_per_minute:
        limit_y = round(HEIGHT - usable * limit_per_minute / y_max, 2)
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        bars=bars,
        limit=limit_per_minute,
        limit_y=limit_y,
        y_max=y_max,
        created=sum(m.created for m in minutes),
        rejected=sum(m.rejected for m in minutes),
    )
