"""What each page shows, computed from a Record. Pure: no I/O, no clock.

Phases, steps and verdicts each have a look (a CSS class for the colour, a symbol, and the text), so nothing is
said by colour alone. Commands shown are the ones that act on what a rollout waits for, as `grayops status` and
Slack name them (README "How a rollout behaves").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup

from reconciler.core.engine import retry_point
from reconciler.core.fleet import Fleet
from reconciler.core.model import BatchPhase, BatchState, InstanceState, Phase, RolloutState, Step, Verdict
from reconciler.core.plan import select_instances
from reconciler.core.report import batches_total, pending_batches, summarize
from reconciler.core.spec import PolicySpec
from reconciler.core.timing import human_duration
from reconciler.web.charts import Threshold, metric_chart, number
from reconciler.web.record import Commit, Finished, Point, Record


@dataclass(frozen=True)
class Look:
    css: str
    symbol: str
    text: str


PHASES: Mapping[Phase, Look] = {
    Phase.PENDING: Look("pending", "○", "Pending"),
    Phase.WAITING_WINDOW: Look("waiting", "◷", "WaitingWindow"),
    Phase.AWAITING_APPROVAL: Look("waiting", "✋", "AwaitingApproval"),
    Phase.PROGRESSING: Look("progressing", "▶", "Progressing"),
    Phase.PAUSED: Look("paused", "‖", "Paused"),
    Phase.ROLLING_BACK: Look("back", "↺", "RollingBack"),
    Phase.SUCCEEDED: Look("succeeded", "✓", "Succeeded"),
    Phase.ROLLED_BACK: Look("back", "↩", "RolledBack"),
    Phase.FAILED: Look("failed", "✗", "Failed"),
}
BATCHES: Mapping[str, Look] = {
    BatchPhase.UPGRADING.value: Look("progressing", "↑", "Upgrading"),
    BatchPhase.BAKING.value: Look("progressing", "◐", "Baking"),
    BatchPhase.PASSED.value: Look("succeeded", "✓", "Passed"),
    BatchPhase.FAILED.value: Look("failed", "✗", "Failed"),
    "Pending": Look("pending", "○", "Pending"),
}
STEPS: Mapping[Step, Look] = {
    Step.PENDING: Look("pending", "○", "Pending"),
    Step.UPGRADING: Look("moving", "↑", "Upgrading"),
    Step.VERIFYING: Look("moving", "…", "Verifying"),
    Step.DONE: Look("done", "✓", "Done"),
    Step.FAILED: Look("failed", "✗", "Failed"),
    Step.SKIPPED: Look("skipped", "–", "Skipped"),
    Step.ROLLING_BACK: Look("back", "↺", "RollingBack"),
    Step.ROLLED_BACK: Look("back", "↩", "RolledBack"),
    Step.ROLLBACK_FAILED: Look("failed", "✗", "RollbackFailed"),
}
VERDICTS: Mapping[Verdict, Look] = {
    Verdict.SUCCESSFUL: Look("succeeded", "✓", "Successful"),
    Verdict.FAILED: Look("failed", "✗", "Failed"),
    Verdict.INCONCLUSIVE: Look("waiting", "?", "Inconclusive"),
    Verdict.ERROR: Look("paused", "!", "Error"),
}
NO_ROLLOUT = Look("none", "·", "no rollout recorded")
ROLLBACK_ACTIONS = frozenset({"rollback", "rolled-back"})
INSTANCE_ROWS = 500  # instances listed per batch on a rollout page; the instance grid has them all


# --- fleet ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    """What a rollout waits for, and what acts on it."""

    kind: str  # approval, window, dependency, human
    text: str
    commands: tuple[str, ...] = ()
    link: str | None = None  # a page that says more (the dependency's rollout)
    note: str = ""


@dataclass(frozen=True)
class Progress:
    value: int
    max: int
    label: str


@dataclass(frozen=True)
class FleetRow:
    plugin: str
    look: Look
    state: RolloutState | None
    from_version: str | None
    to_version: str | None
    desired: str | None  # the version grayops.yaml's revision asks for, when it differs from the rollout's
    batch_text: str
    batches: Progress | None
    instances: Progress | None
    waits: tuple[Wait, ...]
    reason: str
    error: str | None = None  # its status file cannot be read


def fleet_rows(record: Record) -> list[FleetRow]:
    return [fleet_row(record, plugin) for plugin in record.plugins()]


def fleet_row(record: Record, plugin: str) -> FleetRow:
    fleet = record.fleet
    spec = fleet.plugins[plugin].spec if fleet is not None and plugin in fleet.plugins else None
    wanted = spec.version if spec is not None else None
    if plugin in record.unreadable:
        return FleetRow(plugin, Look("failed", "!", "Unreadable"), None, None, wanted, None, "", None, None, (),
                        "", record.unreadable[plugin])
    state = record.states.get(plugin)
    if state is None:
        return FleetRow(plugin, NO_ROLLOUT, None, None, wanted, None, "no rollout recorded yet", None, None, (),
                        "the reconciler records a rollout when it first sees this plugin")
    total = batches_total(fleet, state) if fleet is not None else len(state.batches)
    summary = summarize(state, total)
    passed = sum(1 for b in state.batches if b.phase is BatchPhase.PASSED)
    if state.phase is Phase.SUCCEEDED:
        passed = summary.batches_total
    batches = Progress(passed, max(summary.batches_total, 1), f"{passed} of {summary.batches_total} batches passed")
    instances = Progress(summary.done, max(summary.total, 1),
                         f"{summary.done} of {summary.total} instances {summary.done_label}")
    return FleetRow(plugin, PHASES[state.phase], state, state.from_version, state.target_version,
                    _next_version(state, wanted), batch_text(state, total), batches, instances, waits(state, fleet),
                    state.reason)


def _next_version(state: RolloutState, wanted: str | None) -> str | None:
    """A version committed that the rollout shown is not about (not the revert of a rollback)."""
    if wanted is None or wanted == state.target_version:
        return None
    if state.phase in (Phase.ROLLED_BACK, Phase.ROLLING_BACK) and wanted == state.from_version:
        return None
    return wanted


def batch_text(state: RolloutState, total: int) -> str:
    if not state.batches:
        return f"batch 0 of {total}"
    batch = state.batches[-1]
    return (f"batch {len(state.batches)} of {max(total, len(state.batches))}: {batch.name} ({batch.phase.value}, "
            f"{len(batch.instances)} instance(s))")


def phase_counts(rows: Iterable[FleetRow]) -> list[tuple[Look, int]]:
    counts = Counter(row.look for row in rows)
    order = [*PHASES.values(), NO_ROLLOUT]
    return [(look, counts[look]) for look in dict.fromkeys([*order, *counts]) if counts[look]]


def waits(state: RolloutState, fleet: Fleet | None) -> tuple[Wait, ...]:
    """What the rollout waits for (a dependency, a window, an approval, a human) and the commands that act."""
    plugin = state.plugin
    found: list[Wait] = []
    if state.waiting_for:
        dependency = state.waiting_for.split()[0]
        found.append(Wait("dependency", f"waiting for {state.waiting_for}", link=f"/rollouts/{dependency}",
                          note="it goes on once the dependency is ready at its version on the same cluster"))
    retry = (f"grayops retry {plugin}",) if retry_point(state) is not None else ()
    rollback = (f"grayops rollback {plugin}",) if state.from_version else ()
    if state.phase is Phase.AWAITING_APPROVAL:
        batch = approval_batch(state, fleet)
        found.append(Wait("approval", state.reason, (f"grayops approve {plugin} --batch {batch or 'BATCH'}",),
                          note="by someone other than the version's author (the two-person rule)"))
    elif state.phase is Phase.WAITING_WINDOW:
        found.append(Wait("window", state.reason, note="no command needed: the batch starts when the window opens"))
    elif state.phase is Phase.PAUSED:
        who = f"paused by {state.paused_by or 'unknown'}: {state.pause_reason or 'no reason given'}"
        found.append(Wait("human", who, (f"grayops resume {plugin}", *retry, *rollback)))
    elif state.phase is Phase.FAILED:
        found.append(Wait("human", state.reason, (*retry, *rollback), note="or commit a new version"))
    return tuple(found)


def approval_batch(state: RolloutState, fleet: Fleet | None) -> str | None:
    """The next batch of the plan that needs an approval."""
    if fleet is None:
        return None
    return next((planned.name for planned in pending_batches(fleet, state) if planned.spec.approval), None)


# --- rollout --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricView:
    name: str
    look: Look | None  # of the last reading
    last: str
    readings: int
    failures: int
    covered: str
    thresholds: str
    chart: Markup
    points: tuple[Point, ...]


@dataclass(frozen=True)
class BatchView:
    number: int
    name: str
    look: Look
    instance_count: int
    instances: tuple[tuple[str, InstanceState | None], ...]  # at most INSTANCE_ROWS
    started: datetime | None
    bake_started: datetime | None
    ended: datetime | None
    took: str
    approved_by: str | None
    reason: str
    metrics: tuple[MetricView, ...]


@dataclass(frozen=True)
class TimelineItem:
    commit: Commit
    current: bool  # a commit of the rollout shown
    rollback: bool


@dataclass(frozen=True)
class RolloutView:
    row: FleetRow
    batches: tuple[BatchView, ...]
    timeline: tuple[TimelineItem, ...]
    report: Finished | None  # the report of the rollout shown, once it finished
    finished_count: int
    policy: str | None


def rollout_view(record: Record, plugin: str) -> RolloutView:
    row = fleet_row(record, plugin)
    state = row.state
    finished = record.finished.get(plugin, ())
    timeline = tuple(TimelineItem(c, state is not None and c.rollout == state.rollout_id,
                                  c.action in ROLLBACK_ACTIONS) for c in record.timelines.get(plugin, ()))
    if state is None:
        return RolloutView(row, (), timeline, None, len(finished), None)
    policy = record.fleet.policies.get(state.policy) if record.fleet is not None else None
    views = [_batch_view(record, state, batch, policy) for batch in state.batches]
    if record.fleet is not None:
        for planned in pending_batches(record.fleet, state):
            refs = tuple((ref.id, state.instances.get(ref.id)) for ref in planned.instances[:INSTANCE_ROWS])
            views.append(BatchView(len(views) + 1, planned.name, BATCHES["Pending"], len(planned.instances), refs,
                                   None, None, None, "-", None,
                                   "needs an approval" if planned.spec.approval else "", ()))
    report = next((f for f in finished if f.rollout_id == state.rollout_id), None)
    return RolloutView(row, tuple(views), timeline, report, len(finished), state.policy)


def _batch_view(record: Record, state: RolloutState, batch: BatchState, policy: PolicySpec | None) -> BatchView:
    specs = {m.name: m for m in policy.analysis.metrics} if policy is not None else {}
    metrics = []
    for track in batch.metrics:
        points = record.readings.get((state.plugin, state.rollout_id, batch.name, track.name), ())
        if not points and track.last is not None:
            points = (Point(track.last.at, track.last.value, track.last.verdict, track.last.message),)
        spec = specs.get(track.name)
        thresholds = [Threshold(kind, value) for kind, value in (("max", spec.max if spec else None),
                                                               ("min", spec.min if spec else None))
                      if value is not None]
        limits = ", ".join(f"{t.kind} {number(t.value)}" for t in thresholds)
        if spec is not None and spec.max_increase is not None:
            limits += f"{', ' if limits else ''}at most {spec.max_increase:.0%} over the baseline (not drawn)"
        chart_id = f"chart-{batch.index}-{track.name}"
        metrics.append(MetricView(
            track.name, VERDICTS[track.last.verdict] if track.last else None,
            number(track.last.value) if track.last else "no reading", track.readings, track.failures,
            human_duration(track.covered), limits or "as the policy in force says",
            metric_chart(chart_id, track.name, points, thresholds, batch.bake_started or batch.started, batch.ended),
            tuple(points)))
    took = human_duration((batch.ended - batch.started).total_seconds()) if batch.ended else "-"
    instances = tuple((iid, state.instances.get(iid)) for iid in batch.instances[:INSTANCE_ROWS])
    return BatchView(batch.index + 1, batch.name, BATCHES[batch.phase.value], len(batch.instances), instances,
                     batch.started, batch.bake_started, batch.ended, took, batch.approved_by, batch.reason,
                     tuple(metrics))


# --- instances ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    css: str
    symbol: str
    text: str  # what the cell says (a version)
    title: str


@dataclass(frozen=True)
class GridRow:
    cluster: str
    tier: str
    cells: tuple[Cell | None, ...]  # one per plugin; None: the plugin does not run there


@dataclass(frozen=True)
class Share:
    css: str
    label: str
    count: int
    percent: float


@dataclass(frozen=True)
class TierSummary:
    tier: str
    clusters: int
    per_plugin: tuple[tuple[Share, ...], ...]  # one per plugin, in the grid's plugin order


@dataclass(frozen=True)
class Grid:
    plugins: tuple[str, ...]
    tiers: tuple[TierSummary, ...]
    groups: tuple[tuple[str, tuple[GridRow, ...]], ...]  # by tier: the tier asked for (or all, in a small fleet),
    # on the page asked for
    tier: str | None
    page: int
    pages: int
    legend: tuple[Look, ...]


UNTIERED = "untiered"
GRID_PAGE = 200  # clusters per page of a tier
SMALL_FLEET = 200  # up to this many clusters, the overview shows the whole grid


def cluster_tiers(record: Record) -> dict[str, str]:
    """Cluster -> tier (its `tier` label), in grayops.yaml's order, then clusters only the record names."""
    tiers: dict[str, str] = {}
    if record.fleet is not None:
        for cluster in record.fleet.settings.clusters:
            tiers[cluster.name] = cluster.labels.get("tier", UNTIERED)
    for state in record.states.values():
        for iid in (*state.instances, *state.last_good):
            tiers.setdefault(iid.split("/", 1)[0], UNTIERED)
    return tiers


