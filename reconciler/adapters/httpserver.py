"""HTTP servers on a daemon thread, for what grayops serves itself beside its reconcile loop.

`BackgroundServer` (the sim exporter): a subclass answers GETs with `route(path) -> (status, content type, body)`.
`AsgiServer` (`grayops run --listen`: the telemetry and the web view): an ASGI app under uvicorn, for what streams
(server-sent events) or renders pages. Request logging is off in both (probes and scrapes every few seconds are
noise). `AsgiServer` gives a client `HEADERS_TIMEOUT` seconds to send a request's headers (408).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

Reply = tuple[int, str, bytes]
TEXT = "text/plain; charset=utf-8"
HEADERS_TIMEOUT = 10.0  # seconds for a request's line and headers to arrive (README "Slack", limits)


class BackgroundServer:
    """`start()` serves on host:port (0: a free port, see `port`) until `stop()`; also a context manager."""

    name = "http"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def route(self, path: str) -> Reply:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else self._port

    def start(self) -> Self:
        if self._server is not None:
            return self
        route = self.route

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, body = route(self.path.split("?", 1)[0])
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((self.host, self._port), Handler)
        server.daemon_threads = True
        self._server = server
        # A short poll so stop() returns quickly: serve_forever notices a shutdown only between polls.
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._port = server.server_address[1]  # a restart serves on the same port
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class HeadersInTime(H11Protocol):
    """uvicorn's HTTP/1.1, with a deadline on a request's line and headers: a client that connects, or starts a
    request, and then stops sending gets 408 and is closed. (uvicorn itself times out only idle keep-alive
    connections, so one that never finishes its headers would be held for ever.)"""

    headers_timeout = HEADERS_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:  # between requests: the next one's headers
            self._arm()
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before and self._deadline is not None:  # a request's headers arrived
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.headers_timeout, self._late)

    def _late(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        body = f"the request's headers did not arrive within {self.headers_timeout:g}s\n".encode()
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: " + TEXT.encode() +
                             b"\r\nconnection: close\r\ncontent-length: " + str(len(body)).encode() +
                             b"\r\n\r\n" + body)
        self.transport.close()


class AsgiServer:
    """`start()` binds host:port at once (an OSError when it cannot; 0: a free port, see `port`) and serves `app`
    on a thread until `stop()`, which returns within `grace` seconds however long a response streams."""

    name = "asgi"

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, grace: int = 3) -> None:
        self.app = app
        self.host = host
        self._port = port
        self.grace = grace
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> Self:
        if self._server is not None:
            return self
        # Bound here, in the caller's thread: a port taken is the caller's error, and the port is known at once.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listening = socket.create_server((self.host, self._port), family=family, backlog=128)
        self._port = listening.getsockname()[1]
        # No logging configuration of uvicorn's own (grayops' stays), no lifespan (nothing to start), and on a
        # thread uvicorn leaves the signals to the process.
        config = uvicorn.Config(self.app, log_config=None, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=self.grace, http=HeadersInTime)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [listening]}, name=self.name,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.should_exit = True
        if thread is not None:
            thread.join(timeout=self.grace + 5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
