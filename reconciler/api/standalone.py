"""The one server's app without a reconciler (`grayops serve`): the routes given (the API, the webhooks,
/slack/events, /openapi.json) beside /metrics (the process's own Prometheus registry: the bot's counters, the
process's), /healthz and /readyz (ready once the clone is there, which is before the server starts)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

TEXT = "text/plain; charset=utf-8"


def standalone_app(routes: Sequence[BaseRoute], ready: str) -> Starlette:
    """`ready` is /readyz's line."""

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return Response(b"ok\n", media_type=TEXT)

    async def readyz(request: Request) -> Response:
        return Response(f"{ready}\n", media_type=TEXT)

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz),
                             *routes])
