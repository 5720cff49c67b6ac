"""Blue-green and traffic canaries on Kubernetes (README "Strategies"): pure functions over the API's JSON that
say where an instance stands and build what grayops creates or patches. The driver's `operations` do the I/O.

Blue-green keeps two colors of one Deployment: blue is the plugin's own Deployment, green is `<name>-green`,
a copy of it that grayops creates. The Service named by `workload.service` selects one color through the label
`grayops.dev/color` added to its selector. A canary is `<name>-canary` beside the plugin's Deployment (the
stable one), behind its own Service `<service>-canary`, and the HTTPRoute's backendRefs share the traffic
between the two Services by weight. Both begin by adopting the plugin's Deployment: its pods get the label
(`grayops.dev/color: blue`, `grayops.dev/track: stable`), then the Service's selector gets it too, so that the
pods grayops starts beside them never receive the Service's traffic by accident.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from reconciler.adapters.kube import workloads as wl
from reconciler.core.spec import Workload
from reconciler.core.strategy import Color, Track

Obj = dict[str, Any]
MANAGED_BY = "grayops.dev/managed-by"  # on everything grayops creates; cleanup removes nothing without it
MANAGER = "grayops"
COLOR = "grayops.dev/color"
TRACK = "grayops.dev/track"
PLUGIN_LABEL = "grayops.dev/plugin"
SWITCHED_AT = "grayops.dev/switched-at"
ORIGINAL_SELECTOR = "grayops.dev/original-selector"  # a Service's selector before grayops adopted it
ORIGINAL_BACKENDS = "grayops.dev/original-backends"  # an HTTPRoute's stable backendRefs before any canary
REPLICAS_BEFORE = "grayops.dev/replicas-before-scale-down"
GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTES = "gateway.networking.k8s.io", "v1", "httproutes"
CANARY = "canary"


# --- names ------------------------------------------------------------------------------------------------------


def color_name(workload: Workload, color: Color) -> str:
    """Blue is the plugin's own Deployment; green is the one grayops creates beside it."""
    return workload.name if color == "blue" else f"{workload.name}-green"


def canary_name(workload: Workload) -> str:
    return f"{workload.name}-canary"


def preview_service(workload: Workload) -> str:
    """Selects the color staged last, so smoke tests can reach it before the switch."""
    return f"{workload.service}-preview"


def canary_service(workload: Workload) -> str:
    return f"{workload.service}-canary"


def is_managed(obj: Obj | None) -> bool:
    return obj is not None and (obj.get("metadata", {}).get("labels") or {}).get(MANAGED_BY) == MANAGER


def labels_of(obj: Obj) -> dict[str, str]:
    found: dict[str, str] = obj.get("metadata", {}).get("labels") or {}
    return found


def selector_of(service: Obj) -> dict[str, str]:
    found: dict[str, str] = (service.get("spec") or {}).get("selector") or {}
    return found