def instance_cells(record: Record, plugin: str) -> dict[str, list[tuple[str, Cell]]]:
    """Cluster -> [(namespace, cell)] of one plugin: what each instance runs and where it is in the rollout."""
    state = record.states.get(plugin)
    found: dict[str, list[tuple[str, Cell]]] = {}

    def put(iid: str, cell: Cell) -> None:
        cluster, _, namespace = iid.partition("/")
        found.setdefault(cluster, []).append((namespace, cell))

    seen: set[str] = set()
    if state is not None:
        for iid, inst in state.instances.items():
            put(iid, _cell(plugin, iid, inst.version, inst.step, state, inst.message))
            seen.add(iid)
        for iid, version in state.last_good.items():
            if iid not in seen:
                put(iid, _cell(plugin, iid, version, None, state, ""))
                seen.add(iid)
    fleet = record.fleet
    if fleet is not None and plugin in fleet.plugins:
        for ref in select_instances(fleet.plugins[plugin].spec, fleet.settings.clusters):
            if ref.id not in seen:
                put(ref.id, Cell("v-none", "?", "-", f"{ref.id} {plugin}: not recorded yet"))
    return found


def _cell(plugin: str, iid: str, version: str | None, step: Step | None, state: RolloutState, message: str) -> Cell:
    if version is None:
        css = "v-none"
    elif version == state.target_version:
        css = "v-target"
    elif version == state.from_version:
        css = "v-from"
    else:
        css = "v-other"
    symbol = "●"
    where = ""
    if step is not None:
        look = STEPS[step]
        symbol = look.symbol
        where = f" ({look.text}{': ' + message if message else ''})"
        if look.css in ("moving", "failed", "back"):
            css = f"s-{look.css}"
    return Cell(css, symbol, version or "-", f"{iid} {plugin}: {version or 'version unknown'}{where}")


