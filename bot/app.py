"""The Bolt app: slash commands and the rollout message's buttons, served over HTTP or Socket Mode.

Every handler acks first (an empty ack, or the usage text for bad input, within Bolt's 3 s), then carries out
the command in a worker thread of its own and answers with an ephemeral message (`respond`) plus a public line in
the rollout's thread. A repeated trigger_id is acked and ignored (here, and after a restart by its commit).

`SlackEvents` is `/slack/events` for the one ASGI server (`grayops run --listen`, `grayops serve`), through Bolt's
ASGI adapter. Before Bolt sees a request, `bot.inbound` checks its size (413, unread), time (408), encoding,
timestamp and shape (400) and Slack's signature (401: forged or older than 5 minutes); Bolt verifies the
signature again. No request body is ever logged (README "Slack").
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from anyio import CapacityLimiter, to_thread
from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.adapter.asgi import SlackRequestHandler
from slack_bolt.adapter.asgi.http_request import AsgiHttpRequest
from slack_bolt.request.internals import build_context
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from starlette.routing import Route

from bot.inbound import DEFAULT_LIMITS, Limits, Refused, body_length, signed_text, slack_payload
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
    # The response_url client logs each answer's body at DEBUG, and an `/approve token` answer holds a token.
    logging.getLogger("slack_sdk.webhook.client").setLevel(logging.INFO)
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
    _answer(service, respond, what, user, channel, thread, lambda: service.run(request, user, trigger))


def _acknowledge(service: Service, respond: Callable[..., Any], alert: str, user: Any, channel: str | None,
                 thread: tuple[str, str] | None) -> None:
    _answer(service, respond, f"acknowledging {alert}", user, channel, thread,
            lambda: service.acknowledge(alert, user))


def _answer(service: Service, respond: Callable[..., Any], what: str, user: Any, channel: str | None,
            thread: tuple[str, str] | None, do: Callable[[], Reply]) -> None:
    """Do it, then answer the person (ephemeral) and announce it where the rollout is shown."""
    try:
        reply = do()
    except Exception as err:  # the person must hear back whatever happened
        log.exception("%s by %s failed", what, user.by)
        reply = Reply(f"Not done: {slack_escape(what)} failed ({slack_escape(one_line(str(err), 300))})")
    try:
        respond(text=reply.text, response_type="ephemeral", replace_original=False)
    except Exception as err:  # Slack unreachable: the commit stands, only the answer is lost
        log.warning("could not answer %s about %s: %s", user.by, what, err)
    service.announce(reply, channel, thread)


# --- HTTP -----------------------------------------------------------------------------------------------------


def slack_answer(app: App, verifier: SignatureVerifier, headers: Mapping[str, str], body: bytes,
                 query: str = "") -> BoltResponse:
    """The answer to a POST to /slack/events whose body was read within the limits: the checks of `bot.inbound`
    (400, 401), then Bolt. `headers` have lower-case names. Blocks until the listener acks: call it on a thread."""
    try:
        text = signed_text(body, headers, verifier)
        payload = slack_payload(text, headers.get("content-type"))
        request = BoltRequest(body=text, query=query, headers=dict(headers))
        if request.body != payload:
            # Bolt reads a form body with the word "payload" anywhere in it (a command's text) as a button's
            # `payload=` field, and finds no request in it: it gets the payload as Slack sent it.
            request.body = payload
            request.context = build_context(BoltContext(), payload)
        return app.dispatch(request)
    except Refused as refused:
        return _refusal(refused)
    except Exception as err:  # a signed payload of a shape Bolt cannot read: malformed input, not our failure
        return _refusal(Refused(400, f"Bolt cannot read the payload ({type(err).__name__})"))


def _refusal(refused: Refused) -> BoltResponse:
    log.info("refused a request to %s: %s %s", EVENTS_PATH, refused.status, refused)
    # The connection is closed after a refusal: what the client still sends of its body is never read.
    return BoltResponse(status=refused.status, body=f"{refused}\n",
                        headers={"content-type": "text/plain; charset=utf-8", "connection": "close"})


class SlackEvents(SlackRequestHandler):
    """/slack/events for the one ASGI server, through Bolt's ASGI adapter. The body is read within the limits of
    `bot.inbound` (411, 413 by its Content-Length before a byte is read, 408), then the sync Bolt app dispatches on
    a thread of its own (at most `limits.max_connections` at once; the rest wait): the server's event loop never
    waits on Bolt, and Bolt's 3 s ack never waits on the API's git work, which runs in other threads."""

    def __init__(self, app: App, signing_secret: str, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(app, EVENTS_PATH)
        self.verifier = SignatureVerifier(signing_secret)
        self.limits = limits
        self.threads = CapacityLimiter(limits.max_connections)

    async def dispatch(self, request: AsgiHttpRequest) -> BoltResponse:
        headers = {name.lower(): str(value) for name, value in request.get_headers().items()}
        try:
            length = body_length(headers.get("content-length"), self.limits.max_body)
            body = await _receive(request, length, self.limits.read_timeout)
        except Refused as refused:
            return _refusal(refused)
        answer = partial(slack_answer, self.app, self.verifier, headers, body, request.query_string)
        response: BoltResponse = await to_thread.run_sync(answer, limiter=self.threads)
        return response

    def route(self) -> Route:
        """The route to mount in the one server's Starlette app."""
        return Route(EVENTS_PATH, self, methods=["POST"])


async def _receive(request: AsgiHttpRequest, length: int, timeout: float) -> bytes:
    """Exactly `length` bytes of the body, within `timeout` seconds in all (408)."""
    chunks = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await request.receive()
                if message["type"] != "http.request":  # the client went away
                    raise Refused(400, "the client disconnected before its body arrived")
                chunks += message.get("body", b"")
                if len(chunks) > length:
                    raise Refused(400, "the body is longer than its Content-Length")
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise Refused(408, f"the body did not arrive within {timeout:g}s") from None
    if len(chunks) < length:
        raise Refused(400, "the body is shorter than its Content-Length")
    return bytes(chunks)


def start_socket_mode(app: App, app_token: str) -> Any:
    """Connect to Slack over Socket Mode (SLACK_APP_TOKEN) without blocking; returns the handler to close."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(app, app_token)
    handler.connect()  # type: ignore[no-untyped-call]
    log.info("Slack bot connected in Socket Mode")
    return handler
