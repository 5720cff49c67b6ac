"""The record as a running reconciler holds it, for a `grayops run` that serves the web view (README "Web view").

The reconciler calls `update(fleet, states)` after each tick, from its own thread, and never waits: a worker
thread publishes the new Record (one for several ticks when it falls behind, with every tick's readings). The
states come from memory, so a chart gets every reading as it is taken (each tick), not only the ones a status
commit kept; what only git has (each plugin's timeline, the reports, a status file that cannot be read) is read
from the reconciler's own clone, when its HEAD moved.

Wiring (`listen.py` does it for `grayops run --listen`: the web view mounted last, at `/`, after /metrics, /healthz
and /readyz):

    source = ReconcilerRecordSource(reconciler.repo, registry.models)
    source.start()
    app = Starlette(routes=[..., Mount("/", create_app(source))])
    # after each tick:  source.update(reconciler.fleet, reconciler.states, report.invalid)
    # on exit:          source.close()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from reconciler.adapters.gitrepo import GitRepo
from reconciler.core.fleet import Fleet
from reconciler.core.model import RolloutState
from reconciler.core.spec import AdapterModels
from reconciler.web.gitsource import RepoReader
from reconciler.web.record import Listener, Listeners, ReadingLog, Record

log = logging.getLogger(__name__)

UNREAD_LIMIT = 10_000  # states kept for their readings while the worker is busy (bounds memory if it is stuck)


class ReconcilerRecordSource:
    def __init__(self, repo: GitRepo, adapters: AdapterModels, *, source: str = "the reconciler's record",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.reader = RepoReader(repo, adapters, ReadingLog())
        self.clock = clock
        self._listeners = Listeners()
        self._record = Record(revision="0", source=source)
        self._serial = 0
        self._heads: tuple[str | None, str | None] | None = None
        self._lock = threading.Lock()
        self._pending: tuple[Fleet | None, dict[str, RolloutState], tuple[str, ...]] | None = None
        self._unread: list[RolloutState] = []  # each tick's states since the worker last ran: their readings
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- RecordSource ---------------------------------------------------------------------------------------

    def record(self) -> Record:
        return self._record

    def report(self, path: str) -> str | None:
        return self.reader.report(path)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    # --- what the reconciler calls ------------------------------------------------------------------------------

    def update(self, fleet: Fleet | None, states: Mapping[str, RolloutState], refused: tuple[str, ...] = ()) -> None:
        """The revision in force and the states after a tick (and the errors of a refused HEAD); returns at once."""
        with self._lock:
            self._pending = (fleet, dict(states), tuple(refused))
            # Records of ticks the worker missed are skipped, their readings not (a tick takes at most one each).
            self._unread.extend(states.values())
            del self._unread[:-UNREAD_LIMIT]
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="grayops-web-record", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # --- the worker ---------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, None
                unread, self._unread = self._unread, []
            if pending is None or self._stop.is_set():
                continue
            try:
                for state in unread:
                    self.reader.readings.observe(state)
                self.publish(*pending)
            except Exception:  # the view must never take the reconciler down: the next tick tries again
                log.exception("the web view could not read the record")

    def publish(self, fleet: Fleet | None, states: Mapping[str, RolloutState], refused: tuple[str, ...]) -> Record:
        """A new Record from the reconciler's states and its clone (run by the worker; callable directly in tests)."""
        reader = self.reader
        for state in states.values():
            reader.readings.observe(state)
        reader.fleet = fleet if fleet is not None else reader.fleet
        heads = reader.heads()
        if heads != self._heads:
            reader.read(fleet=False)
            self._heads = heads
        old = self._record
        new = replace(old, fleet=reader.fleet, refused=refused, states=dict(states),
                      unreadable={p: why for p, why in reader.unreadable.items() if p not in states},
                      finished=reader.finished, timelines=dict(reader.timelines),
                      readings=reader.readings.snapshot(), head=heads[0])
        if new == old:
            return old
        self._serial += 1
        self._record = replace(new, revision=str(self._serial), read_at=self.clock())
        self._listeners.tell(self._record)
        return self._record
