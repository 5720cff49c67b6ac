"""One API client per cluster, from a kubeconfig context or the pod's in-cluster configuration, and the one seam
through which every request goes: `call`, which retries 5xx, 429 and transport errors with backoff.

Exceptions: `ClusterAccessError` (the cluster cannot be configured: no such context or kubeconfig, a clear
one-liner), `ClusterUnreachable` (transport errors, timeouts and 5xx that outlived the retries), and the client's
own `ApiException` for every other status (404, 403, 409...), which callers turn into messages.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as _k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from reconciler.adapters.kube import KubernetesCluster

T = TypeVar("T")
Obj = dict[str, Any]
k8s_config: Any = _k8s_config  # its loaders are untyped

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
RETRIES = 3
BACKOFF = 0.1  # seconds, doubled at each retry


class ClusterAccessError(Exception):
    """The cluster's client cannot be built: a missing kubeconfig, context or in-cluster environment."""


class ClusterUnreachable(Exception):
    """The cluster did not answer usefully: connection refused, timeout, or 5xx/429 after the retries."""


@dataclass
class ClusterApi:
    """The official client's API groups for one cluster."""

    name: str
    api_client: k8s.ApiClient

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.api_client)

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api_client)

    @property
    def batch(self) -> k8s.BatchV1Api:
        return k8s.BatchV1Api(self.api_client)

    @property
    def coordination(self) -> k8s.CoordinationV1Api:
        return k8s.CoordinationV1Api(self.api_client)

    def close(self) -> None:
        closer: Any = self.api_client.close
        closer()


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def configuration(name: str, kubeconfig: str | None, context: str | None) -> k8s.Configuration:
    """The client configuration for a kubeconfig context, or in-cluster when neither is given inside a pod."""
    cfg = k8s.Configuration()
    try:
        if kubeconfig is None and context is None and in_cluster():
            k8s_config.load_incluster_config(client_configuration=cfg)
        else:
            path = Path(kubeconfig or os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
            document = _kubeconfig_document(path.expanduser())
            k8s_config.load_kube_config_from_dict(copy.deepcopy(document), context=context, client_configuration=cfg,
                                                  persist_config=False, temp_file_path=str(path.parent))
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "the default kubeconfig"
        what = f"context {context!r} in {where}" if context else where
        reason = str(exc).strip() or type(exc).__name__
        raise ClusterAccessError(f"cluster {name}: cannot use {what}: {reason}") from None
    cfg.retries = False  # `call` retries, with backoff, and knows which failures are worth it
    return cfg


_documents: dict[tuple[Path, float], Obj] = {}


def _kubeconfig_document(path: Path) -> Obj:
    """The kubeconfig file, parsed once per version of it: 100 clusters share one file of 100 contexts."""
    import yaml

    key = (path, path.stat().st_mtime)
    found = _documents.get(key)
    if found is None:
        loaded = yaml.safe_load(path.read_text())
        if not isinstance(loaded, dict):
            raise ConfigException(f"{path} is not a kubeconfig document")
        found = _documents[key] = loaded
    return found


def connect(cluster: KubernetesCluster) -> ClusterApi:
    cfg = configuration(cluster.name, cluster.kubeconfig, cluster.kube_context)
    return ClusterApi(cluster.name, k8s.ApiClient(cfg))


def connect_default(kubeconfig: str | None = None, context: str | None = None) -> ClusterApi:
    """The cluster grayops runs in (in-cluster), or the kubeconfig's current context: where its Lease lives."""
    cfg = configuration("lease", kubeconfig, context)
    return ClusterApi("lease", k8s.ApiClient(cfg))


TRANSIENT = (urllib3.exceptions.HTTPError, OSError, TimeoutError)


def transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status is not None and (exc.status >= 500 or exc.status == 429)
    return isinstance(exc, TRANSIENT)


def describe(exc: BaseException) -> str:
    """A one-line reason from the client's exception (the API's own message when it sent a Status)."""
    if isinstance(exc, ApiException):
        try:
            message = json.loads(exc.body or "{}").get("message")
        except (ValueError, AttributeError):
            message = None
        return f"{exc.status} {message or exc.reason or ''}".strip()
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def call_json(fn: Callable[..., Any], *args: Any, retries: int = RETRIES, **kwargs: Any) -> Obj:
    """`call` for the raw answer, parsed: plain dicts as the API sends them, whatever the client's models are."""
    answer = call(fn, *args, retries=retries, _preload_content=False, **kwargs)
    data = answer.data
    parsed: Obj = json.loads(data) if data else {}
    return parsed


def call(fn: Callable[..., T], *args: Any, retries: int = RETRIES, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` with a request timeout, retried on 5xx, 429 and transport errors."""
    kwargs.setdefault("_request_timeout", (CONNECT_TIMEOUT, READ_TIMEOUT))
    delay = BACKOFF
    for attempt in range(retries + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not transient(exc):
                raise
            if attempt == retries:
                raise ClusterUnreachable(describe(exc)) from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
