"""Who calls: a bearer token of access.yaml, known by its SHA-256 digest, and how often it may call.

The presented token is hashed and compared with every listed digest in constant time (no early exit, so the
time says nothing about which digest came close). A token never reaches a log: only its name does.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reconciler.api.backend import Rate
from reconciler.core.spec import ApiScope, ApiToken


@dataclass(frozen=True)
class Caller:
    token: ApiToken

    @property
    def by(self) -> str:
        """The Requested-By of its commits: `ops-bot (api token release-bot)` (README "HTTP API")."""
        return f"{self.token.person} (api token {self.token.name})"

    def may(self, scope: ApiScope) -> bool:
        return scope in self.token.scopes


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, token = (header or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def find_token(tokens: Sequence[ApiToken], presented: str) -> ApiToken | None:
    """The token whose digest is the presented token's, comparing with every one in constant time."""
    digest = hashlib.sha256(presented.encode("utf-8")).hexdigest()
    found = None
    for token in tokens:
        if hmac.compare_digest(token.sha256, digest):
            found = token
    return found


class RateLimiter:
    """A token bucket per API token name: `burst` requests at once, refilled at `per_second`."""

    def __init__(self, rate: Rate, monotonic: Callable[[], float]) -> None:
        self._rate = rate
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens left, when counted)
        self._lock = threading.Lock()

    def allow(self, name: str) -> bool:
        now = self._monotonic()
        with self._lock:
            left, then = self._buckets.get(name, (float(self._rate.burst), now))
            left = min(float(self._rate.burst), left + (now - then) * self._rate.per_second)
            allowed = left >= 1.0
            self._buckets[name] = (left - 1.0 if allowed else left, now)
            return allowed