def template_labels(deployment: Obj) -> dict[str, str]:
    found: dict[str, str] = (((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels") or {}
    return found


def original_selector(service: Obj) -> dict[str, str]:
    """The Service's selector without grayops' labels: what it selected before grayops adopted it."""
    return {k: v for k, v in selector_of(service).items() if k not in (COLOR, TRACK)}


def serving_color(service: Obj) -> Color | None:
    color = selector_of(service).get(COLOR)
    return color if color in ("blue", "green") else None  # type: ignore[return-value]


def selects_pods_of(service: Obj, deployment: Obj) -> bool:
    """Whether the Service's selector (grayops' labels aside) picks the Deployment's pods."""
    selector, labels = original_selector(service), template_labels(deployment)
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- reading ----------------------------------------------------------------------------------------------------


def track_of(obj: Obj, workload: Workload, where: str) -> Track:
    """A Deployment as a strategy sees it: its version, replicas, and ready only with at least one pod."""
    reading = wl.read_deployment(obj, workload)
    replicas = wl.replicas_of(obj)
    available = int((obj.get("status") or {}).get("availableReplicas", 0))
    message = reading.message
    if replicas == 0:
        message = "scaled to 0"
    return Track(obj["metadata"]["name"], reading.version, replicas, available, reading.ready and replicas > 0,
                 reading.failed, is_managed(obj), f"{where}: {message}" if message else "")


def wanted_replicas(obj: Obj) -> int:
    """The replicas a Deployment runs, or ran before grayops scaled it to 0; at least 1."""
    replicas = wl.replicas_of(obj)
    before = wl.annotations_of(obj).get(REPLICAS_BEFORE, "")
    return replicas if replicas > 0 else int(before) if before.isdigit() and int(before) > 0 else 1


def route_refs(route: Obj, service: str) -> list[Obj]:
    """The route's backendRefs to `service` (a Service of the route's namespace)."""
    namespace = route.get("metadata", {}).get("namespace")
    return [ref for rule in (route.get("spec") or {}).get("rules") or [] for ref in rule.get("backendRefs") or []
            if ref.get("name") == service and ref.get("kind", "Service") == "Service"
            and ref.get("group", "") == "" and ref.get("namespace", namespace) == namespace]


def route_weights(route: Obj, stable: str, canary: str) -> tuple[int | None, int]:
    """(the stable Service's weight or None when the route does not send to it, the canary Service's weight)."""
    stables, canaries = route_refs(route, stable), route_refs(route, canary)
    if not stables:
        return None, 0
    return int(stables[0].get("weight", 1)), int(canaries[0].get("weight", 1)) if canaries else 0


# --- building ---------------------------------------------------------------------------------------------------


def beside(origin: Obj, name: str, label: tuple[str, str], workload: Workload, image: str | None, version: str,
           replicas: int, rollout: str, previous: str | None, plugin: str) -> Obj:
    """A Deployment beside the plugin's own: the same pod template with `image:version` (`version@digest` when a
    digest is pinned: `workloads.tag_of`), its pods and selector told apart by `label`, labelled as grayops' own."""
    key, value = label
    spec = copy.deepcopy(origin.get("spec") or {})
    for field in ("paused",):
        spec.pop(field, None)
    spec["replicas"] = replicas
    match = dict((spec.get("selector") or {}).get("matchLabels") or {})
    spec["selector"] = {"matchLabels": {**match, key: value}}
    template = spec.setdefault("template", {})
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), key: value}
    container = wl.container_of({"spec": spec}, workload)
    if container is None:
        raise ValueError("container")
    container["image"] = wl.image_of(container, image, version)
    notes = {wl.ROLLOUT_ANNOTATION: rollout, **({wl.PREVIOUS_ANNOTATION: previous} if previous else {})}
    labels = {**labels_of(origin), MANAGED_BY: MANAGER, PLUGIN_LABEL: plugin, key: value}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": origin["metadata"]["namespace"], "labels": labels,
                         "annotations": notes},
            "spec": spec}


def sync_patch(current: Obj, wanted: Obj) -> Obj | None:
    """A merge patch that brings a Deployment grayops created to `wanted` (template, replicas, annotations)."""
    spec: Obj = {}
    for field in ("replicas", "template"):
        if (current.get("spec") or {}).get(field) != wanted["spec"].get(field):
            spec[field] = wanted["spec"][field]
    notes = {k: v for k, v in wanted["metadata"]["annotations"].items() if wl.annotations_of(current).get(k) != v}
    if not spec and not notes:
        return None
    patch: Obj = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}}
    if notes:
        patch["metadata"]["annotations"] = notes
    if spec:
        patch["spec"] = spec
    return patch


def service_beside(stable: Obj, name: str, label: tuple[str, str], plugin: str) -> Obj:
    """A Service beside the stable one, with its ports, selecting only the pods labelled `label`."""
    spec = stable.get("spec") or {}
    ports = [{k: v for k, v in port.items() if k != "nodePort"} for port in spec.get("ports") or []]
    key, value = label
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": stable["metadata"]["namespace"],
                         "labels": {MANAGED_BY: MANAGER, PLUGIN_LABEL: plugin}},
            "spec": {"type": "ClusterIP", "selector": {**original_selector(stable), key: value}, "ports": ports}}


