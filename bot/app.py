"""The Bolt app: slash commands and the rollout message's buttons, served over HTTP or Socket Mode.

Every handler acks first (an empty ack, or the usage text for bad input, within Bolt's 3 s), then carries out
the command in a worker thread of its own and answers with an ephemeral message (`respond`) plus a public line in
the rollout's thread. A repeated trigger_id is acked and ignored (here, and after a restart by its commit).

`BotServer` serves the app on `/slack/events` (a threading stdlib WSGI server, bounded), plus `/healthz` and
`/metrics` (the bot's Prometheus counters). Before Bolt sees a request, `bot.inbound` checks its size (413,
unread), time (408), encoding, timestamp and shape (400) and Slack's signature (401: forged or older than 5
minutes); Bolt verifies the signature again. No request body is ever logged (README "Slack").
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from socketserver import ThreadingMixIn
from typing import IO, Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bot.inbound import DEFAULT_LIMITS, Limits, Refused, body_length, read_body, signed_text, slack_payload, status_line
from bot.parse import HELP, Request, Usage, parse
from bot.render import ACK_ACTION, ACTION_PREFIX
from bot.service import COMMANDS_TOTAL, Backend, Reply, SeenTriggers, Service, payload_user
from reconciler.core.spec import COMMANDS, COMMIT_COMMANDS
from reconciler.core.text import one_line, slack_escape

log = logging.getLogger("grayops.bot")

SLASH_COMMANDS = tuple(f"/{command}" for command in COMMANDS)
EVENTS_PATH = "/slack/events"


def create_app(backend: Backend, client: WebClient, signing_secret: str | None,
               socket_mode: bool = False) -> tuple[App, Service]:
    """The Bolt app; `signing_secret` is required unless `socket_mode` (where Slack's socket authenticates)."""
    if not socket_mode and not signing_secret:
        raise ValueError("SLACK_SIGNING_SECRET is required in HTTP mode: every request's signature is verified")
    app = App(client=client, signing_secret=signing_secret or "", token_verification_enabled=False,
              request_verification_enabled=not socket_mode, process_before_response=False,
              ignoring_self_events_enabled=False,  # no event listeners; it logs whole bodies at DEBUG
              logger=logging.getLogger("grayops.bot.bolt"))
    # Bolt logs the whole body of a request whose signature fails, at INFO; bot.inbound refuses those first,
    # and this keeps a body out of the log should one ever get that far.
    logging.getLogger("slack_bolt.RequestVerification").setLevel(logging.WARNING)
    app.error(_bolt_failed)
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
        channel = _object(body.get("channel")).get("id")
        ts = _object(body.get("container")).get("message_ts") or _object(body.get("message")).get("ts")
        work.submit(_carry_out, service, respond, request, payload_user(body), trigger, channel,
                    (channel, ts) if channel and ts else None)

    def on_ack(ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any],
               respond: Callable[..., Any]) -> None:
        ack()
        if seen.first(str(body.get("trigger_id", ""))):
            channel = _object(body.get("channel")).get("id")
            ts = _object(body.get("container")).get("message_ts") or _object(body.get("message")).get("ts")
            work.submit(_acknowledge, service, respond, str(action.get("value", "")), payload_user(body), channel,
                        (channel, _object(body.get("container")).get("thread_ts") or ts) if channel and ts else None)

    for slash in SLASH_COMMANDS:
        app.command(slash)(on_command)
    app.action(re.compile(rf"^{ACTION_PREFIX}({'|'.join(COMMIT_COMMANDS)})$"))(on_button)
    app.action(ACK_ACTION)(on_ack)  # README "Owners and escalation"
    return app, service


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _bolt_failed(error: Exception) -> None:
    """Bolt's error handler: one line, never the request (Bolt's default logs a traceback)."""
    log.error("a Slack request failed in Bolt: %s: %s", type(error).__name__, one_line(str(error), 200))


def _carry_out(service: Service, respond: Callable[..., Any], request: Request | None, user: Any, trigger: str,
               channel: str | None, thread: tuple[str, str] | None) -> None:
    what = f"{request.command} {request.plugin or ''}".strip() if request else "help"
    try:
        reply = service.run(request, user, trigger)
    except Exception as err:  # the person must hear back whatever happened
        log.exception("%s by %s failed", what, user.by)
        reply = Reply(f"Not done: {what} failed ({slack_escape(one_line(str(err), 300))})")
    try:
        respond(text=reply.text, response_type="ephemeral", replace_original=False)
    except Exception as err:  # Slack unreachable: the commit stands, only the answer is lost
        log.warning("could not answer %s about %s: %s", user.by, what, err)
    service.announce(reply, channel, thread)


