"""The API's and the webhooks' routes (README "HTTP API"). Each answer is JSON; a refusal is `{"error": ...}`.

Checked in this order, so a refusal never costs more than it must and never commits: the token (401), its
rate (429), its scope (403), the body's size (413) and form (400), then the plugin (404). Git work runs in
Starlette's thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.acks import acknowledge
from reconciler.adapters.gitrepo import GitError, ProposalExists
from reconciler.api.approval import TRAILER, ApprovalRefused, check, issue
from reconciler.api.auth import Caller, RateLimiter, bearer, find_token
from reconciler.api.backend import BODY_TIMEOUT, ApiBackend
from reconciler.api.webhooks import SeenDeliveries, read_push, verified_forge
from reconciler.commands import CommandRefused, run_command
from reconciler.core import planview, yamledit
from reconciler.core.engine import ENGINE
from reconciler.core.escalation import OpenAlert, plugin_of_alert
from reconciler.core.model import Phase, RolloutState, fmt_time, to_doc
from reconciler.core.report import latest_report, report_path
from reconciler.core.spec import ApiScope, ApprovalAction, CommitCommand, Duration, Name, Strict, Version
from reconciler.core.text import REASON_LIMIT

log = logging.getLogger("grayops.api")

BODY_LIMIT = 1024 * 1024  # 1 MiB, by Content-Length before a byte is read, and as it streams in
# The scope each command needs: resume goes with pause; retry, like approve, lets a rollout go forward again.
SCOPES: Mapping[CommitCommand, ApiScope] = {"pause": "pause", "resume": "pause", "rollback": "rollback",
                                            "retry": "approve", "approve": "approve"}
# under /api/v1/rollouts/{plugin}/; a rollback is POST /internal/version/upgrade/rollback
ROLLOUT_COMMANDS: tuple[CommitCommand, ...] = ("pause", "resume", "retry", "approve")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


class PlanRequest(Strict):
    plugin: Name
    version: Version
    policy: Name | None = None
    propose: bool = False


class RollbackRequest(Strict):
    plugin: Name
    reason: str = Field(min_length=1, max_length=REASON_LIMIT)


class CommandRequest(Strict):
    reason: str | None = Field(None, max_length=REASON_LIMIT)
    batch: Name | None = None  # approve only: the batch (default: the next one that awaits an approval)
    approval_token: str | None = Field(None, max_length=200)  # approve, retry, resume of a pause by grayops


class ApprovalTokenRequest(Strict):
    action: ApprovalAction
    ttl: Duration = 900.0


M = TypeVar("M", bound=Strict)
Handler = Callable[[Request], Awaitable[Response]]


def _answering(handler: Handler) -> Handler:
    """An ApiError becomes its JSON answer (the routes carry this themselves, wherever they are mounted)."""
    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as err:
            if err.status >= 500 or err.status in (401, 403, 429):
                log.warning("%s %s refused (%d): %s", request.method, request.url.path, err.status, err.message)
            return JSONResponse({"error": err.message}, err.status, headers=err.headers)
    return answer


async def read_body(request: Request, limit: int = BODY_LIMIT, timeout: float = BODY_TIMEOUT) -> bytes:
    """The whole body within `limit` bytes (413) and `timeout` seconds (408, and the connection is closed: a
    client that trickles its body holds no worker for longer)."""
    length = request.headers.get("content-length")
    if length is not None and not length.strip().isdigit():
        raise ApiError(400, f"Content-Length {length!r} is not a number")
    if length is not None and int(length) > limit:
        raise ApiError(413, f"the body is over {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise ApiError(413, f"the body is over {limit} bytes")
    except TimeoutError:
        raise ApiError(408, f"the request's body did not arrive within {timeout:g}s", {"Connection": "close"}) from None
    return bytes(body)


def _field_errors(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()[:5])


class Api:
    def __init__(self, backend: ApiBackend) -> None:
        self.backend = backend
        self.limiter = RateLimiter(backend.rate, backend.monotonic)
        self.deliveries = SeenDeliveries()

    # --- who asks, and what --------------------------------------------------------------------------------

    async def caller(self, request: Request, scope: ApiScope) -> Caller:
        challenge = {"WWW-Authenticate": "Bearer"}
        presented = bearer(request.headers.get("authorization"))
        if presented is None:
            raise ApiError(401, "a bearer token is needed (Authorization: Bearer <token>)", challenge)
        found = find_token(await run_in_threadpool(self.backend.tokens), presented)
        if found is None:
            raise ApiError(401, "the token is not one of access.yaml's tokens", challenge)
        if not self.limiter.allow(found.name):
            raise ApiError(429, f"token {found.name} is over its rate; try again shortly", {"Retry-After": "1"})
        caller = Caller(found)
        if not caller.may(scope):
            raise ApiError(403, f"token {found.name} lacks the scope {scope}; nothing was done")
        return caller

    async def body(self, request: Request, model: type[M], empty: bool = False) -> M:
        raw = await read_body(request, timeout=self.backend.body_timeout)
        if empty and not raw.strip():
            return model.model_validate({})
        try:
            data: Any = json.loads(raw)
        except ValueError as err:  # not UTF-8, or not JSON
            raise ApiError(400, f"the body is not JSON: {err}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as err:
            raise ApiError(400, _field_errors(err)) from None

    def known(self, plugin: str) -> None:
        """404 unless `plugin` is one of the view's, or has a file at HEAD (a brake acts on it at a refused one)."""
        view = self.backend.view()
        if plugin in view.plugins:
            return
        plugins = set(self.backend.plugins())
        if plugin not in plugins:
            known = ", ".join(sorted(view.plugins | plugins)) or "none"
            raise ApiError(404, f"no plugin named {plugin!r} (known: {known})")

    # --- the plan and the commands ---------------------------------------------------------------------------

    async def plan(self, request: Request) -> Response:
        caller = await self.caller(request, "plan")
        asked = await self.body(request, PlanRequest)
        return JSONResponse(await run_in_threadpool(self._plan, asked, caller))

    def _plan(self, asked: PlanRequest, caller: Caller) -> dict[str, Any]:
        """`grayops plan -o json` of HEAD with the plugin at `version` (and `policy`): what that change would get."""
        self.known(asked.plugin)
        fleet, refused = self.backend.head()
        if fleet is None:
            raise ApiError(409, f"the fleet repository is invalid at HEAD, fix it first: {refused}")
        plugin = fleet.plugins.get(asked.plugin)
        if plugin is None:
            raise ApiError(404, f"no plugin named {asked.plugin!r}")
        policy = asked.policy or plugin.spec.policy
        if policy not in fleet.policies:
            raise ApiError(400, f"policy: no policy named {policy!r} (known: {', '.join(sorted(fleet.policies))})")
        spec = plugin.spec.model_copy(update={"version": asked.version, "policy": policy})
        changed = replace(fleet, plugins={**fleet.plugins, asked.plugin: plugin.model_copy(update={"spec": spec})})
        states = {asked.plugin: state} if (state := self._state(asked.plugin, strict=False)) else {}
        doc: dict[str, Any] = planview.to_doc(planview.build(changed, [asked.plugin], fleet, states))
        if asked.propose:
            doc["proposal"] = self._propose(asked, fleet.plugin_paths[asked.plugin], caller)
        return doc

    def _propose(self, asked: PlanRequest, path: str, caller: Caller) -> dict[str, str]:
        """Push `grayops/propose/<plugin>-<version>` with the change, for a merge request: the API never commits a
        version to the watched branch itself."""
        text = self.backend.repo.read(path) or ""
        text = yamledit.set_field(text, ("spec", "version"), asked.version)
        if asked.policy is not None:
            text = yamledit.set_field(text, ("spec", "policy"), asked.policy)
        branch = f"grayops/propose/{asked.plugin}-{asked.version}"
        try:
            commit = self.backend.repo.propose(branch, {path: text}, f"{asked.plugin} {asked.version}",
                                               [("Grayops-Action", "propose"), ("Requested-By", caller.by)])
        except ValueError as err:
            raise ApiError(400, f"version: {err}") from None
        except ProposalExists as err:
            raise ApiError(409, str(err)) from None
        except GitError as err:
            raise ApiError(503, str(err)) from None
        log.info("proposed %s %s on %s for %s", asked.plugin, asked.version, branch, caller.by)
        return {"branch": branch, "commit": commit}

    async def rollback(self, request: Request) -> Response:
        caller = await self.caller(request, "rollback")
        asked = await self.body(request, RollbackRequest)
        return await run_in_threadpool(self._command, caller, "rollback", asked.plugin, asked.reason, None)

    def command(self, command: CommitCommand) -> Handler:
        """POST /api/v1/rollouts/{plugin}/<command>, with an optional body `{reason, batch}`."""
        async def run(request: Request) -> Response:
            caller = await self.caller(request, SCOPES[command])
            asked = await self.body(request, CommandRequest, empty=True)
            if asked.batch is not None and command != "approve":
                raise ApiError(400, f"batch: only approve takes a batch, not {command}")
            return await run_in_threadpool(self._command, caller, command, request.path_params["plugin"],
                                           asked.reason, asked.batch, asked.approval_token)
        return run

    def _command(self, caller: Caller, command: CommitCommand, plugin: str, reason: str | None,
                 batch: str | None, approval_token: str | None = None) -> Response:
        self.known(plugin)
        once = self._approval(command, plugin, approval_token)
        try:
            result = run_command(self.backend.repo, command, plugin, caller.by, self.backend.now(), reason=reason,
                                 batch=batch, adapters=self.backend.adapters, once=once)
        except CommandRefused as err:
            raise ApiError(409, str(err)) from None
        except GitError as err:
            raise ApiError(503, str(err)) from None
        if result.done_before:
            assert once is not None
            raise ApiError(409, f"approval token {once[1]} was already used ({result.message}); ask for another")
        if not result.changed:
            return JSONResponse({"commit": None, "message": result.message})
        self.backend.wake()
        log.info("%s by %s: %s", command, caller.by, result.message)
        return JSONResponse({"commit": result.commit, "pushed": result.pushed, "message": result.message}, 202)

    def _approval(self, command: CommitCommand, plugin: str, presented: str | None) -> tuple[str, str] | None:
        """The `Approval-Token` trailer a critical command is done once under; None when it needs no token.
        Critical: approve, retry, and resume of a rollout grayops paused by itself."""
        state = self._state(plugin, strict=False)
        paused_by_grayops = state is not None and state.phase is Phase.PAUSED and state.paused_by == ENGINE
        if command not in ("approve", "retry") and not (command == "resume" and paused_by_grayops):
            return None
        action: ApprovalAction = "resume" if command == "resume" else command
        if presented is None:
            raise ApiError(403, f"{command} of {plugin} needs an approval token (approvalToken), issued by someone "
                                "allowed to approve; nothing was done")
        fleet, refused = self.backend.head()
        if fleet is None or plugin not in fleet.plugins:
            raise ApiError(409, f"the fleet repository is invalid at HEAD, fix it first: {refused}")
        try:
            used = check(self.backend.repo, plugin, fleet.plugins[plugin].spec.version, action, presented,
                         self.backend.now())
        except ApprovalRefused as err:
            raise ApiError(403, f"{err}; nothing was done") from None
        return (TRAILER, used)

    async def issue_token(self, request: Request) -> Response:
        caller = await self.caller(request, "approve")
        asked = await self.body(request, ApprovalTokenRequest)
        plugin = request.path_params["plugin"]

        def issue_it() -> Response:
            self.known(plugin)
            fleet, refused = self.backend.head()
            if fleet is None or plugin not in fleet.plugins:
                raise ApiError(409, f"the fleet repository is invalid at HEAD, fix it first: {refused}")
            version = fleet.plugins[plugin].spec.version
            try:
                issued = issue(self.backend.repo, plugin, version, asked.action, caller.by, self.backend.now(),
                               timedelta(seconds=asked.ttl))
            except ApprovalRefused as err:
                raise ApiError(400 if str(err).startswith("ttl") else 409, str(err)) from None
            except GitError as err:
                raise ApiError(503, str(err)) from None
            log.info("approval token %s for %s of %s %s issued by %s", issued.id, asked.action, plugin, version,
                     caller.by)
            return JSONResponse({"id": issued.id, "token": issued.token, "plugin": plugin, "version": version,
                                 "action": asked.action, "expires": fmt_time(issued.expires),
                                 "commit": issued.commit, "pushed": issued.pushed}, 201)
        return await run_in_threadpool(issue_it)

    # --- alerts (README "Owners and escalation") ------------------------------------------------------------

    async def alerts(self, request: Request) -> Response:
        await self.caller(request, "read")
        if self.backend.open_alerts is None:
            raise ApiError(404, "no reconciler runs here: open alerts are served by grayops run --listen")
        return JSONResponse({"alerts": [_alert_doc(a) for a in self.backend.open_alerts()]})

    async def ack(self, request: Request) -> Response:
        caller = await self.caller(request, "ack")
        await read_body(request, timeout=self.backend.body_timeout)  # any body is ignored, but within the limits
        alert = request.path_params["alert"]
        plugin = plugin_of_alert(alert)
        if plugin is None:
            raise ApiError(400, f"{alert!r} is not an alert id (<plugin>-<10 hex digits>)")

        def ack_it() -> Response:
            self.known(plugin)
            opened = self.backend.open_alerts
            if opened is not None and alert not in {a.id for a in opened()} and not self._acked(plugin, alert):
                raise ApiError(404, f"no open alert {alert} (GET /api/v1/alerts lists them)")
            try:
                result = acknowledge(self.backend.repo, alert, caller.by, self.backend.now())
            except CommandRefused as err:
                raise ApiError(409, str(err)) from None
            except GitError as err:
                raise ApiError(503, str(err)) from None
            if not result.changed:
                return JSONResponse({"commit": None, "message": result.message})
            self.backend.wake()
            log.info("ack by %s: %s", caller.by, result.message)
            return JSONResponse({"commit": result.commit, "pushed": result.pushed, "message": result.message}, 202)
        return await run_in_threadpool(ack_it)

    def _acked(self, plugin: str, alert: str) -> bool:
        fleet = self.backend.good_fleet()
        return fleet is not None and any(a.alert == alert for a in fleet.acks.get(plugin, ()))

    # --- reading the record ----------------------------------------------------------------------------------

    async def rollouts(self, request: Request) -> Response:
        await self.caller(request, "read")
        return JSONResponse(await run_in_threadpool(self._rollouts))

    def _rollouts(self) -> dict[str, Any]:
        view = self.backend.view()
        return {"rollouts": [to_doc(state) for _, state in sorted(view.states.items())],
                "unreadable": [{"plugin": name, "error": error} for name, error in sorted(view.unreadable.items())]}

    async def rollout(self, request: Request) -> Response:
        await self.caller(request, "read")
        plugin = request.path_params["plugin"]

        def read() -> dict[str, Any]:
            self.known(plugin)
            state = self._state(plugin, strict=True)
            return {"plugin": plugin, "status": to_doc(state) if state else None}
        return JSONResponse(await run_in_threadpool(read))

    async def report(self, request: Request) -> Response:
        await self.caller(request, "read")
        plugin = request.path_params["plugin"]

        def read() -> dict[str, Any]:
            self.known(plugin)
            paths = self.backend.report_paths(plugin)
            state = self._state(plugin, strict=False)
            named = report_path(state) if state is not None else None  # the status names it: read that one only
            texts = {p: self.backend.read_record(p) or "" for p in ([named] if named in paths else paths)}
            chosen = latest_report(texts, plugin, state)
            if chosen is None:
                raise ApiError(404, f"no report for {plugin} yet (reports are written when a rollout ends)")
            return {"plugin": plugin, "path": chosen, "report": texts[chosen]}
        return JSONResponse(await run_in_threadpool(read))

    def _state(self, plugin: str, strict: bool) -> RolloutState | None:
        view = self.backend.view()
        if strict and plugin in view.unreadable:
            raise ApiError(500, view.unreadable[plugin])
        return view.states.get(plugin)

    # --- webhooks --------------------------------------------------------------------------------------------

    async def webhook(self, request: Request) -> Response:
        body = await read_body(request, timeout=self.backend.body_timeout)
        headers = {name.lower(): value for name, value in request.headers.items()}
        secret = await run_in_threadpool(self.backend.webhook_secret)
        forge = verified_forge(headers, body, secret) if secret else None
        if forge is None:
            why = "its signature or token does not match the webhook secret" if secret else \
                "no webhook secret is configured (grayops.yaml git.webhook.secretEnv, and that variable set)"
            raise ApiError(401, f"the delivery is not verified: {why}")
        try:
            push = read_push(forge, headers, body)
        except ValueError as err:
            raise ApiError(400, f"the push event is not the JSON {forge.name} sends: {err}") from None
        if push.delivery is not None and not self.deliveries.first(f"{forge.name}:{push.delivery}"):
            return JSONResponse({"duplicate": True, "delivery": push.delivery})
        if not push.is_push:
            return JSONResponse({"ignored": "not a push event"}, 202)
        watched = f"refs/heads/{self.backend.repo.branch}"
        if push.ref != watched:
            return JSONResponse({"ignored": f"a push to {push.ref}, not {watched}"}, 202)
        self.backend.wake()
        log.info("push to %s (%s delivery %s): fetching now", watched, forge.name, push.delivery)
        return JSONResponse({"fetch": True, "delivery": push.delivery}, 202)


