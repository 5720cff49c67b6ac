"""Git push webhooks: which forge sent one, whether it holds the secret, and whether it is a push to watch.

- Gitea / Forgejo: `X-Gitea-Signature` (Forgejo also `X-Forgejo-Signature`), the hex HMAC-SHA256 of the body.
  Checked first: Gitea also sends GitHub's event and delivery headers, for compatibility.
- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
- GitLab: `X-Gitlab-Token`, the secret itself.

Every comparison is constant-time. Deliveries are told apart by `X-Gitea-Delivery`, `X-GitHub-Delivery` or
`X-Gitlab-Event-UUID`; a repeated one is answered and not acted on again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Forge:
    name: str
    event: str  # the header naming the event
    delivery: str  # the header naming the delivery
    push: str  # the event header's value for a push


GITEA = Forge("gitea", "x-gitea-event", "x-gitea-delivery", "push")
GITHUB = Forge("github", "x-github-event", "x-github-delivery", "push")
GITLAB = Forge("gitlab", "x-gitlab-event", "x-gitlab-event-uuid", "Push Hook")


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verified_forge(headers: Mapping[str, str], body: bytes, secret: str) -> Forge | None:
    """The forge whose signature (or token) in `headers` holds for `body` and `secret`; None when none does.
    `headers` has lower-case names."""
    for name in ("x-forgejo-signature", "x-gitea-signature"):
        if name in headers:  # the first one present is the one checked: a bad one is not rescued by another
            return GITEA if hmac.compare_digest(headers[name].strip().lower(), _hmac_hex(secret, body)) else None
    if "x-hub-signature-256" in headers:
        expected = "sha256=" + _hmac_hex(secret, body)
        return GITHUB if hmac.compare_digest(headers["x-hub-signature-256"].strip().lower(), expected) else None
    if "x-gitlab-token" in headers:
        token = headers["x-gitlab-token"].encode("utf-8")
        return GITLAB if hmac.compare_digest(token, secret.encode("utf-8")) else None
    return None


@dataclass(frozen=True)
class Push:
    """What a verified delivery asks for."""

    delivery: str | None
    is_push: bool
    ref: str | None  # `refs/heads/main` for a push


def read_push(forge: Forge, headers: Mapping[str, str], body: bytes) -> Push:
    """The delivery id, and for a push event its ref; raises ValueError when a push's body is not its JSON."""
    delivery = headers.get(forge.delivery) or None
    if headers.get(forge.event) != forge.push:
        return Push(delivery, False, None)
    payload = json.loads(body)
    ref = payload.get("ref") if isinstance(payload, dict) else None
    if not isinstance(ref, str):
        raise ValueError("a push event without a ref")
    return Push(delivery, True, ref)


class SeenDeliveries:
    """Delivery ids already acted on, the newest `limit` of them."""

    def __init__(self, limit: int = 10000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def first(self, delivery: str) -> bool:
        """True the first time `delivery` is seen (and remember it)."""
        with self._lock:
            if delivery in self._seen:
                return False
            self._seen[delivery] = None
            while len(self._seen) > self._limit:
                self._seen.popitem(last=False)
            return True
