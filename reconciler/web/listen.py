"""What `grayops run --listen HOST:PORT` serves (README "Web view"): the telemetry (`/metrics`, `/healthz`,
`/readyz`), the HTTP API and webhooks (README "HTTP API") and the web view at `/` on one port, the view fed by
the reconciler of the same process.

    served = ListenServer(telemetry, repo, registry.models, host, port).start()   # OSError: the port is taken
    # after each tick:  served.update(reconciler.fleet, reconciler.states, report.invalid)
    # on exit:          served.stop()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.telemetry import Telemetry, TelemetryServer
from reconciler.core.fleet import Fleet
from reconciler.core.model import RolloutState
from reconciler.core.spec import AdapterModels
from reconciler.web.app import create_app
from reconciler.web.inprocess import ReconcilerRecordSource


class ListenServer:
    def __init__(self, telemetry: Telemetry, repo: GitRepo, adapters: AdapterModels, host: str = "127.0.0.1",
                 port: int = 0, routes: Sequence[BaseRoute] = ()) -> None:
        self.source = ReconcilerRecordSource(repo, adapters)
        self.app = create_app(self.source)
        # Routes of their own (the HTTP API, the webhooks) come before the web view, which takes every other path.
        root = Starlette(routes=[*routes, Mount("/", app=self.app)]) if routes else self.app
        self.server = TelemetryServer(telemetry, host, port, root=root)

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> Self:
        self.server.start()  # binds first: a port taken stops here, before any thread runs
        self.source.start()
        return self

    def update(self, fleet: Fleet | None, states: Mapping[str, RolloutState], refused: tuple[str, ...] = ()) -> None:
        """The reconciler's revision in force and states after a tick; returns at once (the view reads on a thread
        of its own)."""
        self.source.update(fleet, states, refused)

    def stop(self) -> None:
        self.app.state.web.close()  # the open event streams end at once: a stop never waits on a browser left open
        self.server.stop()
        self.source.close()
