"""A list+watch cache (an informer) per cluster and resource kind: observing N instances costs no request.

Each `Informer` LISTs the kind in all namespaces once, then WATCHes from the list's resourceVersion on its own
thread, and LISTs again after a broken or expired watch (with backoff). While the last list or watch failed the
cache says so (`error`), and the driver reports the cluster's instances unreachable instead of trusting old data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from kubernetes import watch as k8s_watch

from reconciler.adapters.kube.client import CONNECT_TIMEOUT, ClusterApi, call_json, describe

log = logging.getLogger(__name__)

Obj = dict[str, Any]
WATCH: Any = k8s_watch.Watch  # untyped in the client
WATCH_SECONDS = 60  # the server ends each watch after this; the informer resumes from the last resourceVersion
MAX_BACKOFF = 5.0
CORE_SINGULAR = {"services": "service", "endpoints": "endpoints", "pods": "pod", "configmaps": "config_map"}


def newer(a: Obj, b: Obj | None) -> bool:
    """Whether object a is at least as recent as b (resourceVersions compared as numbers where they are)."""
    if b is None:
        return True
    ra, rb = a.get("metadata", {}).get("resourceVersion", ""), b.get("metadata", {}).get("resourceVersion", "")
    if ra.isdigit() and rb.isdigit():
        return int(ra) >= int(rb)
    return True


class Informer:
    """Objects of one kind on one cluster, kept current by one LIST and then one long WATCH at a time."""

    def __init__(self, api: ClusterApi, group: str, version: str, plural: str,
                 requests: Counter[str] | None = None) -> None:
        self.api, self.group, self.version, self.plural = api, group, version, plural
        self.requests = requests if requests is not None else Counter()
        self._items: dict[tuple[str, str], Obj] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.synced = threading.Event()  # a first LIST succeeded
        self.error: str | None = None  # why the last LIST or WATCH failed; None while healthy
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"informer-{api.name}-{plural}")

    @property
    def what(self) -> str:
        return f"{self.plural}.{self.group}/{self.version}" if self.group else f"{self.plural}/{self.version}"

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._items.get((namespace, name))

    def put(self, obj: Obj) -> None:
        """A newer object this process wrote (e.g. a patch's answer), ahead of its watch event."""
        meta = obj.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            if newer(obj, self._items.get(key)):
                self._items[key] = obj

    def wait_synced(self, timeout: float) -> bool:
        """Wait for the first LIST, but not past its first failure: a cluster that is down does not stall a tick."""
        deadline = time.monotonic() + timeout
        while not self.synced.is_set() and self.error is None and time.monotonic() < deadline:
            self.synced.wait(0.02)
        return self.synced.is_set()

    def healthy(self) -> bool:
        return self.synced.is_set() and self.error is None

    # --- the loop -------------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                version = self._list()
                backoff = 0.1
                self._follow(version)
            except Exception as exc:
                self.error = f"{self.what}: {describe(exc)}"
                log.debug("cluster %s: %s", self.api.name, self.error)
                if self._stop.wait(backoff):
                    return
                backoff = min(MAX_BACKOFF, backoff * 2)

    def _lister(self) -> tuple[Any, tuple[str, ...]]:
        """The client function that lists (and watches) the kind in all namespaces, and its arguments."""
        if self.group == "":  # the core group is not under /apis: its own functions, e.g. list_service_for_all_...
            return getattr(self.api.core, f"list_{CORE_SINGULAR[self.plural]}_for_all_namespaces"), ()
        return self.api.custom.list_cluster_custom_object, (self.group, self.version, self.plural)

    def _list(self) -> str:
        self.requests["LIST"] += 1
        lister, args = self._lister()
        doc = call_json(lister, *args)
        items = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in doc.get("items", [])}
        with self._lock:
            self._items = items
        self.error = None
        self.synced.set()
        return str(doc.get("metadata", {}).get("resourceVersion", ""))

    def _follow(self, version: str) -> None:
        """Watch from `version` until the stream ends or breaks; a clean end resumes, a broken one raises."""
        while not self._stop.is_set():
            self.requests["WATCH"] += 1
            self._watch = watcher = WATCH()
            lister, args = self._lister()
            stream = watcher.stream(
                lister, *args, resource_version=version, timeout_seconds=WATCH_SECONDS, deserialize=False,
                _request_timeout=(CONNECT_TIMEOUT, WATCH_SECONDS + 10))
            for event in stream:
                kind, obj = event.get("type"), event.get("object")
                if kind == "ERROR" or not isinstance(obj, dict):
                    raise RuntimeError(f"watch ended with {obj!r}")  # e.g. 410 Gone: list again
                meta = obj.get("metadata", {})
                key = (meta.get("namespace", ""), meta.get("name", ""))
                with self._lock:
                    if kind == "DELETED":
                        self._items.pop(key, None)
                    elif newer(obj, self._items.get(key)):
                        self._items[key] = obj
                version = meta.get("resourceVersion", version)
                if kind != "BOOKMARK":
                    self.error = None
