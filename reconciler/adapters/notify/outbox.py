"""A bounded queue drained by one background thread, with retries: how notifiers never block the reconciler.

`put` never waits: when the queue is full the oldest item is dropped (and counted). The sender calls
`deliver(item)` in order; `RetryAfter` (a 429) waits the time asked, any other exception is a transient
fault retried with backoff (`min_backoff`, doubling up to `max_backoff`) up to `attempts` tries in all (None: until
closed), `Drop` gives the item up. `counted("delivered" | "dropped")` hears of each item's end, for a metric.
`close` refuses new items and waits (bounded) until the queued ones are delivered: a settings change replaces
the notifiers, and their last messages must still go out, in order, before the new ones.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class RetryAfter(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds:g}s")
        self.seconds = seconds


class Drop(Exception):
    """The item can never be delivered (e.g. an unknown channel): give it up."""


class Outbox(Generic[T]):
    def __init__(self, name: str, deliver: Callable[[T], None], limit: int = 1000, min_backoff: float = 1.0,
                 max_backoff: float = 30.0, max_wait: float = 120.0, attempts: int | None = None,
                 counted: Callable[[str], None] | None = None) -> None:
        self.name = name
        self._deliver = deliver
        self._items: collections.deque[T] = collections.deque()
        self._limit = limit
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._max_wait = max_wait
        self._attempts = attempts
        self._counted = counted
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False  # no more puts; the queue is still sent
        self._abandoned = False  # close() waited long enough: stop sending
        self.dropped = 0
        self.delivered = 0
        self._thread = threading.Thread(target=self._run, name=f"grayops-{name}", daemon=True)
        self._thread.start()

    def put(self, item: T) -> bool:
        """Queue `item`; False (and a warning) once the outbox is closed."""
        with self._cond:
            if self._closed:
                log.warning("%s: closed, not queued: %.200r", self.name, item)
                return False
            if len(self._items) >= self._limit:
                self._items.popleft()
                self._dropped(1)
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning("%s: queue full (%d), dropped the oldest item (%d so far)", self.name, self._limit,
                                self.dropped)
            self._items.append(item)
            self._cond.notify_all()
            return True

    def pending(self) -> int:
        with self._cond:
            return len(self._items) + (1 if self._busy else 0)

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued was delivered or dropped (for tests and a clean exit)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop taking work and send what is queued, retrying as usual, for up to `timeout` seconds; then give
        the rest up (counted as dropped). True when everything was delivered (or dropped as undeliverable)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            drained = self._cond.wait_for(lambda: not self._items and not self._busy, timeout)
            if not drained:
                log.warning("%s: closed after %gs with %d undelivered item(s) dropped", self.name, timeout,
                            len(self._items) + (1 if self._busy else 0))
                self._dropped(len(self._items))  # the one in flight is counted by its sender
                self._items.clear()
                self._abandoned = True
                self._cond.notify_all()
        self._thread.join(timeout=1.0)
        return drained

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items or self._closed)
                if not self._items:
                    return
                item = self._items.popleft()
                self._busy = True
            try:
                self._send(item)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _dropped(self, count: int) -> None:
        self.dropped += count
        if self._counted is not None:
            for _ in range(count):
                self._counted("dropped")

    def _send(self, item: T) -> None:
        backoff = self._min_backoff
        tries = 0
        while not self._abandoned:
            tries += 1
            try:
                self._deliver(item)
                self.delivered += 1
                if self._counted is not None:
                    self._counted("delivered")
                return
            except RetryAfter as err:
                wait = min(max(err.seconds, 0.0), self._max_wait)
                log.warning("%s: rate limited, retrying in %gs", self.name, wait)
            except Drop as err:
                log.error("%s: %s; given up", self.name, err)
                self._dropped(1)
                return
            except Exception as err:  # transient: the service is down or failing
                if self._attempts is not None and tries >= self._attempts:
                    log.error("%s: delivery failed %d time(s), last: %s; dropped", self.name, tries, err)
                    self._dropped(1)
                    return
                wait = backoff
                backoff = min(backoff * 2, self._max_backoff)
                log.warning("%s: delivery failed (%s), retrying in %gs", self.name, err, wait)
            with self._cond:
                self._cond.wait_for(lambda: self._abandoned, wait)
        self._dropped(1)  # abandoned by close()