def _acknowledge(service: Service, respond: Callable[..., Any], alert: str, user: Any, channel: str | None,
                 thread: tuple[str, str] | None) -> None:
    try:
        reply = service.acknowledge(alert, user)
    except Exception as err:  # the person must hear back whatever happened
        log.exception("ack of %s by %s failed", alert, user.by)
        reply = Reply(f"Not done: acknowledging {slack_escape(alert)} failed ({slack_escape(one_line(str(err), 300))})")
    try:
        respond(text=reply.text, response_type="ephemeral", replace_original=False)
    except Exception as err:  # Slack unreachable: the commit stands, only the answer is lost
        log.warning("could not answer %s about alert %s: %s", user.by, alert, err)
    service.announce(reply, channel, thread)


# --- HTTP -----------------------------------------------------------------------------------------------------


def slack_answer(app: App, verifier: SignatureVerifier, headers: Mapping[str, str], body: bytes,
                 query: str = "") -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) for a POST to /slack/events whose body was read within the limits: the checks of
    `bot.inbound` (400, 401), then Bolt. `headers` have lower-case names."""
    try:
        text = signed_text(body, headers, verifier)
        slack_payload(text, headers.get("content-type"))
        response = app.dispatch(BoltRequest(body=text, query=query, headers=dict(headers)))
    except Refused as refused:
        return _refusal(refused)
    except Exception as err:  # a signed payload of a shape Bolt cannot read: malformed input, not our failure
        return _refusal(Refused(400, f"Bolt cannot read the payload ({type(err).__name__})"))
    pairs = [(name, value) for name, values in response.headers.items() for value in values]
    return response.status, pairs, response.body.encode()


def _refusal(refused: Refused) -> tuple[int, list[tuple[str, str]], bytes]:
    log.info("refused a request to %s: %s %s", EVENTS_PATH, refused.status, refused)
    return refused.status, [("Content-Type", "text/plain; charset=utf-8")], f"{refused}\n".encode()


def wsgi_app(app: App, signing_secret: str, limits: Limits = DEFAULT_LIMITS) -> Callable[..., Iterable[bytes]]:
    verifier = SignatureVerifier(signing_secret)

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if method == "GET" and path == "/healthz":
            status, headers, body = 200, [("Content-Type", "text/plain")], b"ok\n"
        elif method == "GET" and path == "/metrics":
            status, headers, body = 200, [("Content-Type", CONTENT_TYPE_LATEST)], generate_latest()
        elif method == "POST" and path == EVENTS_PATH:
            status, headers, body = _events(app, verifier, limits, environ)
        else:
            status, headers, body = 404, [("Content-Type", "text/plain")], b"not found\n"
        start_response(status_line(status), headers)
        return [body]

    return serve


def _events(app: App, verifier: SignatureVerifier, limits: Limits,
            environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    try:
        length = body_length(environ.get("CONTENT_LENGTH"), limits.max_body)  # before a byte of the body is read
        stream = environ["wsgi.input"]
        body = read_body(getattr(stream, "read1", stream.read), length, limits.read_timeout)
    except Refused as refused:
        return _refusal(refused)
    return slack_answer(app, verifier, _headers(environ), body, environ.get("QUERY_STRING", ""))


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items()
               if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if key in environ:
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most `limits.max_connections` at once (the rest wait in a backlog of
    `limits.backlog`, not refused), and no traceback on stderr for a connection that failed."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], limits: Limits) -> None:
        self.limits = limits
        self.request_queue_size = limits.backlog  # listen() is called in the constructor
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self._closing = threading.Event()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        while not self._slots.acquire(timeout=0.2):
            if self._closing.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        log.debug("connection from %s ended: %s", client_address[0], type(error).__name__)

    def stop_accepting(self) -> None:
        self._closing.set()


class _ServerHandler(ServerHandler):
    os_environ: dict[str, str] = {}  # noqa: RUF012  (the process environment, secrets included, stays out)


class _Handler(WSGIRequestHandler):
    def setup(self) -> None:
        self.request.settimeout(cast(_Server, self.server).limits.read_timeout)  # every read, headers included
        super().setup()

    def handle(self) -> None:
        """One request, as WSGIRequestHandler.handle, without the process environment in the WSGI environ, and
        408 for a client that stops sending its request line or headers."""
        self.command, self.requestline, self.request_version = "", "", "HTTP/1.0"  # until the line is read
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414)
                return
            if not self.parse_request():
                return
        except TimeoutError:
            self.send_error(408)
            return
        app = cast(_Server, self.server).get_app()
        assert app is not None
        handler = _ServerHandler(self.rfile, cast(IO[bytes], self.wfile), self.get_stderr(), self.get_environ(),
                                 multithread=False)
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(app)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class BotServer:
    """The app on http://host:port/slack/events, in a background thread."""

    def __init__(self, app: App, signing_secret: str, host: str = "127.0.0.1", port: int = 3000,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self._httpd = _Server((host, port), limits)
        self._httpd.set_app(wsgi_app(app, signing_secret, limits))
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
        self._httpd.stop_accepting()
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
