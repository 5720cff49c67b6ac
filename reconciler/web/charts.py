"""Inline SVG charts of a metric's readings over a bake, against its thresholds. Pure; every text escaped.

A chart is a picture with a text alternative: `role="img"`, a title and a description that say the readings in
words (how many, the last one and its verdict, the thresholds), and each point has its own `<title>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

from reconciler.core.model import Verdict
from reconciler.web.record import Point

WIDTH, HEIGHT = 280, 84
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 8, 16
DOTS = 40  # up to this many readings each has a dot (with its own title); past it, the line shows them


@dataclass(frozen=True)
class Threshold:
    kind: str  # "max" or "min"
    value: float


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def metric_chart(chart_id: str, metric: str, points: Sequence[Point], thresholds: Sequence[Threshold],
                 start: datetime | None = None, end: datetime | None = None) -> Markup:
    """An SVG of `points` (value over time) with a dashed line per threshold; `start`/`end` bound the time axis
    (the bake), else the points do."""
    values = [p.value for p in points if p.value is not None]
    lines = [t.value for t in thresholds]
    low = min([0.0, *values, *lines])
    high = max([*values, *lines, low + 1e-9])
    high += (high - low) * 0.15 or 1.0
    times = [p.at for p in points]
    t0 = min([start] if start else times, default=None)
    t1 = max([end] if end else times, default=None)
    if t0 is not None and t1 is not None and times:
        t0, t1 = min(t0, *times), max(t1, *times)
    span = (t1 - t0).total_seconds() if t0 is not None and t1 is not None else 0.0

    def x(at: datetime) -> float:
        if t0 is None or span <= 0:
            return LEFT + (WIDTH - LEFT - RIGHT) / 2
        return LEFT + (at - t0).total_seconds() / span * (WIDTH - LEFT - RIGHT)

    def y(value: float) -> float:
        return TOP + (high - value) / (high - low) * (HEIGHT - TOP - BOTTOM)

    parts = [f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d">',
             f'<title id="{escape(chart_id)}-t">{escape(metric)} over the bake</title>',
             f'<desc id="{escape(chart_id)}-d">{escape(describe(metric, points, thresholds))}</desc>',
             f'<line class="axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}"/>',
             f'<text class="tick" x="{LEFT - 4}" y="{y(high) + 4:.1f}" text-anchor="end">{escape(number(high))}</text>',
             f'<text class="tick" x="{LEFT - 4}" y="{y(low):.1f}" text-anchor="end">{escape(number(low))}</text>']
    for threshold in thresholds:
        at = y(threshold.value)
        parts.append(f'<line class="threshold" x1="{LEFT}" y1="{at:.1f}" x2="{WIDTH - RIGHT}" y2="{at:.1f}"/>'
                     f'<text class="tick threshold-label" x="{WIDTH - RIGHT}" y="{at - 3:.1f}" text-anchor="end">'
                     f'{escape(threshold.kind)} {escape(number(threshold.value))}</text>')
    drawn = [(x(p.at), y(p.value)) for p in points if p.value is not None]
    if len(drawn) > 1:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in drawn)
        parts.append(f'<polyline class="series" points="{path}"/>')
    for index, point in enumerate(points):  # many points: only the ones that were not good, and the last
        if len(points) > DOTS and point.verdict is Verdict.SUCCESSFUL and index < len(points) - 1:
            continue
        cy = y(point.value) if point.value is not None else HEIGHT - BOTTOM
        parts.append(f'<circle class="point verdict-{point.verdict.value.lower()}" cx="{x(point.at):.1f}" '
                     f'cy="{cy:.1f}" r="3.5"><title>{escape(_point_text(point))}</title></circle>')
    if t0 is not None:
        parts.append(f'<text class="tick" x="{LEFT}" y="{HEIGHT - 3}">{t0:%H:%M:%S}</text>')
    if t1 is not None and span > 0:
        parts.append(f'<text class="tick" x="{WIDTH - RIGHT}" y="{HEIGHT - 3}" text-anchor="end">{t1:%H:%M:%S}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def describe(metric: str, points: Sequence[Point], thresholds: Sequence[Threshold]) -> str:
    """The chart in words."""
    limits = ", ".join(f"{t.kind} {number(t.value)}" for t in thresholds) or "no fixed threshold"
    if not points:
        return f"{metric}: no reading seen yet; {limits}"
    last = points[-1]
    return (f"{metric}: {len(points)} reading(s) seen from {points[0].at:%H:%M:%S} to {last.at:%H:%M:%S}; last "
            f"{number(last.value)} ({last.verdict.value}); {limits}")


def _point_text(point: Point) -> str:
    text = f"{point.at:%H:%M:%S} {number(point.value)} {point.verdict.value}"
    return f"{text}: {point.message}" if point.message else text
