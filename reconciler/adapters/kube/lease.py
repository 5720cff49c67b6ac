"""Leader election on a coordination.k8s.io Lease, so two replicas of grayops can run and only one acts.

The candidate takes the Lease when it is free or expired, renews it every `renew` seconds, and counts itself
leader only while its last successful renewal is younger than the lease's duration minus a margin. A renewal
that fails, a Lease taken by another holder, or a stale renewal makes `is_leader()` False at once; the caller
checks it before every tick. Writes use the Lease's resourceVersion, so two candidates never both win (409).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from reconciler.adapters.kube.client import ClusterApi, call, call_json, describe

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class LeaderElector:
    def __init__(self, api: ClusterApi, namespace: str, name: str, identity: str, duration: float = 15.0,
                 renew: float | None = None) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.duration = duration
        self.renew = renew if renew is not None else max(0.2, duration / 3)
        self._renewed_at: float | None = None  # monotonic time of the last successful acquire or renewal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="lease")
        self.last_error: str | None = None
        self._was_leader = False

    @property
    def where(self) -> str:
        return f"lease {self.namespace}/{self.name}"

    def start(self) -> LeaderElector:
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if release and self.is_leader():
            self._release()
        self._renewed_at = None

    def is_leader(self) -> bool:
        at = self._renewed_at
        return at is not None and time.monotonic() - at < self.duration * 0.8

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.try_acquire_or_renew()
            leader = self.is_leader()
            if leader != self._was_leader:
                log.warning("%s: %s", self.where, "became leader" if leader else
                            f"lost leadership, stopped acting ({self.last_error or 'another holder'})")
                self._was_leader = leader
            self._stop.wait(self.renew)

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this candidate holds the Lease now."""
        started = time.monotonic()
        coordination = self.api.coordination
        try:
            try:
                lease: Obj | None = call_json(coordination.read_namespaced_lease, self.name, self.namespace,
                                              retries=1)
            except ApiException as err:
                if err.status != 404:
                    raise
                lease = None
            if lease is None:
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": self._spec(transitions=0, acquired=_now_text())}
                call(coordination.create_namespaced_lease, self.namespace, body, _preload_content=False, retries=1)
            else:
                spec = lease.get("spec") or {}
                holder = spec.get("holderIdentity")
                renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
                seconds = spec.get("leaseDurationSeconds") or self.duration
                expired = renewed is None or datetime.now(UTC) > renewed + timedelta(seconds=seconds)
                if holder and holder != self.identity and not expired:
                    self._renewed_at = None
                    self.last_error = f"held by {holder}"
                    return False
                mine = holder == self.identity
                new_spec = self._spec(
                    transitions=int(spec.get("leaseTransitions") or 0) + (0 if mine else 1),
                    acquired=spec.get("acquireTime") if mine else _now_text())
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": lease["metadata"],
                        "spec": new_spec}
                call(coordination.replace_namespaced_lease, self.name, self.namespace, body, _preload_content=False,
                     retries=1)
        except Exception as err:  # 409 (someone else wrote first), unreachable, forbidden: not leader now
            self._renewed_at = None
            self.last_error = f"{self.where}: {describe(err)}"
            return False
        self._renewed_at = started
        self.last_error = None
        return True

    def _spec(self, transitions: int, acquired: str | None) -> Obj:
        return {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, round(self.duration)),
                "acquireTime": acquired, "renewTime": _now_text(), "leaseTransitions": transitions}

    def _release(self) -> None:
        """Hand the Lease over at once on a clean stop, so the other replica need not wait for it to expire."""
        try:
            lease = call_json(self.api.coordination.read_namespaced_lease, self.name, self.namespace, retries=0)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = None
                call(self.api.coordination.replace_namespaced_lease, self.name, self.namespace, lease,
                     _preload_content=False, retries=0)
        except Exception as err:
            log.info("%s: not released: %s", self.where, describe(err))
