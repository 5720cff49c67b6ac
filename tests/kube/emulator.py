"""An emulated Kubernetes API server on loopback, for the official client and kubectl, with a controller simulator.

It speaks the REST API the `kubernetes` client and kubectl use, over real HTTP on 127.0.0.1:
- discovery (/version, /api, /apis, /api/v1, /apis/<group>/<version>), plain JSON (no aggregated discovery);
- GET, LIST (labelSelector: =, ==, !=, in, notin, exists; fieldSelector metadata.name/namespace), WATCH from a
  resourceVersion as chunked JSON lines (ADDED for every object when none is given), with timeoutSeconds;
- POST (409 AlreadyExists), PUT and PATCH (strategic-merge: lists merged by `name` for containers and by `type`
  for conditions; merge-patch RFC 7386; json-patch replace/add) with metadata.generation bumped on a spec change
  and metadata.resourceVersion checked (409 Conflict when a stale one is sent), the /status subresource;
- DELETE with propagationPolicy (dependents removed in the background by default, orphaned by default for
  batch/v1 Jobs, as the real server does), the deployments/scale subresource (autoscaling/v1 Scale);
- services/<name>:<port>/proxy/<path> answered by `http_handler`, pods/exec over the websocket protocol
  (v4.channel.k8s.io, one shot: stdout on channel 1, the status on channel 3) answered by `exec_handler`, and
  pods/<name>/log from `logs`;
- Services with Endpoints kept by the controller (ready and not-ready pod addresses behind the selector), Jobs
  (batch/v1), ConfigMaps, and Gateway API HTTPRoutes (gateway.networking.k8s.io/v1) as a custom resource.

Faults: `fail_next(n, status)` answers the next n requests with an error, `delay` holds every answer (timeouts),
`down()`/`up()` stop and restart the listener on the same port. `requests` counts requests by verb.

The controller simulator (a thread, or `step()` by hand) moves Deployments and StatefulSets forward, two steps
per rollout, unless their image's tag is listed in `bad_versions`: "deadline" (ProgressDeadlineExceeded),
"stuck" (pods never ready). A Deployment's pods belong to its template (`<name>-<hash>-<i>`): during a rollout the
old pods stay Ready until the new ones are, as a ReplicaSet rollout keeps them; a scale changes only the count.
Custom resources whose kind is registered become ready the same way. A Job runs one pod and then completes,
fails or hangs as `job_handler` says (with the pod's log); an HTTPRoute gets the status a Gateway controller
writes (Accepted, and ResolvedRefs False with BackendNotFound when a backendRef names no Service).
"""

from __future__ import annotations

import base64
import builtins
import copy
import hashlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Obj = dict[str, Any]
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Resource:
    def __init__(self, group: str, version: str, plural: str, kind: str, namespaced: bool = True,
                 short: tuple[str, ...] = ()) -> None:
        self.group, self.version, self.plural, self.kind, self.namespaced = group, version, plural, kind, namespaced
        self.short = short  # kubectl's short names, from discovery (svc, deploy...)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


BUILTIN = [
    Resource("", "v1", "pods", "Pod", short=("po",)),
    Resource("", "v1", "services", "Service", short=("svc",)),
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, short=("ns",)),
    Resource("apps", "v1", "deployments", "Deployment", short=("deploy",)),
    Resource("apps", "v1", "statefulsets", "StatefulSet", short=("sts",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    Resource("", "v1", "endpoints", "Endpoints", short=("ep",)),
    Resource("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    Resource("batch", "v1", "jobs", "Job"),
]
HTTPROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")  # a CRD: installed or not
GATEWAY_CONTROLLER = "emulator.grayops.dev/gateway-controller"
# Subresources discovery lists besides status: (plural, subresource) -> (group, version, kind, verbs)
SUBRESOURCES = {("deployments", "scale"): ("autoscaling", "v1", "Scale", ["get", "patch", "update"]),
                ("statefulsets", "scale"): ("autoscaling", "v1", "Scale", ["get", "patch", "update"]),
                ("pods", "log"): ("", "v1", "Pod", ["get"]), ("pods", "exec"): ("", "v1", "PodExecOptions", ["create"])}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def status_body(code: int, reason: str, message: str) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_tag(image: str) -> str:
    name = image.split("@", 1)[0]  # repo:tag@sha256:... runs that tag's content, pinned
    return name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"


# --- label selectors and patches ------------------------------------------------------------------------------


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    if current:
        terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in _split_terms(selector):
        if " notin " in term or " in " in term:
            key, op, values = term.partition(" notin ") if " notin " in term else term.partition(" in ")
            allowed = {v.strip() for v in values.strip().strip("()").split(",")}
            inside = labels.get(key.strip()) in allowed
            if inside != (op.strip() == "in"):
                return False
        elif "!=" in term:
            key, _, value = term.partition("!=")
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


MERGE_KEYS = {"containers": "name", "initContainers": "name", "conditions": "type", "env": "name",
              "ports": "containerPort", "volumes": "name", "volumeMounts": "mountPath"}


def strategic_merge(target: Any, patch: Any, key: str = "") -> Any:
    if isinstance(patch, list) and key in MERGE_KEYS and isinstance(target, list):
        merge_key = MERGE_KEYS[key]
        items = [copy.deepcopy(item) for item in target]
        for item in patch:
            found = next((i for i, old in enumerate(items) if old.get(merge_key) == item.get(merge_key)), None)
            if found is None:
                items.append(copy.deepcopy(item))
            else:
                items[found] = strategic_merge(items[found], item)
        return items
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = strategic_merge(result.get(name), value, name)
    return result


def json_patch(target: Obj, ops: list[Obj]) -> Obj:
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node: Any = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(node, list):
                node[int(last)] = op["value"]
            else:
                node[last] = op["value"]
        elif op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        else:
            raise ApiError(422, "Invalid", f"json-patch op {op['op']!r} is not supported by the emulator")
    return doc


def deployment_defaults(deployment: Obj) -> None:
    """What the API server fills in on a new Deployment (its RollingUpdate strategy above all)."""
    spec = deployment.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("strategy", {"type": "RollingUpdate",
                                 "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)


def job_defaults(job: Obj) -> None:
    """What the API server fills in on a new Job (selector and pod labels by its uid, the usual counts), and what
    it refuses: a pod template that restarts Always, or one without containers."""
    meta, spec = job["metadata"], job.setdefault("spec", {})
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    if pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
        raise ApiError(422, "Invalid", f'Job.batch "{meta["name"]}" is invalid: spec.template.spec.restartPolicy: '
                       f'Required value: valid values: "OnFailure", "Never"')
    if not pod_spec.get("containers"):
        raise ApiError(422, "Invalid", f'Job.batch "{meta["name"]}" is invalid: spec.template.spec.containers: '
                       "Required value")
    labels = {"batch.kubernetes.io/controller-uid": meta["uid"], "batch.kubernetes.io/job-name": meta["name"],
              "controller-uid": meta["uid"], "job-name": meta["name"]}
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}})
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}