def _merge(cells: Sequence[tuple[str, Cell]]) -> Cell:
    """One cell for a cluster's namespaces: the first that is moving, failed or rolled back, else the first."""
    if len(cells) == 1:
        return cells[0][1]
    first = next((c for _, c in cells if c.css.startswith("s-")), cells[0][1])
    versions = sorted({c.text for _, c in cells})
    text = versions[0] if len(versions) == 1 else "mixed"
    return Cell(first.css, first.symbol, text, "\n".join(c.title for _, c in cells))


def instance_grid(record: Record, tier: str | None = None, page: int = 1) -> Grid:
    plugins = tuple(record.plugins())
    tiers = cluster_tiers(record)
    cells = {plugin: instance_cells(record, plugin) for plugin in plugins}
    order = list(dict.fromkeys(tiers.values()))
    summaries = []
    for name in order:
        clusters = [c for c, t in tiers.items() if t == name]
        per_plugin = tuple(_shares([cell for c in clusters for _, cell in cells[p].get(c, ())]) for p in plugins)
        summaries.append(TierSummary(name, len(clusters), per_plugin))
    shown = [c for c, t in tiers.items() if t == tier] if tier is not None else (
        list(tiers) if len(tiers) <= SMALL_FLEET else [])
    pages = max(1, -(-len(shown) // GRID_PAGE))
    page = min(max(page, 1), pages)
    groups: dict[str, list[GridRow]] = {}
    for c in shown[(page - 1) * GRID_PAGE: page * GRID_PAGE]:
        row = GridRow(c, tiers[c], tuple(_merge(cells[p][c]) if c in cells[p] else None for p in plugins))
        groups.setdefault(row.tier, []).append(row)
    return Grid(plugins, tuple(summaries), tuple((t, tuple(rows)) for t, rows in groups.items()), tier, page, pages,
                LEGEND)


LEGEND = (Look("v-target", "●", "runs the version rolling out"), Look("v-from", "●", "runs the version it came from"),
          Look("v-other", "●", "runs another version"), Look("s-moving", "↑", "upgrading or verifying"),
          Look("s-failed", "✗", "failed"), Look("s-back", "↩", "rolling or rolled back"),
          Look("v-none", "?", "not recorded yet"))
_SHARE_ORDER = ("v-target", "s-moving", "s-failed", "s-back", "v-from", "v-other", "v-none")
_SHARE_LABEL = {"s-moving": "upgrading", "s-failed": "failed", "s-back": "rolled back", "v-none": "not recorded"}


def _shares(cells: Sequence[Cell]) -> tuple[Share, ...]:
    """How a tier's instances of one plugin split: by version (at the target, the old one, another) and step."""
    counts: Counter[tuple[str, str]] = Counter()
    for cell in cells:
        counts[(cell.css, _SHARE_LABEL.get(cell.css, cell.text))] += 1
    total = sum(counts.values()) or 1
    ordered = sorted(counts.items(), key=lambda kv: (_SHARE_ORDER.index(kv[0][0]), kv[0][1]))
    return tuple(Share(css, label, count, 100.0 * count / total) for (css, label), count in ordered)


@dataclass(frozen=True)
class ClusterRow:
    plugin: str
    namespace: str
    cell: Cell
    look: Look


def cluster_rows(record: Record, cluster: str) -> list[ClusterRow]:
    rows = []
    for plugin in record.plugins():
        for namespace, cell in instance_cells(record, plugin).get(cluster, ()):
            state = record.states.get(plugin)
            rows.append(ClusterRow(plugin, namespace, cell, PHASES[state.phase] if state else NO_ROLLOUT))
    return rows


# --- history --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    entry: Finished
    look: Look
    took: str
    counts: str


def history_rows(record: Record, plugin: str) -> list[HistoryRow]:
    rows = []
    for entry in record.finished.get(plugin, ()):
        took = human_duration(entry.seconds) if entry.seconds is not None else "-"
        counts = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in entry.instances.items())
        rows.append(HistoryRow(entry, PHASES[entry.result], took, counts))
    return rows
