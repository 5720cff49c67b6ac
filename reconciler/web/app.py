"""The web view as one ASGI application (Starlette): pages rendered on the server, live updates, assets.

    /                          the fleet: every plugin's rollout, progress and what it waits for
    /rollouts/{plugin}         one rollout: batches, instances, metric charts, timeline, report
    /instances[?tier=T&page=N] clusters x plugins by version and step, per tier
    /clusters/{cluster}        one cluster's instances
    /history/{plugin}          finished rollouts, newest first
    /history/{plugin}/{id}     the report of one finished rollout
    /events                    server-sent events: the record changed
    /static/...                CSS, script, icon (shipped in the package)

Every page reads fully without JavaScript; the script only swaps the live parts when `/events` says the record
changed. Pages of one revision of the record are rendered once (a small cache keyed by URL and revision). Links
start with the ASGI `root_path`, so the app can be mounted under a prefix.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from reconciler.core.timing import human_duration
from reconciler.web import views
from reconciler.web.live import Broadcaster
from reconciler.web.markdown import report_html
from reconciler.web.record import Record, RecordSource

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REFRESH_SECONDS = 30  # how often a page refreshes itself when JavaScript is off
CACHE_PAGES = 64
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> Markup:
    """A time as a `<time>` element, in UTC."""
    if value is None:
        return Markup("-")
    text = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(f'<time datetime="{escape(value.isoformat())}">{escape(text)}</time>')


def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = when
    env.filters["duration"] = human_duration
    env.filters["short"] = lambda commit: (commit or "")[:10]
    env.globals["PHASES"] = views.PHASES
    env.globals["STEPS"] = views.STEPS
    return env


class WebView:
    """The pages and the event stream over one RecordSource."""

    def __init__(self, source: RecordSource) -> None:
        self.source = source
        self.env = templates()
        self.broadcaster = Broadcaster(current=source.record())
        self._unsubscribe = source.subscribe(self.broadcaster.publish)
        self._cache: OrderedDict[tuple[str, str, str], str] = OrderedDict()  # pages render in a thread pool
        self._cache_lock = threading.Lock()

    def close(self) -> None:
        self._unsubscribe()
        self.broadcaster.close()

    # --- rendering ----------------------------------------------------------------------------------------------

    def render(self, request: Request, template: str, record: Record, status: int = 200, **context: Any) -> Response:
        html = self.env.get_template(template).render(
            root=request.scope.get("root_path", "").rstrip("/"), record=record, refresh=REFRESH_SECONDS,
            plugin=context.pop("plugin", ""), section=context.pop("section", ""), **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def cached(self, request: Request, build: Callable[[Record], Response]) -> Response:
        """One rendering per page and revision of the record."""
        record = self.source.record()
        key = (request.scope.get("root_path", ""), str(request.url.path) + "?" + str(request.url.query),
               record.revision)
        with self._cache_lock:
            html = self._cache.get(key)
            if html is not None:
                self._cache.move_to_end(key)
        if html is not None:
            return HTMLResponse(html, headers=SECURITY_HEADERS)
        response = build(record)
        if response.status_code == 200:
            with self._cache_lock:
                self._cache[key] = bytes(response.body).decode("utf-8")
                while len(self._cache) > CACHE_PAGES:
                    self._cache.popitem(last=False)
        return response

    def missing(self, request: Request, record: Record, title: str, message: str) -> Response:
        return self.render(request, "error.html", record, 404, title=title, message=message)

    # --- pages --------------------------------------------------------------------------------------------------

    def fleet(self, request: Request) -> Response:
        def build(record: Record) -> Response:
            rows = views.fleet_rows(record)
            return self.render(request, "fleet.html", record, rows=rows, counts=views.phase_counts(rows),
                               section="fleet")
        return self.cached(request, build)

    def rollout(self, request: Request) -> Response:
        plugin = request.path_params["plugin"]

        def build(record: Record) -> Response:
            if not record.knows(plugin):
                return self.unknown_plugin(request, record, plugin)
            view = views.rollout_view(record, plugin)
            report = None
            if view.report is not None:
                text = self.source.report(view.report.path)
                report = report_html(text, heading_offset=2) if text else None
            return self.render(request, "rollout.html", record, view=view, report=report, plugin=plugin)
        return self.cached(request, build)

    def instances(self, request: Request) -> Response:
        tier = request.query_params.get("tier") or None
        try:
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            page = 1

        def build(record: Record) -> Response:
            grid = views.instance_grid(record, tier, page)
            if tier is not None and tier not in {t.tier for t in grid.tiers}:
                known = ", ".join(t.tier for t in grid.tiers) or "none"
                return self.missing(request, record, "No such tier",
                                    f"No cluster has the tier {tier!r} (tiers: {known}).")
            return self.render(request, "instances.html", record, grid=grid, section="instances")
        return self.cached(request, build)

    def cluster(self, request: Request) -> Response:
        name = request.path_params["cluster"]

        def build(record: Record) -> Response:
            tiers = views.cluster_tiers(record)
            if name not in tiers:
                return self.missing(request, record, "No such cluster",
                                    f"grayops.yaml and the record name no cluster {name!r}.")
            return self.render(request, "cluster.html", record, cluster=name, tier=tiers[name],
                               rows=views.cluster_rows(record, name), section="instances")
        return self.cached(request, build)

    def history(self, request: Request) -> Response:
        plugin = request.path_params["plugin"]

        def build(record: Record) -> Response:
            if not record.knows(plugin):
                return self.unknown_plugin(request, record, plugin)
            return self.render(request, "history.html", record, rows=views.history_rows(record, plugin),
                               plugin=plugin)
        return self.cached(request, build)

    def report(self, request: Request) -> Response:
        plugin, rollout_id = request.path_params["plugin"], request.path_params["rollout"]

        def build(record: Record) -> Response:
            if not record.knows(plugin):
                return self.unknown_plugin(request, record, plugin)
            entry = next((f for f in record.finished.get(plugin, ()) if f.rollout_id == rollout_id), None)
            text = self.source.report(entry.path) if entry is not None else None
            if entry is None or text is None:
                return self.missing(request, record, "No such report",
                                    f"{plugin} has no finished rollout {rollout_id!r} in the record.")
            return self.render(request, "report.html", record, entry=entry, look=views.PHASES[entry.result],
                               report=report_html(text), plugin=plugin)
        return self.cached(request, build)

    def unknown_plugin(self, request: Request, record: Record, plugin: str) -> Response:
        known = ", ".join(record.plugins()) or "none"
        return self.missing(request, record, "No such plugin",
                            f"The fleet has no plugin named {plugin!r} (known: {known}).")

    async def events(self, request: Request) -> Response:
        record = self.source.record()
        return StreamingResponse(self.broadcaster.stream(record.revision), media_type="text/event-stream",
                                 headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"})

    # --- errors -------------------------------------------------------------------------------------------------

    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        record = self.source.record()
        if status == 404:
            return self.missing(request, record, "Not found", f"There is no page at {request.url.path}.")
        return self.render(request, "error.html", record, status, title=f"Error {status}",
                           message=getattr(exc, "detail", "") or "The request cannot be served.")

    async def server_error(self, request: Request, exc: Exception) -> Response:
        log.error("the web view could not render %s: %s", request.url.path, " ".join(str(exc).split()))
        html = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error · grayops</title></head>"
                "<body><main><h1>The page could not be rendered</h1><p>The error is in grayops' log. "
                "<a href=\"\">Try again</a>.</p></main></body></html>")
        return HTMLResponse(html, status_code=500, headers=SECURITY_HEADERS)


def create_app(source: RecordSource) -> Starlette:
    """The web view over `source`, to serve alone or mount at `/` of another Starlette app (`Mount("/", app)`)."""
    view = WebView(source)
    routes = [
        Route("/", view.fleet),
        Route("/rollouts/{plugin}", view.rollout),
        Route("/instances", view.instances),
        Route("/clusters/{cluster}", view.cluster),
        Route("/history/{plugin}", view.history),
        Route("/history/{plugin}/{rollout}", view.report),
        Route("/events", view.events),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers: Mapping[Any, Callable[..., Any]] = {HTTPException: view.not_found, Exception: view.server_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.web = view
    return app