def scale_of(obj: Obj) -> Obj:
    meta = obj["metadata"]
    labels = ((obj["spec"].get("selector") or {}).get("matchLabels") or {})
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                         "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}


def template_hash(obj: Obj) -> str:
    """A pod template's hash, as the pod-template-hash label of a Deployment's ReplicaSet."""
    return hashlib.sha1(json.dumps(obj["spec"]["template"], sort_keys=True).encode()).hexdigest()[:10]


def pod_ip(namespace: str, name: str) -> str:
    digest = hashlib.sha1(f"{namespace}/{name}".encode()).digest()
    return f"10.{digest[0]}.{digest[1]}.{digest[2] or 1}"


def is_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_address(pod: Obj) -> Obj:
    meta = pod["metadata"]
    return {"ip": pod["status"]["podIP"], "targetRef": {"kind": "Pod", "name": meta["name"],
                                                        "namespace": meta["namespace"]}}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """A Service's selector (equality only) over a pod's labels; an empty selector selects nothing."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- the server -----------------------------------------------------------------------------------------------


class Emulator:
    """One emulated cluster: its objects, its event log, its HTTP listener and its controller."""

    def __init__(self, name: str = "cluster", controller: bool = True, interval: float = 0.05,
                 gateway_api: bool = True) -> None:
        self.name = name
        self.resources: dict[tuple[str, str, str], Resource] = {}
        for res in [*BUILTIN, *([HTTPROUTES] if gateway_api else [])]:
            self.add_resource(res)
        self.cond = threading.Condition()
        self.objects: dict[tuple[str, str, str], dict[tuple[str, str], Obj]] = {}
        self.events: list[tuple[int, tuple[str, str, str], str, Obj]] = []
        self.rv = 0
        self.requests: Counter[str] = Counter()
        self.patches: list[tuple[str, str, str, str]] = []  # (plural, namespace, name, field manager)
        self.bad_versions: dict[str, str] = {}
        self.http_handler: Callable[[str, str, str], tuple[int, str]] = self._default_http
        self.exec_handler: Callable[[Obj, list[str]], tuple[str, int]] = lambda pod, cmd: ("PONG\n", 0)
        # A Job's outcome and its pod's log: ("complete" | "fail" | "hang", log text).
        self.job_handler: Callable[[Obj], tuple[str, str]] = lambda job: ("complete", "")
        self.logs: dict[tuple[str, str], str] = {}  # (namespace, pod) -> what pods/log answers
        self.forbidden: set[tuple[str, str]] = set()  # (verb, plural) the caller may not do: 403
        self.allowed: set[tuple[str, str]] | None = None  # when set, (verb, plural) all the caller may do (RBAC)
        self.delay = 0.0
        self._fail: list[int] = []
        self._fail_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.is_down = False
        self._stop = threading.Event()
        self.interval = interval
        self._controller: threading.Thread | None = None
        self._want_controller = controller

    # --- lifecycle ------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Emulator:
        self._listen()
        if self._want_controller:
            self._controller = threading.Thread(target=self._control_loop, daemon=True, name=f"ctrl-{self.name}")
            self._controller.start()
        return self

    def _listen(self) -> None:
        emulator = self

        class Handler(_Handler):
            api = emulator

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """The cluster becomes unreachable: the listener closes and open watches end."""
        self.is_down = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.cond:
            self.cond.notify_all()

    def up(self) -> None:
        self.is_down = False
        self._listen()

    def stop(self) -> None:
        self._stop.set()
        self.down()
        if self._controller is not None:
            self._controller.join(timeout=5)

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._fail_lock:
            self._fail.extend([status] * count)

    def take_fault(self) -> int | None:
        with self._fail_lock:
            return self._fail.pop(0) if self._fail else None

    def add_resource(self, res: Resource) -> None:
        self.resources[(res.group, res.version, res.plural)] = res

    def kubeconfig(self, context: str | None = None) -> Obj:
        name = context or self.name
        return {"name": name, "cluster": {"name": name, "cluster": {"server": self.url}},
                "user": {"name": name, "user": {"token": f"token-{name}"}}}

    # --- the store ------------------------------------------------------------------------------------------

    def _key(self, res: Resource) -> tuple[str, str, str]:
        return (res.group, res.version, res.plural)

    def _record(self, res: Resource, kind: str, obj: Obj) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, self._key(res), kind, copy.deepcopy(obj)))
        self.cond.notify_all()

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        with self.cond:
            obj = self.objects.get(self._key(res), {}).get((namespace, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{res.plural}.{res.group or "core"} "{name}" not found')
            return copy.deepcopy(obj)

    def list(self, res: Resource, namespace: str | None, labels: str = "", fields: str = "") -> tuple[list[Obj], int]:
        with self.cond:
            items = [copy.deepcopy(o) for (ns, _), o in sorted(self.objects.get(self._key(res), {}).items())
                     if (namespace is None or ns == namespace) and self._selected(o, labels, fields)]
            return items, self.rv

    @staticmethod
    def _selected(obj: Obj, labels: str, fields: str) -> bool:
        meta = obj.get("metadata", {})
        if labels and not selector_matches(labels, meta.get("labels") or {}):
            return False
        for term in _split_terms(fields):
            key, _, value = term.replace("==", "=").partition("=")
            actual = meta.get("name") if key == "metadata.name" else meta.get("namespace")
            if actual != value:
                return False
        return True

    def create(self, res: Resource, namespace: str, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        with self.cond:
            bucket = self.objects.setdefault(self._key(res), {})
            if (namespace, name) in bucket:
                raise ApiError(409, "AlreadyExists", f'{res.plural}.{res.group or "core"} "{name}" already exists')
            obj["apiVersion"], obj["kind"] = res.group_version, res.kind
            meta.update(namespace=namespace, uid=str(uuid.uuid4()), generation=1, creationTimestamp=now_text())
            if not res.namespaced:
                meta.pop("namespace")
            if res.kind == "Job":
                job_defaults(obj)
            elif res.kind == "Deployment":
                deployment_defaults(obj)
            bucket[(namespace, name)] = obj
            self._record(res, "ADDED", obj)
            return copy.deepcopy(obj)

    def replace(self, res: Resource, namespace: str, name: str, new: Obj, subresource: str = "",
                expect_rv: str | None = None) -> Obj:
        with self.cond:
            old = self.objects.get(self._key(res), {}).get((namespace, name))
            if old is None:
                raise ApiError(404, "NotFound", f'{res.plural}.{res.group or "core"} "{name}" not found')
            if expect_rv and expect_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {res.plural}.{res.group or "core"} '
                               f'"{name}": the object has been modified; please apply your changes to the latest '
                               "version and try again")
            obj = copy.deepcopy(old)
            if subresource == "status":
                obj["status"] = copy.deepcopy(new.get("status"))
            else:
                for key, value in new.items():
                    if key not in ("status", "metadata", "apiVersion", "kind"):
                        obj[key] = copy.deepcopy(value)
                meta = new.get("metadata", {})
                for key in ("labels", "annotations", "managedFields"):
                    if key in meta:
                        obj["metadata"][key] = copy.deepcopy(meta[key])
                if obj.get("spec") != old.get("spec"):
                    obj["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            if obj == old:
                return copy.deepcopy(old)  # no change: no new resourceVersion, no event, like the real server
            self.objects[self._key(res)][(namespace, name)] = obj
            self._record(res, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, res: Resource, namespace: str, name: str, propagation: str | None = None) -> Obj:
        """Delete an object; its dependents (pods) go too unless orphaned, the default for batch/v1 Jobs only."""
        with self.cond:
            obj = self.objects.get(self._key(res), {}).pop((namespace, name), None)
            if obj is None:
                raise ApiError(404, "NotFound", f'{res.plural}.{res.group or "core"} "{name}" not found')
            self._record(res, "DELETED", obj)
            if (propagation or ("Orphan" if res.kind == "Job" else "Background")) != "Orphan":
                self._delete_pods(namespace, obj["metadata"]["uid"])
            return copy.deepcopy(obj)

    def _delete_pods(self, namespace: str, owner_uid: str, keep: Callable[[Obj], bool] = lambda pod: False) -> None:
        """Pods of the owner (a ReplicaSet's uid starts with its Deployment's), except those `keep` spares."""
        pods = self.resource("pods", "", "v1")
        bucket = self.objects.setdefault(self._key(pods), {})
        for key, pod in list(bucket.items()):
            refs = pod["metadata"].get("ownerReferences") or [{}]
            if key[0] == namespace and str(refs[0].get("uid", "")).startswith(owner_uid) and not keep(pod):
                del bucket[key]
                self._record(pods, "DELETED", pod)

    # --- convenience for tests --------------------------------------------------------------------------------

    def resource(self, plural: str, group: str = "apps", version: str = "v1") -> Resource:
        return self.resources[(group, version, plural)]

    def add_deployment(self, namespace: str, name: str, image: str, replicas: int = 2,
                       container: str | None = None) -> Obj:
        labels = {"app": name}
        spec = {"replicas": replicas, "selector": {"matchLabels": labels}, "progressDeadlineSeconds": 600,
                "template": {"metadata": {"labels": labels},
                             "spec": {"containers": [{"name": container or name, "image": image}]}}}
        obj = self.create(self.resource("deployments"), namespace, {"metadata": {"name": name, "labels": labels},
                                                                    "spec": spec})
        self.settle()
        return obj

    def add_statefulset(self, namespace: str, name: str, image: str, replicas: int = 3,
                        container: str | None = None) -> Obj:
        labels = {"app": name}
        spec = {"replicas": replicas, "selector": {"matchLabels": labels}, "serviceName": name,
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "template": {"metadata": {"labels": labels},
                             "spec": {"containers": [{"name": container or name, "image": image}]}}}
        obj = self.create(self.resource("statefulsets"), namespace, {"metadata": {"name": name, "labels": labels},
                                                                     "spec": spec})
        self.settle()
        return obj

    def add_service(self, namespace: str, name: str, selector: dict[str, str], port: int = 8080) -> Obj:
        return self.create(self.resource("services", "", "v1"), namespace, {
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"type": "ClusterIP", "selector": selector,
                     "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}]}})

    def add_httproute(self, namespace: str, name: str, service: str, port: int = 8080,
                      gateway: str = "public") -> Obj:
        """An HTTPRoute sending every request to one Service, as a team writes it before any canary."""
        return self.create(self.resource("httproutes", HTTPROUTES.group, "v1"), namespace, {
            "metadata": {"name": name},
            "spec": {"parentRefs": [{"name": gateway}], "hostnames": [f"{name}.example.com"],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                "backendRefs": [{"name": service, "port": port, "weight": 1}]}]}})

    def serving(self, namespace: str, service: str) -> builtins.list[Obj]:
        """The ready pods behind a Service, as its Endpoints list them: where its traffic goes."""
        with self.cond:
            endpoints = self.objects.get(self._key(self.resource("endpoints", "", "v1")), {}).get((namespace, service))
            pods = self.objects.get(self._key(self.resource("pods", "", "v1")), {})
            names = [a["targetRef"]["name"] for subset in (endpoints or {}).get("subsets") or []
                     for a in subset.get("addresses") or []]
            return [copy.deepcopy(pods[(namespace, n)]) for n in names if (namespace, n) in pods]

    def route_weights(self, namespace: str, route: str) -> dict[str, int]:
        """Service -> weight over the HTTPRoute's backendRefs (of its first rule, as the tests write them)."""
        obj = self.get(self.resource("httproutes", HTTPROUTES.group, "v1"), namespace, route)
        refs = obj["spec"]["rules"][0].get("backendRefs") or []
        return {r["name"]: int(r.get("weight", 1)) for r in refs}

    def settle(self, steps: int = 4) -> None:
        for _ in range(steps):
            self.step()

    def _default_http(self, namespace: str, service: str, path: str) -> tuple[int, str]:
        return 200, "ok"

    # --- controller simulator ---------------------------------------------------------------------------------

    def _control_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.step()

    def step(self) -> None:
        """One pass of the controllers: each workload moves one step towards its spec (or fails on purpose), Jobs
        run, then Endpoints follow the pods and HTTPRoutes get their status."""
        with self.cond:
            for res in list(self.resources.values()):
                for (ns, name), obj in list(self.objects.get(self._key(res), {}).items()):
                    if res.kind == "Deployment":
                        self._step_deployment(res, ns, name, obj)
                    elif res.kind == "StatefulSet":
                        self._step_statefulset(res, ns, name, obj)
                    elif res.kind == "Job":
                        self._step_job(res, ns, name, obj)
                    elif res is HTTPROUTES:
                        self._step_route(res, ns, name, obj)
                    elif res.group and res.group not in ("coordination.k8s.io", "batch") and "spec" in obj:
                        self._step_custom(res, ns, name, obj)
            self._step_endpoints()

    def _set_status(self, res: Resource, ns: str, name: str, obj: Obj, status: Obj) -> None:
        if obj.get("status") != status:
            obj["status"] = status
            self._record(res, "MODIFIED", obj)

    def _containers(self, obj: Obj) -> builtins.list[Obj]:
        containers: builtins.list[Obj] = obj["spec"]["template"]["spec"]["containers"]
        return containers

    def _behaviour(self, obj: Obj) -> str:
        for container in self._containers(obj):
            bad = self.bad_versions.get(image_tag(container.get("image", "")))
            if bad:
                return bad
        return "ok"

    def _step_deployment(self, res: Resource, ns: str, name: str, obj: Obj) -> None:
        replicas = obj["spec"].get("replicas", 1)
        status = copy.deepcopy(obj.get("status") or {})
        generation = obj["metadata"]["generation"]
        template = template_hash(obj)
        progressing = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
        available = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
        if status.get("observedGeneration") != generation and status.get("_template") == template:
            # A scale or a strategy change: the same ReplicaSet with more or fewer pods, the new ones not up yet.
            kept = min(status.get("availableReplicas", 0), replicas)
            status.update(observedGeneration=generation, replicas=replicas, updatedReplicas=replicas,
                          readyReplicas=kept, availableReplicas=kept)
            status["_steps"], status["_ready_pods"] = 1, kept
        elif status.get("observedGeneration") != generation:
            # A new rollout: the new ReplicaSet exists, its pods are not up yet, the old ones still run.
            status.update(observedGeneration=generation, replicas=replicas + min(1, status.get("replicas", 0)),
                          updatedReplicas=0, readyReplicas=status.get("availableReplicas", 0),
                          availableReplicas=status.get("availableReplicas", 0),
                          conditions=[{**progressing, "reason": "ReplicaSetUpdated"}, available])
            status["_steps"], status["_ready_pods"], status["_template"] = 0, 0, template
        elif status.get("_steps", 0) < 3:
            behaviour = self._behaviour(obj)
            status["_steps"] = status.get("_steps", 0) + 1
            if behaviour == "deadline" and status["_steps"] >= 2:
                status["conditions"] = [{**progressing, "status": "False", "reason": "ProgressDeadlineExceeded",
                                         "message": f'ReplicaSet "{name}" has timed out progressing.'}, available]
                status["_steps"] = 99
            elif behaviour in ("deadline", "stuck"):
                status["updatedReplicas"] = replicas
            elif status["_steps"] == 1:
                status["updatedReplicas"] = replicas  # new pods created; old ones still terminating
            else:
                status.update(replicas=replicas, readyReplicas=replicas, availableReplicas=replicas,
                              conditions=[progressing, available])
                status["_steps"] = 99
        rolled = status.get("availableReplicas", 0) >= replicas and status.get("updatedReplicas", 0) >= replicas \
            and status.get("replicas", 0) <= replicas
        self._deployment_pods(ns, obj, replicas if rolled else status.get("_ready_pods", 0))
        self._set_status(res, ns, name, obj, status)

    def _step_statefulset(self, res: Resource, ns: str, name: str, obj: Obj) -> None:
        replicas = obj["spec"].get("replicas", 1)
        strategy = obj["spec"].get("updateStrategy") or {}
        partition = (strategy.get("rollingUpdate") or {}).get("partition", 0) or 0
        status = copy.deepcopy(obj.get("status") or {})
        revision = f"{name}-" + hashlib.sha1(json.dumps(obj["spec"]["template"], sort_keys=True).encode()
                                             ).hexdigest()[:8]
        generation = obj["metadata"]["generation"]
        bad = self._behaviour(obj) != "ok"
        if status.get("observedGeneration") != generation:
            status.update(observedGeneration=generation, replicas=replicas)
            status.setdefault("currentRevision", revision)
            status.setdefault("readyReplicas", replicas)
            if status.get("updateRevision") != revision:  # a new template: nothing runs it yet (but the current)
                status["updatedReplicas"] = replicas if status["currentRevision"] == revision else 0
            status["updateRevision"] = revision
        else:
            want = replicas - partition  # ordinals >= partition move, highest first
            updated = status.get("updatedReplicas", 0)
            if status.get("currentRevision") == revision:
                status.update(updatedReplicas=replicas, readyReplicas=replicas)
            elif updated < want:
                status["updatedReplicas"] = updated + 1
                status["readyReplicas"] = replicas - (1 if bad else 0)
            elif not bad:
                status["readyReplicas"] = replicas
                if want >= replicas:
                    status["currentRevision"] = revision
        self._pods(ns, name, obj, ready=not bad and status.get("readyReplicas", 0) >= replicas)
        self._set_status(res, ns, name, obj, status)

    def _step_custom(self, res: Resource, ns: str, name: str, obj: Obj) -> None:
        generation = obj["metadata"]["generation"]
        status = copy.deepcopy(obj.get("status") or {})
        version = str((obj.get("spec") or {}).get("version", ""))
        bad = self.bad_versions.get(version)
        if status.get("observedGeneration") != generation:
            status.update(observedGeneration=generation, conditions=[
                {"type": "Ready", "status": "False", "reason": "Upgrading"}])
        elif not bad:
            status["conditions"] = [{"type": "Ready", "status": "True", "reason": "Upgraded"}]
        elif bad == "deadline":
            status["conditions"] = [{"type": "Ready", "status": "False", "reason": "UpgradeFailed",
                                     "message": f"version {version} failed to start"}]
        self._set_status(res, ns, name, obj, status)

    def _deployment_pods(self, ns: str, obj: Obj, ready: int) -> None:
        """The pods of the Deployment's current template (`<name>-<hash>-<i>`), the first `ready` of them Ready;
        pods of an older template stay as they were until all new ones are, as the old ReplicaSet's pods do."""
        meta, replicas = obj["metadata"], obj["spec"].get("replicas", 1)
        template, pod_hash = obj["spec"]["template"], template_hash(obj)
        wanted = [f"{meta['name']}-{pod_hash}-{i}" for i in range(replicas)]
        self._delete_pods(ns, meta["uid"], keep=lambda pod: pod["metadata"]["name"] in wanted or (
            ready < replicas and pod["metadata"]["labels"].get("pod-template-hash") != pod_hash))
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{meta['name']}-{pod_hash}",
                 "uid": f"{meta['uid']}-{pod_hash}", "controller": True}
        labels = {**template["metadata"].get("labels", {}), "pod-template-hash": pod_hash}
        for index, name in enumerate(wanted):
            self._put_pod(ns, name, labels, template["spec"], owner, "Running", index < ready)

    def _put_pod(self, ns: str, name: str, labels: dict[str, str], spec: Obj, owner: Obj, phase: str,
                 ready: bool) -> None:
        pods = self.resource("pods", "", "v1")
        bucket = self.objects.setdefault(self._key(pods), {})
        pod: Obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "labels": dict(labels), "uid": f"pod-{ns}-{name}",
                            "generation": 1, "creationTimestamp": now_text(), "ownerReferences": [owner]},
               "spec": copy.deepcopy(spec),
               "status": {"phase": phase, "podIP": pod_ip(ns, name),
                          "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
        old = bucket.get((ns, name))
        if old is not None:
            pod["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            pod["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        if old != pod:
            bucket[(ns, name)] = pod
            self._record(pods, "ADDED" if old is None else "MODIFIED", pod)

    def _pods(self, ns: str, owner: str, obj: Obj, ready: bool) -> None:
        """A StatefulSet's pods, one per ordinal (`<name>-<i>`), Ready as the workload says."""
        owner_ref = {"apiVersion": "apps/v1", "kind": obj["kind"], "name": owner, "uid": obj["metadata"]["uid"],
                     "controller": True}
        template = obj["spec"]["template"]
        for i in range(obj["spec"].get("replicas", 1)):
            self._put_pod(ns, f"{owner}-{i}", template["metadata"]["labels"], template["spec"], owner_ref,
                          "Running", ready)

    def _step_job(self, res: Resource, ns: str, name: str, obj: Obj) -> None:
        """A Job runs one pod: started at the first step, then complete, failed or still running (`job_handler`)."""
        status = copy.deepcopy(obj.get("status") or {})
        if any(c.get("status") == "True" for c in status.get("conditions") or []) or obj["spec"].get("suspend"):
            return
        meta, template = obj["metadata"], obj["spec"]["template"]
        pod = f"{name}-{meta['uid'][:5]}"
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": meta["uid"], "controller": True}
        if not status.get("startTime"):
            status.update(startTime=now_text(), active=1, ready=0)
            self._put_pod(ns, pod, template["metadata"]["labels"], template["spec"], owner, "Running", True)
        else:
            outcome, log = self.job_handler(obj)
            if outcome == "hang":
                return
            self.logs[(ns, pod)] = log
            if outcome == "complete":
                status.update(active=0, ready=0, succeeded=1, completionTime=now_text(), conditions=[
                    {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                     "message": "Reached expected number of succeeded pods"}])
            else:
                status.update(active=0, ready=0, failed=1, conditions=[
                    {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": "Job has reached the specified backoff limit"}])
            self._put_pod(ns, pod, template["metadata"]["labels"], template["spec"], owner,
                          "Succeeded" if outcome == "complete" else "Failed", False)
        self._set_status(res, ns, name, obj, status)

    def _step_endpoints(self) -> None:
        """Each Service with a selector gets Endpoints of its name: the ready and not-ready pods it selects."""
        services = self.objects.get(self._key(self.resource("services", "", "v1")), {})
        endpoints = self.resource("endpoints", "", "v1")
        bucket = self.objects.setdefault(self._key(endpoints), {})
        pods = list(self.objects.get(self._key(self.resource("pods", "", "v1")), {}).values())
        for (ns, name), service in services.items():
            selector = service["spec"].get("selector") or {}
            chosen = sorted((p for p in pods if p["metadata"]["namespace"] == ns and p["status"]["phase"] == "Running"
                             and selects(selector, p["metadata"].get("labels") or {})),
                            key=lambda p: p["metadata"]["name"])
            ports = [{"name": port.get("name", ""), "port": port.get("targetPort", port["port"]),
                      "protocol": port.get("protocol", "TCP")} for port in service["spec"].get("ports") or []]

            ready = [pod_address(p) for p in chosen if is_ready(p)]
            waiting = [pod_address(p) for p in chosen if not is_ready(p)]
            subset = {"ports": ports, **({"addresses": ready} if ready else {}),
                      **({"notReadyAddresses": waiting} if waiting else {})}
            old = bucket.get((ns, name))
            if old is None:
                self.create(endpoints, ns, {"metadata": {"name": name, "labels": service["metadata"].get("labels", {})},
                                            "subsets": [subset] if chosen else []})
            elif old.get("subsets") != ([subset] if chosen else []):
                old["subsets"] = [subset] if chosen else []
                self._record(endpoints, "MODIFIED", old)
        for key in [k for k in bucket if k not in services]:
            self._record(endpoints, "DELETED", bucket.pop(key))

    def _step_route(self, res: Resource, ns: str, name: str, obj: Obj) -> None:
        """A Gateway controller's status: Accepted by each parent, ResolvedRefs False while a Service is missing."""
        services = self.objects.get(self._key(self.resource("services", "", "v1")), {})
        refs = [ref for rule in obj["spec"].get("rules") or [] for ref in rule.get("backendRefs") or []]
        missing = sorted({ref["name"] for ref in refs
                          if ref.get("kind", "Service") == "Service" and (ns, ref["name"]) not in services})
        generation = obj["metadata"]["generation"]
        resolved = {"type": "ResolvedRefs", "status": "False" if missing else "True",
                    "reason": "BackendNotFound" if missing else "ResolvedRefs",
                    "message": f"Service(s) {', '.join(missing)} not found" if missing else "Resolved all the "
                                                                                           "Object references"}
        conditions = [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "Accepted"}, resolved]
        old_conditions = {c["type"]: c for parent in (obj.get("status") or {}).get("parents") or []
                          for c in parent.get("conditions") or []}
        for cond in conditions:
            before = old_conditions.get(cond["type"], {})
            cond.update(observedGeneration=generation, lastTransitionTime=before.get("lastTransitionTime", now_text())
                        if before.get("status") == cond["status"] else now_text())
        parents = [{"parentRef": ref, "controllerName": GATEWAY_CONTROLLER, "conditions": copy.deepcopy(conditions)}
                   for ref in obj["spec"].get("parentRefs") or []]
        self._set_status(res, ns, name, obj, {"parents": parents})


# --- HTTP ------------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    api: Emulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _send(self, code: int, body: Obj | str, content_type: str = "application/json") -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def _serve(self, method: str) -> None:
        api = self.api
        if api.is_down:  # a kept-alive connection outlives the listener: the cluster is gone all the same
            self.close_connection = True
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        watching = method == "GET" and query.get("watch") in ("1", "true")
        api.requests["WATCH" if watching else method] += 1
        if api.delay:
            time.sleep(api.delay)
        body = self._body() if method in ("POST", "PUT", "PATCH", "DELETE") else None
        fault = api.take_fault()
        if fault is not None:
            self._send(fault, status_body(fault, "InternalError", f"injected fault {fault}"))
            return
        try:
            self._route(method, url.path, query, body, watching)
        except ApiError as err:
            self._send(err.code, status_body(err.code, err.reason, err.message))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, method: str, path: str, query: dict[str, str], body: Any, watching: bool) -> None:
        api = self.api
        parts = [unquote(p) for p in path.split("/") if p]  # the client encodes e.g. the ":" of name:port
        if path == "/version":
            self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-emulated", "platform": "linux/amd64"})
            return
        if parts == ["api"]:
            self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{api.port}"}]})
            return
        if parts == ["apis"]:
            groups: dict[str, list[str]] = {}
            for known in api.resources.values():
                if known.group:
                    groups.setdefault(known.group, [])
                    if known.version not in groups[known.group]:
                        groups[known.group].append(known.version)
            self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}} for g, vs in groups.items()]})
            return
        if parts[:1] == ["api"]:
            group, version, rest = "", parts[1] if len(parts) > 1 else "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        if not rest:
            self._discovery(group, version)
            return
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2:]
        res = api.resources.get((group, version, plural))
        if res is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        verb = {"GET": "watch" if watching else ("get" if name else "list"), "POST": "create", "PUT": "update",
                "PATCH": "patch", "DELETE": "delete"}[method]
        if sub and sub[0] == "exec":
            verb = "create"
        if verb == "list":
            api.requests["GET"] -= 1
            api.requests["LIST"] += 1
        target = f"{plural}/{sub[0]}" if sub else plural
        if (verb, target) in api.forbidden or (api.allowed is not None and (verb, target) not in api.allowed):
            raise ApiError(403, "Forbidden", f'{plural}{"/" + sub[0] if sub else ""} "{name or ""}" is forbidden: '
                           f"User \"system:serviceaccount:grayops:grayops\" cannot {verb} resource \"{target}\" in "
                           f"API group \"{group}\" in the namespace \"{namespace}\"")
        ns = namespace or ""
        if plural == "services" and sub and sub[0] == "proxy" and name:
            status, text = api.http_handler(ns, name.split(":")[0], "/" + "/".join(sub[1:]))
            self._send(status, text, "text/plain")
            return
        if plural == "pods" and sub and sub[0] == "exec" and name:
            self._exec(api.get(res, ns, name), parse_qs(urlsplit(self.path).query).get("command", []))
            return
        if plural == "pods" and sub and sub[0] == "log" and name and method == "GET":
            api.get(res, ns, name)  # 404 for a pod that is gone
            lines = api.logs.get((ns, name), "").splitlines()
            tail = int(query.get("tailLines") or len(lines))
            self._send(200, "".join(f"{line}\n" for line in lines[len(lines) - tail:] if tail), "text/plain")
            return
        if sub and sub[0] == "scale" and name and res.kind in ("Deployment", "StatefulSet"):
            self._scale(res, ns, name, method, body)
            return
        if method == "GET" and name is None:
            if watching:
                self._watch(res, namespace, query)
            else:
                items, rv = api.list(res, namespace, query.get("labelSelector", ""), query.get("fieldSelector", ""))
                self._send(200, {"kind": f"{res.kind}List", "apiVersion": res.group_version,
                                 "metadata": {"resourceVersion": str(rv)}, "items": items})
            return
        if name is None:
            if method == "POST":
                self._send(201, api.create(res, ns, body))
                return
            raise ApiError(405, "MethodNotAllowed", f"{method} on a collection is not supported")
        subresource = sub[0] if sub else ""
        if method == "GET":
            self._send(200, api.get(res, ns, name))
        elif method == "PUT":
            sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            self._send(200, api.replace(res, ns, name, body, subresource, sent_rv))
        elif method == "PATCH":
            self._patch(res, ns, name, body, subresource, query)
        elif method == "DELETE":
            policy = (body or {}).get("propagationPolicy") or query.get("propagationPolicy")
            self._send(200, api.delete(res, ns, name, policy))

    def _scale(self, res: Resource, ns: str, name: str, method: str, body: Any) -> None:
        """The scale subresource: an autoscaling/v1 Scale read from, and written to, the workload's replicas."""
        api = self.api
        with api.cond:
            obj = api.get(res, ns, name)
            if method in ("PUT", "PATCH"):
                current = scale_of(obj)
                if method == "PUT":
                    wanted = body
                elif isinstance(body, list):
                    wanted = json_patch(current, body)
                else:
                    wanted = merge_patch(current, body)
                sent_rv = (wanted.get("metadata") or {}).get("resourceVersion") if method == "PUT" else \
                    (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
                obj["spec"]["replicas"] = int(wanted["spec"]["replicas"])
                obj = api.replace(res, ns, name, obj, expect_rv=sent_rv)
            elif method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} on {res.plural}/scale is not supported")
        self._send(200, scale_of(obj))

    def _patch(self, res: Resource, ns: str, name: str, body: Any, subresource: str, query: dict[str, str]) -> None:
        api = self.api
        content_type = (self.headers.get("Content-Type") or "").split(";")[0]
        with api.cond:
            current = api.get(res, ns, name)
            if content_type == "application/json-patch+json":
                patched = json_patch(current, body)
                sent_rv = None
            elif content_type == "application/merge-patch+json":
                patched = merge_patch(current, body)
                sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            elif content_type == "application/strategic-merge-patch+json":
                patched = strategic_merge(current, body)
                sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            else:
                raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                               f"accepted media types include: application/json-patch+json, "
                               f"application/merge-patch+json, application/strategic-merge-patch+json "
                               f"(got {content_type!r})")
            result = api.replace(res, ns, name, patched, subresource, sent_rv)
            api.patches.append((res.plural, ns, name, query.get("fieldManager", "")))
        self._send(200, result)

    def _discovery(self, group: str, version: str) -> None:
        found = [r for r in self.api.resources.values() if r.group == group and r.version == version]
        if not found:
            raise ApiError(404, "NotFound", f"no group version {group}/{version}")
        resources = []
        for res in found:
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            short = {"shortNames": list(res.short)} if res.short else {}
            resources.append({"name": res.plural, "singularName": res.kind.lower(), "namespaced": res.namespaced,
                              "kind": res.kind, "verbs": verbs, **short})
            resources.append({"name": f"{res.plural}/status", "singularName": "", "namespaced": res.namespaced,
                              "kind": res.kind, "verbs": ["get", "patch", "update"]})
            for (plural, sub), (sub_group, sub_version, kind, sub_verbs) in SUBRESOURCES.items():
                if plural == res.plural:
                    resources.append({"name": f"{plural}/{sub}", "singularName": "", "namespaced": True,
                                      "kind": kind, "verbs": sub_verbs,
                                      **({"group": sub_group, "version": sub_version} if sub_group else {})})
        self._send(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": found[0].group_version,
                         "resources": resources})

    def _watch(self, res: Resource, namespace: str | None, query: dict[str, str]) -> None:
        api = self.api
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        key = (res.group, res.version, res.plural)
        since = query.get("resourceVersion") or "0"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with api.cond:
            if since == "0":
                items, last = api.list(res, namespace, labels, fields)
                pending = [{"type": "ADDED", "object": item} for item in items]
            else:
                last, pending = int(since), []
        while True:
            for event in pending:
                self._chunk(json.dumps(event).encode() + b"\n")
            with api.cond:
                while not api.is_down and api.rv <= last and time.monotonic() < deadline:
                    api.cond.wait(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
                if api.is_down or time.monotonic() >= deadline:
                    break
                fresh = [e for e in api.events if e[0] > last and e[1] == key]
                last = api.rv
            pending = [{"type": kind, "object": obj} for _, _, kind, obj in fresh
                       if (namespace is None or obj["metadata"].get("namespace") == namespace)
                       and api._selected(obj, labels, fields)]
        if api.is_down:
            self.close_connection = True
            return  # a cluster going away does not say goodbye
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _exec(self, pod: Obj, command: list[str]) -> None:
        """pods/exec over the websocket protocol, one shot: no stdin, no tty, output then status then close."""
        key = self.headers.get("Sec-WebSocket-Key")
        if not key:
            raise ApiError(400, "BadRequest", "Upgrade request required")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        output, code = self.api.exec_handler(pod, command)
        if code == 0:
            status = {"metadata": {}, "status": "Success"}
        else:
            status = {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: "
                      f"exit status {code}", "reason": "NonZeroExitCode",
                      "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        self._frame(b"\x01" + output.encode())
        self._frame(b"\x03" + json.dumps(status).encode())
        self._frame(b"\x03\xe8", opcode=0x8)
        self.close_connection = True

    def _frame(self, payload: bytes, opcode: int = 0x2) -> None:
        header = bytes([0x80 | opcode])
        size = len(payload)
        if size < 126:
            header += bytes([size])
        elif size < 65536:
            header += bytes([126]) + size.to_bytes(2, "big")
        else:
            header += bytes([127]) + size.to_bytes(8, "big")
        self.wfile.write(header + payload)
        self.wfile.flush()


def kubeconfig(emulators: list[Emulator], current: str | None = None) -> Obj:
    """A kubeconfig document with one context per emulator, named after it."""
    parts = [e.kubeconfig() for e in emulators]
    return {"apiVersion": "v1", "kind": "Config", "current-context": current or emulators[0].name,
            "clusters": [p["cluster"] for p in parts], "users": [p["user"] for p in parts],
            "contexts": [{"name": p["name"], "context": {"cluster": p["name"], "user": p["name"]}} for p in parts]}
