"""Every notifier gets every event; one that raises is logged and skipped, never stopping the others."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reconciler.adapters.ports import Notifier
from reconciler.core.effects import Event

log = logging.getLogger(__name__)


class FanOut:
    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = tuple(notifiers)

    def notify(self, event: Event) -> None:
        for notifier in self.notifiers:
            try:
                notifier.notify(event)
            except Exception:  # a notifier must never stop the reconciler
                log.exception("notifier %s failed", type(notifier).__name__)
