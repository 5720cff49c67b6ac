"""The Bolt app: slash commands and the rollout message's buttons, served over HTTP or Socket Mode.

Every handler acks first (an empty ack, or the usage text for bad input, within Bolt's 3 s), then carries out
the command in a worker thread of its own and answers with an ephemeral message (`respond`) plus a public line in
the rollout's thread. A repeated trigger_id is acked and ignored. In HTTP mode Slack's request signature is
always verified (Bolt's RequestVerification: forged or older than 5 minutes -> 401, nothing done).

`BotServer` serves the app on `/slack/events` (Bolt's WSGI adapter in a threading stdlib server), plus
`/healthz` and `/metrics` (the bot's Prometheus counters).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.parse import HELP, Request, Usage, parse
from bot.render import ACTION_PREFIX
from bot.service import COMMANDS_TOTAL, Backend, Reply, SeenTriggers, Service, payload_user

log = logging.getLogger("grayops.bot")

SLASH_COMMANDS = ("/pause", "/resume", "/rollback", "/approve", "/rollout", "/retry")
EVENTS_PATH = "/slack/events"


def create_app(backend: Backend, client: WebClient, signing_secret: str | None,
               socket_mode: bool = False) -> tuple[App, Service]:
    """The Bolt app; `signing_secret` is required unless `socket_mode` (where Slack's socket authenticates)."""
    if not socket_mode and not signing_secret:
        raise ValueError("SLACK_SIGNING_SECRET is required in HTTP mode: every request's signature is verified")
    app = App(client=client, signing_secret=signing_secret or "", token_verification_enabled=False,
              request_verification_enabled=not socket_mode, process_before_response=False,
              logger=logging.getLogger("grayops.bot.bolt"))
    service = Service(backend, client)
    seen = SeenTriggers()
    # The slow part (fetch, commit, push) runs here, not in Bolt's listener threads: a burst of commands
    # waiting on the clone's lock must not delay the acks of the next ones.
    work = ThreadPoolExecutor(max_workers=4, thread_name_prefix="grayops-bot-work")

    def on_command(ack: Callable[..., None], command: dict[str, Any], respond: Callable[..., Any]) -> None:
        if not seen.first(str(command.get("trigger_id", ""))):
            ack()
            COMMANDS_TOTAL.labels(str(command.get("command", "")).lstrip("/"), "duplicate").inc()
            return
        try:
            request = parse(str(command.get("command", "")), str(command.get("text", "")))
        except Usage as err:
            ack(text=str(err))
            return
        if request is None:
            ack(text=HELP)
            return
        ack()
        work.submit(_carry_out, service, respond, request, payload_user(command), str(command.get("trigger_id", "")),
                    command.get("channel_id"), None)

    def on_button(ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any],
                  respond: Callable[..., Any]) -> None:
        ack()
        trigger = str(body.get("trigger_id", ""))
        if not seen.first(trigger):
            return
        command = str(action.get("action_id", "")).removeprefix(ACTION_PREFIX)
        try:
            request = parse(f"/{command}", str(action.get("value", "")))
        except Usage as err:
            respond(text=str(err), response_type="ephemeral", replace_original=False)
            return
        channel = (body.get("channel") or {}).get("id")
        ts = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts")
        work.submit(_carry_out, service, respond, request, payload_user(body), trigger, channel,
                    (channel, ts) if channel and ts else None)

    for slash in SLASH_COMMANDS:
        app.command(slash)(on_command)
    app.action(re.compile(rf"^{ACTION_PREFIX}(pause|resume|rollback|approve|retry)$"))(on_button)
    return app, service


def _carry_out(service: Service, respond: Callable[..., Any], request: Request | None, user: Any, trigger: str,
               channel: str | None, thread: tuple[str, str] | None) -> None:
    what = f"{request.command} {request.plugin or ''}".strip() if request else "help"
    try:
        reply = service.run(request, user, trigger)
    except Exception as err:  # the person must hear back whatever happened
        log.exception("%s by %s failed", what, user.by)
        reply = Reply(f"Not done: {what} failed ({err})")
    try:
        respond(text=reply.text, response_type="ephemeral", replace_original=False)
    except Exception as err:  # Slack unreachable: the commit stands, only the answer is lost
        log.warning("could not answer %s about %s: %s", user.by, what, err)
    service.announce(reply, channel, thread)


# --- HTTP -----------------------------------------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def wsgi_app(app: App) -> Callable[..., Iterable[bytes]]:
    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if method == "GET" and path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if method == "GET" and path == "/metrics":
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [generate_latest()]
        return slack(environ, start_response)

    return serve


class BotServer:
    """The app on http://host:port/slack/events, in a background thread."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 3000) -> None:
        self._httpd = make_server(host, port, wsgi_app(app), server_class=_Server, handler_class=_Quiet)
        self.host, self.port = host, self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="grayops-bot-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{EVENTS_PATH}"

    def start(self) -> BotServer:
        self._thread.start()
        log.info("Slack bot listening on %s", self.url)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def start_socket_mode(app: App, app_token: str) -> Any:
    """Connect to Slack over Socket Mode (SLACK_APP_TOKEN) without blocking; returns the handler to close."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(app, app_token)
    handler.connect()  # type: ignore[no-untyped-call]
    log.info("Slack bot connected in Socket Mode")
    return handler
