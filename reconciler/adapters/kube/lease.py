"""Leader election on a coordination.k8s.io Lease, so two replicas of grayops can run and only one acts; and
sharding on one Lease per shard (`ShardLeases`), so several replicas act, each for the plugins of its shards.

The candidate takes the Lease when it is free or expired, renews it every `renew` seconds, and counts itself
leader only while its last successful renewal is younger than the lease's duration minus a margin. A renewal
that fails, a Lease taken by another holder, or a stale renewal makes `is_leader()` False at once; the caller
checks it before every tick. Writes use the Lease's resourceVersion, so two candidates never both win (409).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from reconciler.adapters.kube.client import ClusterApi, call, call_json, describe
from reconciler.core.shards import claims, shard_of

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


# --- sharding ------------------------------------------------------------------------------------------------

SHARDS_LABEL = "grayops.dev/shards-of"  # on every Lease of one sharded group: the group's --lease-name
ROLE_LABEL = "grayops.dev/lease-role"  # "shard" (`<name>-<i>`) or "replica" (`<name>-replica-<identity>`)
COUNT_LABEL = "grayops.dev/shards"  # on a shard's Lease: the --shards of the replica that holds it
FENCE = 0.8  # a shard counts as held while its last renewal is younger than this share of the lease duration
FORGOTTEN_AFTER = 10  # lease durations after which a dead replica's presence Lease is deleted


class ShardLeases:
    """Sharding (README "Sharding"): one Lease per shard, `<name>-<i>`, taken by live replicas, at most their fair
    share each (ceil(shards / live replicas)); and one presence Lease per replica, `<name>-replica-<identity>`, so
    a replica that holds no shard yet is seen and the others hand shards over to it. One round every `renew`
    seconds: one list of the group's Leases, one write for the presence, one per shard kept or taken.

    Fencing: a shard counts as held only while its last successful renewal, timed on this process's monotonic
    clock from before the request was sent, is younger than FENCE x the lease duration, and the reconciler checks
    `holds` right before each commit for a plugin of the shard. Another replica takes the shard only once the
    Lease's renewTime (written after that moment) plus its duration has passed on its own clock, so our last
    commit precedes its first by at least (1 - FENCE) x duration, less the skew between the two clocks. A renewal
    that fails or a Lease seen with another holder drops the shard at once, before the next commit. A commit made
    in time but pushed late meets the new holder's commits on the same status file: git's push is a compare-and-
    swap (no force) and the conflict is kept on a branch, never in the record.
    """

    def __init__(self, api: ClusterApi, namespace: str, name: str, identity: str, shards: int,
                 duration: float = 15.0, renew: float | None = None) -> None:
        self.api, self.namespace, self.name, self.identity, self.shards = api, namespace, name, identity, shards
        self.duration = duration
        self.renew = renew if renew is not None else max(0.2, duration / 3)
        self._on_change: Callable[[], None] = lambda: None
        self._held: dict[int, float] = {}  # shard -> monotonic time its last successful acquire/renewal started
        self._handed_over: set[int] = set()  # stopped acting for these last round; released on the API this one
        self._shard_of: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="shard-leases")
        self.last_error: str | None = None

    # --- what the reconciler asks ------------------------------------------------------------------------------

    def shard_of(self, plugin: str) -> int:
        found = self._shard_of.get(plugin)
        if found is None:
            found = self._shard_of[plugin] = shard_of(plugin, self.shards)
        return found

    def holds(self, shard: int) -> bool:
        """The fence: held right now, by the age of its last renewal on the monotonic clock."""
        at = self._held.get(shard)
        return at is not None and time.monotonic() - at < self.duration * FENCE

    def snapshot(self) -> frozenset[int]:
        return frozenset(shard for shard in list(self._held) if self.holds(shard))

    def lease_name(self, shard: int) -> str:
        return f"{self.name}-{shard}"

    @property
    def presence_name(self) -> str:
        readable = re.sub(r"[^a-z0-9.-]+", "-", self.identity.lower()).strip("-.")
        return f"{self.name}-replica-{readable}"[:253]

    # --- the loop ----------------------------------------------------------------------------------------------

    def start(self, on_change: Callable[[], None] | None = None) -> ShardLeases:
        """Renew in a thread of its own; `on_change` is called when the shards held change (e.g. to tick now)."""
        self._on_change = on_change or self._on_change
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        held, self._held = sorted(self._held), {}
        if release:  # hand everything over at once on a clean stop: nobody waits for an expiry
            for shard in held:
                self._release(self.lease_name(shard))
            self._delete(self.presence_name)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.renew)

    def step(self) -> None:
        """One round: look at the group's Leases, renew the presence, hand over, keep and take shards."""
        before = self.snapshot()
        started = time.monotonic()
        try:
            leases = call_json(self.api.coordination.list_namespaced_lease, self.namespace,
                               label_selector=f"{SHARDS_LABEL}={self.name}", retries=1).get("items") or []
        except Exception as err:  # cannot see the Leases, so cannot renew them: stop acting now
            self._lose(list(self._held), f"{self.namespace}: {describe(err)}")
            self._changed(before)
            return
        shards, holders, live, presence = self._view(leases)
        self._write(presence, self.presence_name, "replica")
        other = self._other_count(leases)
        if other is not None:  # the same plugin would be in different shards here and there: act for none
            if self.last_error != other:
                log.error("lease %s/%s: %s; acting for no shard until it is gone", self.namespace, self.name, other)
            self.last_error = other
            self._lose(list(self._held), other)
            self._changed(before)
            return
        for shard in list(self._held):
            if holders.get(shard) != self.identity:
                self._lose([shard], f"held by {holders.get(shard) or 'nobody (expired)'}")
        plan = claims(self.shards, holders, self.identity, live)
        for shard in plan.release:
            if shard in self._handed_over:  # we stopped acting for it a round ago: give the Lease back
                self._release(self.lease_name(shard))
            self._held.pop(shard, None)
        self._handed_over = set(plan.release)
        for shard in (*plan.keep, *plan.take):
            if self._write(shards.get(shard), self.lease_name(shard), "shard"):
                self._held[shard] = started
            else:
                self._lose([shard], self.last_error or "not renewed")
        self._changed(before)

    def _view(self, leases: list[Obj]) -> tuple[dict[int, Obj], dict[int, str | None], set[str], Obj | None]:
        """Shard -> its Lease, shard -> its live holder, the live replicas, and our presence Lease."""
        now = datetime.now(UTC)
        shards: dict[int, Obj] = {}
        holders: dict[int, str | None] = {}
        live: set[str] = set()
        presence = None
        for lease in leases:
            meta, spec = lease.get("metadata") or {}, lease.get("spec") or {}
            holder, age = spec.get("holderIdentity"), _age(spec, now)
            seconds = float(spec.get("leaseDurationSeconds") or self.duration)
            alive = bool(holder) and age is not None and age <= seconds
            name = str(meta.get("name"))
            if (meta.get("labels") or {}).get(ROLE_LABEL) == "replica":
                if name == self.presence_name:
                    presence = lease
                elif alive:
                    live.add(str(holder))
                elif age is None or age > FORGOTTEN_AFTER * seconds:
                    self._delete(name)  # a replica gone for good: its presence would pile up
                continue
            shard = _shard_index(name, self.name)
            if shard is None or shard >= self.shards:
                continue
            shards[shard] = lease
            holders[shard] = str(holder) if alive else None
            if alive:
                live.add(str(holder))
        return shards, holders, live, presence

    def _other_count(self, leases: list[Obj]) -> str | None:
        """A live shard Lease held by a replica started with another --shards, if any, said in a line."""
        now = datetime.now(UTC)
        for lease in leases:
            meta, spec = lease.get("metadata") or {}, lease.get("spec") or {}
            labels = meta.get("labels") or {}
            count, age = labels.get(COUNT_LABEL), _age(spec, now)
            alive = age is not None and age <= float(spec.get("leaseDurationSeconds") or self.duration)
            if labels.get(ROLE_LABEL) == "shard" and count not in (None, str(self.shards)) and alive and \
                    spec.get("holderIdentity"):
                return (f"{spec['holderIdentity']} runs with --shards {count}, this replica with {self.shards} "
                        "(change --shards with every replica stopped)")
        return None

    def _write(self, lease: Obj | None, name: str, role: str) -> bool:
        """Take or renew one Lease, against the resourceVersion seen (a 409 means another replica wrote first)."""
        coordination = self.api.coordination
        labels = {SHARDS_LABEL: self.name, ROLE_LABEL: role, **({COUNT_LABEL: str(self.shards)} if role == "shard"
                                                                else {})}
        try:
            if lease is None:
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
                        "spec": self._spec(None)}
                call(coordination.create_namespaced_lease, self.namespace, body, _preload_content=False, retries=1)
            else:
                meta = lease["metadata"]
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {**meta, "labels": {**(meta.get("labels") or {}), **labels}},
                        "spec": self._spec(lease.get("spec") or {})}
                call(coordination.replace_namespaced_lease, name, self.namespace, body, _preload_content=False,
                     retries=1)
        except Exception as err:
            self.last_error = f"lease {self.namespace}/{name}: {describe(err)}"
            return False
        return True

    def _spec(self, spec: Obj | None) -> Obj:
        mine = spec is not None and spec.get("holderIdentity") == self.identity
        transitions = int((spec or {}).get("leaseTransitions") or 0) + (0 if mine or spec is None else 1)
        return {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, round(self.duration)),
                "acquireTime": (spec or {}).get("acquireTime") if mine else _now_text(), "renewTime": _now_text(),
                "leaseTransitions": transitions}

    def _release(self, name: str) -> None:
        try:
            lease = call_json(self.api.coordination.read_namespaced_lease, name, self.namespace, retries=0)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = None
                call(self.api.coordination.replace_namespaced_lease, name, self.namespace, lease,
                     _preload_content=False, retries=0)
        except Exception as err:
            log.info("lease %s/%s: not released: %s", self.namespace, name, describe(err))

    def _delete(self, name: str) -> None:
        try:
            call(self.api.coordination.delete_namespaced_lease, name, self.namespace, _preload_content=False,
                 retries=0)
        except Exception as err:
            log.debug("lease %s/%s: not deleted: %s", self.namespace, name, describe(err))

    def _lose(self, shards: list[int], why: str) -> None:
        for shard in shards:
            if self._held.pop(shard, None) is not None:
                log.warning("shard %d of %d (lease %s/%s): lost, stopped acting for its plugins (%s)", shard,
                            self.shards, self.namespace, self.lease_name(shard), why)

    def _changed(self, before: frozenset[int]) -> None:
        now = self.snapshot()
        if now != before:
            log.info("shards held: %s of %d, as %s", sorted(now) or "none", self.shards, self.identity)
            self._on_change()


def _age(spec: Obj, now: datetime) -> float | None:
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    return None if renewed is None else (now - renewed).total_seconds()


def _shard_index(lease: str, group: str) -> int | None:
    suffix = lease.removeprefix(f"{group}-")
    return int(suffix) if suffix != lease and suffix.isdigit() else None
