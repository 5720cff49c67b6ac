"""What `grayops run` shows: a live block of one line per rollout on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from typing import TextIO

from reconciler.core.model import RolloutState
from reconciler.core.report import summarize


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / total) if total else width
    return "█" * filled + "·" * (width - filled)


class LiveDisplay(logging.Handler):
    """A block of status lines kept at the bottom of a terminal; log records are printed above it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))

    def _clear(self) -> None:
        if self._lines:
            self.stream.write(f"\x1b[{len(self._lines)}F\x1b[J")

    def _draw(self) -> None:
        for line in self._lines:
            self.stream.write(line + "\n")
        self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self._clear()
            self.stream.write(self.format(record) + "\n")
            self._draw()

    def show(self, states: Mapping[str, RolloutState], batches_total: Mapping[str, int]) -> None:
        lines = []
        for name in sorted(states):
            s = summarize(states[name], batches_total.get(name))
            batch = f"{s.batch_number}/{s.batches_total} {s.batch}" if s.batch else "-"
            lines.append(f"  {name:<14} {s.phase.value:<16} {s.from_version or '-':>8} -> {s.target_version:<8} "
                         f"batch {batch:<14} {_bar(s.done, s.total)} {s.done}/{s.total}")
        with self._lock:
            self._clear()
            self._lines = lines
            self._draw()

    def close(self) -> None:
        with self._lock:
            self._lines = []
        super().close()


def configure_logging(level: str, live: bool) -> LiveDisplay | None:
    """Plain timestamped lines on stderr, or the live display when stderr is a terminal and `live` is asked."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level.upper())
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every change it sees
    if live and sys.stderr.isatty():
        display = LiveDisplay()
        root.addHandler(display)
        return display
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    return None
