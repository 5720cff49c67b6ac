"""Durations and maintenance windows, by table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.core.spec import WindowSpec
from reconciler.core.timing import format_duration, human_duration, in_window, next_window_start, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1.5m", 90),
                                               ("2d", 172800), (45, 45), ("45", 45)])
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-5s", "5 minutes", True, -1, ""])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(("seconds", "text"), [(300, "5m"), (90, "90s"), (0.25, "250ms"), (3600, "1h"), (0, "0s")])
def test_format_duration_is_the_shortest_exact_spelling(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text and parse_duration(text) == seconds


def test_human_duration() -> None:
    assert [human_duration(s) for s in (0.42, 75, 3700)] == ["0.4s", "1m 15s", "1h 1m"]


SHANGHAI = WindowSpec(days=["mon", "tue", "wed", "thu"], start="01:00", end="05:00", timezone="Asia/Shanghai")
OVERNIGHT = WindowSpec(days=["fri"], start="22:00", end="02:00", timezone="UTC")


@pytest.mark.parametrize(
    ("window", "when", "open_"),
    [
        (SHANGHAI, "2026-11-22T17:30:00Z", True),  # Monday 01:30 in Shanghai
        (SHANGHAI, "2026-11-22T21:00:00Z", False),  # Monday 05:00 in Shanghai: the end is excluded
        (SHANGHAI, "2026-11-20T18:00:00Z", False),  # Saturday 02:00 in Shanghai
        (OVERNIGHT, "2026-11-27T23:00:00Z", True),  # Friday 23:00
        (OVERNIGHT, "2026-11-28T01:59:00Z", True),  # Saturday 01:59, still Friday's window
        (OVERNIGHT, "2026-11-28T02:00:00Z", False),
        (OVERNIGHT, "2026-11-26T23:00:00Z", False),  # Thursday night
    ],
)
def test_windows_in_their_own_time_zone(window: WindowSpec, when: str, open_: bool) -> None:
    assert in_window([window], datetime.fromisoformat(when.replace("Z", "+00:00"))) is open_


def test_no_window_means_always_open_and_the_next_opening_is_found() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # Sunday
    assert in_window([], now)
    opening = next_window_start([SHANGHAI], now)
    assert opening is not None and opening.astimezone(UTC) == datetime(2026, 11, 22, 17, 0, tzinfo=UTC)
    assert next_window_start([], now) is None
