"""`/openapi.json`: an OpenAPI 3.1 document of every route the one server serves (README "HTTP API").

Made from the app's own routes when first asked for, so it cannot leave a route out: each path and method, its
path parameters, and for the API's POSTs the JSON schema of the pydantic model the route validates its body with.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router

from reconciler import __version__
from reconciler.api.routes import ApprovalTokenRequest, CommandRequest, PlanRequest, RollbackRequest

OPENAPI_PATH = "/openapi.json"
# The body each API route validates (the rollout commands share one model).
BODIES: Mapping[str, type[BaseModel]] = {
    "/internal/version/upgrade/plan": PlanRequest,
    "/internal/version/upgrade/rollback": RollbackRequest,
    "/api/v1/rollouts/{plugin}/pause": CommandRequest,
    "/api/v1/rollouts/{plugin}/resume": CommandRequest,
    "/api/v1/rollouts/{plugin}/retry": CommandRequest,
    "/api/v1/rollouts/{plugin}/approve": CommandRequest,
    "/api/v1/rollouts/{plugin}/approval-tokens": ApprovalTokenRequest,
}
# What is not the JSON API, and how it is called.
OTHERS: Mapping[str, tuple[str, str]] = {
    "/slack/events": ("slack", "Slack's slash commands and buttons (form bodies signed by Slack)"),
    "/webhooks/git": ("webhooks", "a git push webhook from GitHub, GitLab or Gitea/Forgejo (their signed JSON)"),
    "/metrics": ("telemetry", "Prometheus metrics (text exposition format)"),
    "/healthz": ("telemetry", "liveness: the process answers"),
    "/readyz": ("telemetry", "readiness"),
    OPENAPI_PATH: ("telemetry", "this document"),
}
_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(:[a-z]+)?}")
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def routes_of(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """(path, methods) of every route, into mounted routers; a mount of something else (static files) is one
    GET of its path."""
    for route in routes:
        if isinstance(route, Route):
            methods = sorted((route.methods or {"GET"}) - {"HEAD"})
            yield _PARAM.sub(r"{\1}", prefix + route.path), methods
        elif isinstance(route, Mount):
            inner = route.app if isinstance(route.app, Router) else getattr(route.app, "router", None)
            if isinstance(inner, Router):
                yield from routes_of(inner.routes, prefix + route.path)
            else:
                yield f"{prefix}{route.path}/{{path}}", ["GET"]


def document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for path, methods in routes_of(routes):
        for method in methods:
            paths.setdefault(path, {})[method.lower()] = _operation(path, method, schemas)
    return {"openapi": "3.1.0", "info": {"title": "grayops", "version": __version__},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                           "schemas": dict(sorted(schemas.items()))},
            "paths": dict(sorted(paths.items()))}


def _operation(path: str, method: str, schemas: dict[str, Any]) -> dict[str, Any]:
    tag, summary = OTHERS.get(path, ("api" if path.startswith(("/api/", "/internal/")) else "web view",
                                     "a page of the web view (HTML)"))
    operation: dict[str, Any] = {"tags": [tag], "summary": summary if tag != "api" else _summary(path, method),
                                 "responses": {"200": {"description": "OK"}}}
    names = _PARAM.findall(path)
    if names:
        operation["parameters"] = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                                   for name, _ in names]
    if tag == "api":
        operation["security"] = [{"bearer": []}]
        error = {"description": "refused: {\"error\": why}", "content": {"application/json": {"schema": _ERROR}}}
        operation["responses"].update({code: error for code in ("400", "401", "403", "404", "409", "413", "429")})
        if method == "POST":
            operation["responses"]["202"] = {"description": "committed: {\"commit\", \"pushed\", \"message\"}"}
    if method == "POST" and path in BODIES:
        model = BODIES[path]
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        operation["requestBody"] = {"required": path.startswith("/internal/") or path.endswith("approval-tokens"),
                                    "content": {"application/json": {
                                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
    return operation


def _summary(path: str, method: str) -> str:
    return f"{method} {path} (README \"HTTP API\")"


class OpenApi:
    """The document's route. `top` is the app it describes, set once that app is built (it contains this route)."""

    def __init__(self) -> None:
        self.top: object = None  # a Starlette app or Router
        self._doc: dict[str, Any] | None = None

    def route(self) -> Route:
        return Route(OPENAPI_PATH, self.serve, methods=["GET"])

    async def serve(self, request: Request) -> Response:
        if self._doc is None:
            self._doc = document(getattr(self.top if self.top is not None else request.app, "routes", []))
        return JSONResponse(self._doc)
