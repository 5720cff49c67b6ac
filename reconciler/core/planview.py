"""`grayops plan`: what a revision would roll out, per changed plugin, as text, Markdown (for an MR) or JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

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
    scan: ScanView | None = None  # with an image and a scan policy (README "Supply chain")


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
            scan=scans.get(name),
        ))
    return plans


def _instances(ids: list[str], limit: int = 6) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... (+{len(ids) - limit})" if len(ids) > limit else "")


def render_text(plans: list[PluginPlan]) -> str:
    if not plans:
        return "no plugin changes\n"
    out = []
    for p in plans:
        out.append(f"{p.plugin}: {p.from_version or '(none)'} -> {p.to_version}  policy {p.policy}, "
                   f"{p.instances} instance(s), at least {human_duration(p.shortest_seconds)}")
        for i, b in enumerate(p.batches, 1):
            gate = "  [approval]" if b.approval else ""
            out.append(f"  {i}. {b.name:<10} {len(b.instances):>4} instance(s), bake {b.bake}{gate}: "
                       f"{_instances(b.instances)}")
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
        if p.gates:
            out += ["", "Gates:", *[f"- {g}" for g in p.gates]]
        if p.scan is not None:
            out += ["", f"Scan: {p.scan.line()}"]
        out.append("")
    return "\n".join(out)


def to_doc(plans: list[PluginPlan]) -> dict[str, list[dict[str, object]]]:
    """The JSON model of `grayops plan --format json`, which the HTTP API answers with too."""
    return {"plugins": [asdict(p) for p in plans]}


def render_json(plans: list[PluginPlan]) -> str:
    return json.dumps(to_doc(plans), indent=2) + "\n"


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}