def label_patch(origin: Obj, label: tuple[str, str], replicas: int | None = None,
                image: tuple[str, str] | None = None) -> Obj | None:
    """A strategic-merge patch that puts `label` on the plugin Deployment's pods, and, when given, the replicas
    and a (container, image); None when it has them all."""
    key, value = label
    template: Obj = {}
    if template_labels(origin).get(key) != value:
        template["metadata"] = {"labels": {key: value}}
    spec: Obj = {}
    if image is not None:
        name, wanted = image
        container = next((c for c in wl.containers(origin) if c.get("name") == name), {})
        if container.get("image") != wanted:
            template["spec"] = {"containers": [{"name": name, "image": wanted}]}
    if template:
        spec["template"] = template
    if replicas is not None and wl.replicas_of(origin) != replicas:
        spec["replicas"] = replicas
    if not spec:
        return None
    return {"metadata": {"resourceVersion": origin["metadata"]["resourceVersion"]}, "spec": spec}


def selector_patch(service: Obj, label: tuple[str, str], now: str | None = None, adopting: bool = False) -> Obj:
    """A merge patch that adds `label` to the Service's selector: adopting (the original selector remembered) or
    switching (the time remembered, for scaleDownDelay)."""
    key, value = label
    notes: Obj = {}
    if adopting:
        notes[ORIGINAL_SELECTOR] = json.dumps(original_selector(service), sort_keys=True)
    if now is not None:
        notes[SWITCHED_AT] = now
    patch: Obj = {"metadata": {"resourceVersion": service["metadata"]["resourceVersion"]},
                  "spec": {"selector": {key: value}}}
    if notes:
        patch["metadata"]["annotations"] = notes
    return patch


def weights_patch(route: Obj, stable: str, canary: str, weight: int) -> Obj | None:
    """A merge patch of the HTTPRoute's rules: every rule that sends to `stable` sends `weight` percent to
    `canary` (a backendRef added beside it when missing, on the same port) and the rest to `stable`. The stable
    backendRefs as the team wrote them are remembered, for `unroute_patch`. At 0 with no canary backendRef, nothing
    changes. None when the weights are already so."""
    rules = copy.deepcopy((route.get("spec") or {}).get("rules") or [])
    stables_of, canaries_of = route_refs(route, stable), route_refs(route, canary)
    changed = False
    for rule in rules:
        refs = rule.get("backendRefs") or []
        stables = [r for r in refs if r in stables_of]
        canaries = [r for r in refs if r in canaries_of]
        if not stables or (not canaries and weight == 0):
            continue
        if not canaries:
            added = {k: v for k, v in stables[0].items() if k in ("group", "kind", "port")}
            canaries = [{"name": canary, **added, "weight": 0}]
            rule["backendRefs"] = [*refs, canaries[0]]
        for ref, value in ((stables[0], 100 - weight), (canaries[0], weight)):
            if ref.get("weight", 1) != value:
                ref["weight"] = value
                changed = True
    if not changed:
        return None
    notes = wl.annotations_of(route)
    original = notes.get(ORIGINAL_BACKENDS) or json.dumps(
        [next((r for r in rule.get("backendRefs") or [] if r in stables_of), None)
         for rule in (route.get("spec") or {}).get("rules") or []], sort_keys=True)
    return {"metadata": {"resourceVersion": route["metadata"]["resourceVersion"],
                         "annotations": {ORIGINAL_BACKENDS: original}},
            "spec": {"rules": rules}}


def unroute_patch(route: Obj, stable: str, canary: str) -> Obj | None:
    """A merge patch that removes the canary's backendRefs and puts the stable ones back as the team wrote them."""
    canaries = route_refs(route, canary)
    if not canaries:
        return None
    try:
        written = json.loads(wl.annotations_of(route).get(ORIGINAL_BACKENDS) or "[]")
    except ValueError:
        written = []
    rules = copy.deepcopy((route.get("spec") or {}).get("rules") or [])
    stables = route_refs(route, stable)
    for index, rule in enumerate(rules):
        original = written[index] if isinstance(written, list) and index < len(written) else None
        rule["backendRefs"] = [original if r in stables and isinstance(original, dict) else r
                               for r in rule.get("backendRefs") or [] if r not in canaries]
    return {"metadata": {"resourceVersion": route["metadata"]["resourceVersion"],
                         "annotations": {ORIGINAL_BACKENDS: None}},
            "spec": {"rules": rules}}