def _alert_doc(alert: OpenAlert) -> dict[str, Any]:
    event = alert.event
    return {"id": alert.id, "plugin": event.plugin, "version": event.version, "rolloutId": event.rollout_id,
            "kind": event.kind, "message": event.message, "raised": fmt_time(event.at), "level": alert.reached + 1}


def api_routes(backend: ApiBackend) -> list[Route]:
    """The API's and the webhooks' routes, to mount in the one server (before a catch-all such as the web view)."""
    api = Api(backend)
    return [
        Route("/internal/version/upgrade/plan", _answering(api.plan), methods=["POST"]),
        Route("/internal/version/upgrade/rollback", _answering(api.rollback), methods=["POST"]),
        Route("/api/v1/rollouts", _answering(api.rollouts), methods=["GET"]),
        Route("/api/v1/rollouts/{plugin}", _answering(api.rollout), methods=["GET"]),
        Route("/api/v1/rollouts/{plugin}/report", _answering(api.report), methods=["GET"]),
        *[Route(f"/api/v1/rollouts/{{plugin}}/{command}", _answering(api.command(command)), methods=["POST"])
          for command in ROLLOUT_COMMANDS],
        Route("/api/v1/rollouts/{plugin}/approval-tokens", _answering(api.issue_token), methods=["POST"]),
        Route("/api/v1/alerts", _answering(api.alerts), methods=["GET"]),
        Route("/api/v1/alerts/{alert}/ack", _answering(api.ack), methods=["POST"]),
        Route("/webhooks/git", _answering(api.webhook), methods=["POST"]),
    ]


def create_api_app(backend: ApiBackend) -> Starlette:
    """An app of the API's routes alone (the tests serve it; `grayops run --listen` is to mount `api_routes`)."""
    return Starlette(routes=api_routes(backend))
