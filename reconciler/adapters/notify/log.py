"""The log notifier: every transition and alert as one log line. The default, and always on."""

from __future__ import annotations

import logging
from typing import Literal

from reconciler.adapters.ports import Context, Notifier, NotifierAdapter
from reconciler.core.effects import Event
from reconciler.core.model import Severity
from reconciler.core.spec import NotifierSettings

log = logging.getLogger("grayops.events")

_LEVELS = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING, Severity.CRITICAL: logging.ERROR}


class LogNotifier:
    """Writes each event as one log line: `billing 1.6.0 RollingBack: <reason>`, alerts marked with their kind."""

    def notify(self, event: Event) -> None:
        if event.kind == "transition":
            log.info("%s %s %s: %s", event.plugin, event.version, event.phase.value, event.message)
        else:  # alert messages name their plugin and version themselves
            log.log(_LEVELS[event.severity], "ALERT %s (%s): %s", event.kind, event.severity.value, event.message)



class LogSettings(NotifierSettings):
    type: Literal["log"]


def _build(settings: LogSettings, context: Context) -> Notifier | None:
    return None  # always on: the registry adds the one log notifier whether grayops.yaml lists it or not


NOTIFIER = NotifierAdapter("log", LogSettings, _build)
