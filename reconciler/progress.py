"""What `grayops run` and `grayops demo` show: on a terminal, a live table of one row per rollout kept at the
bottom while log lines scroll above it (rich); plain log lines otherwise. Colour and symbols follow the terminal
(off with NO_COLOR); `PHASE_LOOK` is shared with `grayops status`."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from reconciler.core.model import Phase, RolloutState
from reconciler.core.report import summarize

# The symbol and the colour of each phase: done well, moving, waiting for a human, gone wrong.
PHASE_LOOK: dict[Phase, tuple[str, str]] = {
    Phase.PENDING: ("…", "dim"),
    Phase.WAITING_WINDOW: ("◷", "blue"),
    Phase.AWAITING_APPROVAL: ("?", "yellow"),
    Phase.PROGRESSING: ("▶", "cyan"),
    Phase.PAUSED: ("⏸", "yellow"),
    Phase.ROLLING_BACK: ("↺", "magenta"),
    Phase.SUCCEEDED: ("✓", "green"),
    Phase.ROLLED_BACK: ("↺", "red"),
    Phase.FAILED: ("✗", "bold red"),
}


def phase_text(phase: Phase) -> Text:
    symbol, style = PHASE_LOOK[phase]
    return Text(f"{symbol} {phase.value}", style=style)


def rollout_table(states: Mapping[str, RolloutState], batches_total: Mapping[str, int],
                  notes: bool = False) -> Table:
    """One row per rollout: phase, versions, batch n of m, a bar of the instances done; with `notes`, what it
    waits for or its last reason."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("PLUGIN", "PHASE", "VERSION", "BATCH", "INSTANCES", "", *(("NOTE",) if notes else ())):
        table.add_column(column)
    for name in sorted(states):
        s = summarize(states[name], batches_total.get(name))
        batch = f"{s.batch_number}/{s.batches_total} {s.batch}" if s.batch else "-"
        bar: RenderableType = ProgressBar(total=max(s.total, 1), completed=s.done, width=20)
        note = (f"waiting for {states[name].waiting_for}" if states[name].waiting_for else s.reason,) if notes else ()
        table.add_row(name, phase_text(s.phase), f"{s.from_version or '-'} -> {s.target_version}", batch, bar,
                      f"{s.done}/{s.total}", *note)
    return table


class LiveDisplay(logging.Handler):
    """The live table at the bottom of a terminal; log records are printed above it."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self._console = console or Console(stderr=True)
        self._live = Live(Text(""), console=self._console, auto_refresh=False, transient=False,
                          redirect_stdout=False, redirect_stderr=False)
        self._lock = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
        self._live.start()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self._console.print(Text(self.format(record)), soft_wrap=True)

    def show(self, states: Mapping[str, RolloutState], batches_total: Mapping[str, int]) -> None:
        with self._lock:
            self._live.update(rollout_table(states, batches_total), refresh=True)

    def close(self) -> None:
        with self._lock:
            self._live.stop()
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
