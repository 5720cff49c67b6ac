"""Server-sent events: each page's stream of "the record changed" signals (`/events`).

A source tells the `Broadcaster` of each new record from whatever thread it runs in; each open stream is woken
on its own event loop and sends the newest revision and the plugins whose state changed. A stream sends only the
newest change (a slow reader skips, never queues), a comment every `keepalive` seconds so proxies keep it open,
and ends after `lifetime` seconds (the browser reconnects at once, `retry` ms later), so a stopping server never
waits long on one. The page's script (static/live.js) then fetches itself again and swaps the parts that are live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from reconciler.web.record import Record


@dataclass(eq=False)  # hashed by identity: one per open page
class _Stream:
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    plugins: set[str] = field(default_factory=set)
    revision: str = ""


class Broadcaster:
    def __init__(self, keepalive: float = 15.0, lifetime: float = 300.0, retry_ms: int = 1000,
                 current: Record | None = None) -> None:
        self.keepalive = keepalive
        self.lifetime = lifetime
        self.retry_ms = retry_ms
        self._lock = threading.Lock()
        self._streams: set[_Stream] = set()  # guarded by _lock
        self._last: Record | None = current  # what changes are told against
        self._closed = False

    def publish(self, record: Record) -> None:
        """Called by the source, from any thread, with each new record."""
        with self._lock:
            changed = _changed_plugins(self._last, record)
            self._last = record
            streams = list(self._streams)
        for stream in streams:
            try:
                stream.loop.call_soon_threadsafe(self._wake, stream, record.revision, changed)
            except RuntimeError:  # its loop has closed: the stream is gone
                with self._lock:
                    self._streams.discard(stream)

    @staticmethod
    def _wake(stream: _Stream, revision: str, changed: set[str]) -> None:
        stream.revision = revision
        stream.plugins |= changed
        stream.wake.set()

    def close(self) -> None:
        """End every stream (a server stopping)."""
        with self._lock:
            self._closed = True
            streams = list(self._streams)
        for stream in streams:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nothing to end
                stream.loop.call_soon_threadsafe(stream.wake.set)

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._streams)

    async def stream(self, revision: str) -> AsyncIterator[str]:
        """The text/event-stream of one page: a `hello` with the current revision, then a `changed` per change."""
        stream = _Stream(asyncio.get_running_loop(), revision=revision)
        with self._lock:
            self._streams.add(stream)
        try:
            yield f"retry: {self.retry_ms}\nevent: hello\ndata: {json.dumps({'revision': revision})}\n\n"
            ends = time.monotonic() + self.lifetime
            while not self._closed and time.monotonic() < ends:
                try:
                    await asyncio.wait_for(stream.wake.wait(), timeout=min(self.keepalive, ends - time.monotonic()))
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                stream.wake.clear()
                if self._closed:
                    break
                data = {"revision": stream.revision, "plugins": sorted(stream.plugins)}
                stream.plugins.clear()
                yield f"event: changed\ndata: {json.dumps(data)}\n\n"
        finally:
            with self._lock:
                self._streams.discard(stream)


def _changed_plugins(old: Record | None, new: Record) -> set[str]:
    """The plugins whose state, status error, reports or timeline differ between two records (all, at first)."""
    if old is None:
        return set(new.plugins())
    changed = set()
    for plugin in set(old.plugins()) | set(new.plugins()):
        if (old.states.get(plugin) is not new.states.get(plugin)
                or old.unreadable.get(plugin) != new.unreadable.get(plugin)
                or old.finished.get(plugin) != new.finished.get(plugin)
                or old.timelines.get(plugin) != new.timelines.get(plugin)):
            changed.add(plugin)
    return changed
