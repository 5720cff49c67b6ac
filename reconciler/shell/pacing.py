"""Pacing: a tick spends at most a time budget observing, deciding and recording plugins (README "Sizing").

A fleet of thousands of plugins cannot be gone through in one short tick: each plugin that moves is a commit. So a
tick takes the plugins in turn until its budget is spent, and the next one goes on from there: the commits are
pushed at the end of every tick (as the work goes), ticks keep completing (`/readyz`), and a human's change is
read at the next fetch. The turn: plugins whose desired state changed since the last tick first (a pause, a
rollback, a new version: obeyed within the next tick, however long the queue), then the ones waiting longest; each
plugin's dependencies (dependsOn) just before it. The first plugin of a tick always goes, so every tick moves on.
A tick that recorded what a human's change asked pushes it at its end, even when woken meanwhile (`tick`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from reconciler.core.effects import Desired

TICK_BUDGET = 2.0  # seconds a tick spends going through plugins; the rest wait for the next tick


class Pacing:
    def __init__(self, budget: float = TICK_BUDGET, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget, self._clock = budget, clock
        self._wanted: Mapping[str, Desired] = {}  # the desired state of the last tick
        self._turns = 0
        self._reached: dict[str, int] = {}  # plugin -> the tick that last went through it
        self.left: int = 0  # plugins the last tick did not reach
        self.changed: frozenset[str] = frozenset()  # plugins whose desired state changed since the last tick

    def order(self, desired: Mapping[str, Desired],
              dependencies_first: Callable[[Mapping[str, Desired]], list[str]]) -> list[str]:
        """The plugins in the order this tick takes them: changed first, then the longest waiting, each one's
        dependencies before it."""
        changed = {name for name, want in desired.items()
                   if self._wanted and (last := self._wanted.get(name)) is not want and last != want}
        self._wanted, self.changed = desired, frozenset(changed)
        ranked = sorted(desired, key=lambda name: (name not in changed, self._reached.get(name, -1)))
        return dependencies_first({name: desired[name] for name in ranked})

    def turn(self, order: list[str]) -> Iterator[str]:
        """`order`'s plugins, until the budget is spent (at least one)."""
        self._turns += 1
        deadline = self._clock() + self.budget
        self.left = len(order)
        for name in order:
            if self.left < len(order) and self._clock() >= deadline:
                return
            self._reached[name] = self._turns
            self.left -= 1
            yield name
