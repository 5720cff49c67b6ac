"""`grayops plan`: what a revision would roll out, per changed plugin, as text, Markdown (for an MR) or JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from reconciler.core.fleet import Fleet
from reconciler.core.model import RolloutState
from reconciler.core.plan import plan, select_instances, shortest_duration
from reconciler.core.timing import format_duration, human_duration


@dataclass(frozen=True)
class BatchView:
    name: str
    instances: list[str]
    bake: str
    approval: bool


@dataclass(frozen=True)
class ScanView:
    """The scan gate as the registry would answer it now (README "Supply chain"): the findings per severity of the
    version's report and whether it would pass `maxSeverity`; `counts` and `passes` None when that is not known,
    and `reason` says why (or why it would block)."""

    image: str
    digest: str | None
    max_severity: str
    passes: bool | None
    counts: dict[str, int] | None
    reason: str = ""

    def line(self) -> str:
        if self.counts is None:
            return f"not known: {self.reason}"
        counts = ", ".join(f"{n} {severity}" for severity, n in self.counts.items())
        verdict = f"passes maxSeverity {self.max_severity}" if self.passes else f"would block: {self.reason}"
        return f"{self.image}: {counts}: {verdict}"


@dataclass(frozen=True)
class PluginPlan:
    plugin: str
    from_version: str | None
    to_version: str
    policy: str
    instances: int
    batches: list[BatchView]
    gates: list[str]
    shortest_seconds: float
    paused: bool
    changes: list[str] = field(default_factory=list)  # what changed since the base, field by field
    already: int = 0  # instances already running to_version, by the record
    scan: ScanView | None = None  # with an image and a scan policy (README "Supply chain")


def field_changes(base: Fleet | None, head: Fleet, name: str) -> list[str]:
    """The plugin's and its policy's fields that differ between `base` and `head`, as `where: old -> new`."""
    if base is None or name not in base.plugins:
        return []
    old, new = base.plugins[name].spec, head.plugins[name].spec
    changes = _differences(f"plugins/{name}", _plain(old), _plain(new))
    if old.policy == new.policy and new.policy in base.policies:
        changes += _differences(f"policy {new.policy}", _plain(base.policies[new.policy]),
                                _plain(head.policies[new.policy]))
    return changes


def _plain(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_defaults=False)


def _differences(where: str, old: Any, new: Any) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [change for key in sorted(set(old) | set(new), key=str)
                for change in _differences(f"{where}.{key}" if where else str(key), old.get(key), new.get(key))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [change for i, (a, b) in enumerate(zip(old, new, strict=True))
                for change in _differences(f"{where}[{i}]", a, b)]
    return [] if old == new else [f"{where}: {_shown(old)} -> {_shown(new)}"]


def _shown(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value, separators=(", ", ": "))


def _plugin_fingerprint(fleet: Fleet, name: str) -> tuple[object, ...]:
    spec = fleet.plugins[name].spec
    return (spec, fleet.policies.get(spec.policy), tuple(select_instances(spec, fleet.settings.clusters)))


def changed_plugins(base: Fleet | None, head: Fleet) -> list[str]:
    """Plugins whose spec, policy or selected instances differ from `base` (all of them without a base)."""
    if base is None:
        return sorted(head.plugins)
    return sorted(
        name for name in head.plugins
        if name not in base.plugins or _plugin_fingerprint(base, name) != _plugin_fingerprint(head, name)
    )


def build(head: Fleet, names: list[str], base: Fleet | None = None,
          states: Mapping[str, RolloutState] | None = None,
          scans: Mapping[str, ScanView] | None = None) -> list[PluginPlan]:
    """The plan of each plugin in `names`; `scans` are what the shell read of their scan reports."""
    states, scans = states or {}, scans or {}
    plans = []
    for name in names:
        spec = head.plugins[name].spec
        policy = head.policies[spec.policy]
        batches = plan(spec, head.settings.clusters, policy)
        if base is not None and name in base.plugins:
            from_version: str | None = base.plugins[name].spec.version
        else:
            state = states.get(name)
            from_version = state.last_succeeded if state else None
        gates = [f"approval before batch {b.name}" for b in batches if b.spec.approval]
        gates += [f"window {', '.join(w.days)} {w.start}-{w.end} {w.timezone}" for w in policy.windows]
        gates += [f"on each cluster, {dep} at its desired version first" for dep in spec.depends_on]
        if spec.paused:
            gates.append("paused (spec.paused: true)")
        plans.append(PluginPlan(
            plugin=name,
            from_version=from_version,
            to_version=spec.version,
            policy=spec.policy,
            instances=sum(len(b.instances) for b in batches),
            batches=[BatchView(b.name, [ref.id for ref in b.instances], format_duration(b.spec.bake), b.spec.approval)
                     for b in batches],
            gates=gates,
            shortest_seconds=shortest_duration(batches, policy),
            paused=spec.paused,
            changes=field_changes(base, head, name),
            already=_already(states.get(name), spec.version, [ref.id for b in batches for ref in b.instances]),
            scan=scans.get(name),
        ))
    return plans


def _already(state: RolloutState | None, version: str, ids: list[str]) -> int:
    """How many of `ids` the record shows running `version` (a rollout of it that got that far, or an earlier one)."""
    if state is None:
        return 0
    running = {iid for iid, inst in state.instances.items() if inst.version == version}
    if state.last_succeeded == version:
        running |= {iid for iid in ids if state.last_good.get(iid) == version}
    return len(running & set(ids))


def _instances(ids: list[str], limit: int | None = 6) -> str:
    if limit is None:
        return ", ".join(ids)
    shown = ", ".join(ids[:limit])
    return shown + (f", ... (+{len(ids) - limit})" if len(ids) > limit else "")


def render_text(plans: list[PluginPlan], limit: int | None = 6) -> str:
    """A few lines per plugin; each batch names its first `limit` instances (all of them with None)."""
    if not plans:
        return "no plugin changes\n"
    out = []
    for p in plans:
        out.append(f"{p.plugin}: {p.from_version or '(none)'} -> {p.to_version}  policy {p.policy}, "
                   f"{p.instances} instance(s), at least {human_duration(p.shortest_seconds)}")
        for i, b in enumerate(p.batches, 1):
            gate = "  [approval]" if b.approval else ""
            out.append(f"  {i}. {b.name:<10} {len(b.instances):>4} instance(s), bake {b.bake}{gate}: "
                       f"{_instances(b.instances, limit)}")
        out += [f"  already at {p.to_version}: {p.already} of {p.instances}"] if p.already else []
        out += [f"  changed: {c}" for c in p.changes]
        out += [f"  gate: {g}" for g in p.gates]
        if p.scan is not None:
            out.append(f"  scan: {p.scan.line()}")
    return "\n".join(out) + "\n"


def render_markdown(plans: list[PluginPlan]) -> str:
    if not plans:
        return "### grayops plan\n\nNo plugin changes.\n"
    out = ["### grayops plan", ""]
    for p in plans:
        out += [
            f"#### `{p.plugin}` {p.from_version or '(none)'} → {p.to_version}",
            "",
            f"Policy `{p.policy}`, {p.instances} instance(s), shortest possible duration "
            f"**{human_duration(p.shortest_seconds)}** (bakes only; upgrades, windows and approvals add to it).",
            "",
            "| # | Batch | Instances | Bake | Approval |",
            "|---|---|---|---|---|",
        ]
        out += [f"| {i} | {b.name} | {len(b.instances)}: {_instances(b.instances)} | {b.bake} | "
                f"{'required' if b.approval else '-'} |" for i, b in enumerate(p.batches, 1)]
        if p.already:
            out += ["", f"Already at {p.to_version}: {p.already} of {p.instances} instance(s)."]
        if p.changes:
            out += ["", "Changes:", *[f"- `{c}`" for c in p.changes]]
        if p.gates:
            out += ["", "Gates:", *[f"- {g}" for g in p.gates]]
        if p.scan is not None:
            out += ["", f"Scan: {p.scan.line()}"]
        out.append("")
    return "\n".join(out)


def to_doc(plans: list[PluginPlan]) -> dict[str, list[dict[str, object]]]:
    """The data model of `grayops plan -o json`, which the HTTP API answers with too: keys in camelCase, as in the
    fleet's files and the status documents."""
    return {"plugins": [_camel(asdict(p)) for p in plans]}


def _camel(doc: dict[str, Any]) -> dict[str, Any]:
    def key(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    def value(v: Any) -> Any:
        if isinstance(v, dict):
            return _camel(v)
        return [value(item) for item in v] if isinstance(v, list) else v

    return {key(k): value(v) for k, v in doc.items()}
