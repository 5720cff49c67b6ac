"""Durations ("5m", "300s", "500ms") and maintenance windows, evaluated against a `now` passed in."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_duration(value: object) -> float:
    """Seconds from "500ms", "30s", "5m", "1h", "1d" or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration such as 500ms, 30s, 5m or 1h")


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 300 -> "5m", 90 -> "90s", 0.5 -> "500ms"."""
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


def human_duration(seconds: float) -> str:
    """Rounded for people: "4m 10s", "1h 5m", "0.4s"."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


class WindowLike(Protocol):
    @property
    def days(self) -> Sequence[str]: ...
    @property
    def start(self) -> str: ...
    @property
    def end(self) -> str: ...
    @property
    def timezone(self) -> str: ...


def parse_clock(value: str) -> time:
    """"01:00" -> time(1, 0); "24:00" means the end of the day."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value)
    if not match:
        raise ValueError(f"{value!r} is not a time of day HH:MM")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour == 24 and minute == 0:
        return time.max
    if hour > 23 or minute > 59:
        raise ValueError(f"{value!r} is not a time of day HH:MM")
    return time(hour, minute)


def _window_open(window: WindowLike, now: datetime) -> bool:
    local = now.astimezone(ZoneInfo(window.timezone))
    start, end, clock = parse_clock(window.start), parse_clock(window.end), local.time()
    day = DAYS[local.weekday()]
    if start <= end:
        return day in window.days and start <= clock < end
    # Overnight: the window opens on a listed day and runs past midnight into the next one.
    yesterday = DAYS[(local.weekday() - 1) % 7]
    return (day in window.days and clock >= start) or (yesterday in window.days and clock < end)


def in_window(windows: Sequence[WindowLike], now: datetime) -> bool:
    """True when there are no windows (always open) or `now` falls inside one of them."""
    return not windows or any(_window_open(w, now) for w in windows)


def next_window_start(windows: Sequence[WindowLike], now: datetime) -> datetime | None:
    """When the next window opens after `now`; None when there are no windows."""
    candidates = []
    for window in windows:
        zone = ZoneInfo(window.timezone)
        local_today = now.astimezone(zone).date()
        start = parse_clock(window.start)
        for offset in range(8):
            day = local_today + timedelta(days=offset)
            if DAYS[day.weekday()] in window.days:
                opening = datetime.combine(day, start, tzinfo=zone)
                if opening > now:
                    candidates.append(opening)
                    break
    return min(candidates, default=None)
