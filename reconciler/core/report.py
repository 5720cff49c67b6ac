"""Renderings of a rollout for people: the one-line summary, and the Markdown report of a finished rollout.

The report covers the upgrade record teams keep by hand (date, version, environment, operator, result, note)
plus the batches with their instances, times and verdict values, the rollbacks and the approvals. Its YAML
front matter (plugin, version, rolloutId, result, instance counts) is what `read_outcome` reads back, e.g. for
the success rate of a restarted reconciler.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import yaml

from reconciler.core import layout
from reconciler.core.fleet import Fleet
from reconciler.core.model import BatchState, Phase, RolloutState, Step, fmt_time
from reconciler.core.plan import InstanceRef, PlannedBatch, batches_left, select_instances
from reconciler.core.timing import human_duration


@dataclass(frozen=True)
class Summary:
    plugin: str
    phase: Phase
    from_version: str | None
    target_version: str
    batch: str | None  # the batch in flight or the last one
    batch_number: int  # 1-based; 0 before the first batch
    batches_total: int
    done: int
    total: int
    reason: str
    paused_by: str | None
    pause_reason: str | None

    @property
    def done_label(self) -> str:
        """What `done` counts: upgraded instances, or during and after a rollback the ones rolled back."""
        return "rolled back" if self.phase in (Phase.ROLLED_BACK, Phase.ROLLING_BACK) else "done"

    def line(self) -> str:
        batch = f"batch {self.batch_number}/{self.batches_total} {self.batch}" if self.batch else "no batch yet"
        return (f"{self.plugin:<16} {self.phase.value:<16} {self.from_version or '-'} -> {self.target_version:<10} "
                f"{batch:<24} {self.done}/{self.total} {self.done_label}  {self.reason}")


def summarize(state: RolloutState, batches_total: int | None = None) -> Summary:
    """`batches_total` is the planned number of batches when known (from the policy); else the started ones."""
    last = state.batches[-1] if state.batches else None
    done = sum(
        1 for inst in state.instances.values()
        if (inst.step is Step.DONE) or (state.phase is Phase.SUCCEEDED and inst.version == state.target_version)
    )
    if state.phase in (Phase.ROLLED_BACK, Phase.ROLLING_BACK):
        done = sum(1 for inst in state.instances.values() if inst.step is Step.ROLLED_BACK)
    return Summary(
        plugin=state.plugin,
        phase=state.phase,
        from_version=state.from_version,
        target_version=state.target_version,
        batch=last.name if last else None,
        batch_number=len(state.batches),
        batches_total=max(batches_total or 0, len(state.batches)),
        done=done,
        total=len(state.instances),
        reason=state.reason,
        paused_by=state.paused_by,
        pause_reason=state.pause_reason,
    )


def _unstarted(fleet: Fleet, state: RolloutState, instances: Sequence[InstanceRef] | None = None
               ) -> list[PlannedBatch]:
    """The plan of the batches the rollout has not started, from the revision `fleet` (none when the plugin has
    moved on to another version). `instances`: the plugin's in `fleet`, when already selected."""
    plugin = fleet.plugins.get(state.plugin)
    if plugin is None or plugin.spec.version != state.target_version:
        return []
    if instances is None:
        instances = select_instances(plugin.spec, fleet.settings.clusters)
    return batches_left(instances, fleet.policies[plugin.spec.policy], state.batches)


def batches_total(fleet: Fleet, state: RolloutState, instances: Sequence[InstanceRef] | None = None) -> int:
    """Started batches plus the plan of the rest (as the reconciler counts them)."""
    return len(state.batches) + len(_unstarted(fleet, state, instances))


def pending_batches(fleet: Fleet, state: RolloutState) -> list[PlannedBatch]:
    """The batches still to come of a rollout in flight (a finished rollout has none left to come)."""
    return [] if state.phase.terminal else _unstarted(fleet, state)


_FINISHED = re.compile(r"^\| Date \| \S+ to (\S+) ", re.M)


def report_finished(text: str) -> str:
    """When the rollout of a report finished (its Date line; ISO UTC, so it sorts by time), or "" when unknown."""
    match = _FINISHED.search(text)
    return match.group(1) if match and match.group(1) != "-" else ""


def report_record(text: str) -> dict[str, str]:
    """The rows of a report's Record table (Date, Version, Operator, Result, Note, ...), as written."""
    rows: dict[str, str] = {}
    table = text.partition("| Record | |")[2].partition("\n\n")[0]
    for line in table.splitlines():
        name, sep, value = line.strip().strip("|").partition(" | ")
        if sep and name.strip() and not name.startswith("---"):
            rows[name.strip()] = value.strip().replace("\\|", "|")
    return rows


def report_path(state: RolloutState) -> str:
    return layout.report_path(state.plugin, state.target_version, state.rollout_id)


def latest_report(records: Mapping[str, str], plugin: str, state: RolloutState | None) -> str | None:
    """The path of the plugin's last finished rollout's report among `records` (status/ and reports/ files): the
    one its status names, else the last to finish (a version such as 1.10.0 does not sort after 1.9.0); None
    when it has none."""
    reports = sorted((p for p in records if p.startswith(layout.reports_of(plugin))),
                     key=lambda p: (report_finished(records[p]), p))
    if not reports:
        return None
    named = report_path(state) if state is not None else None
    return named if named in records else reports[-1]


# How a finished rollout's instance counts toward the success rate (README "grayops' own metrics"):
# verified and kept (succeeded), failed, put back (rolled_back), or left alone (skipped; not an upgrade).
INSTANCE_RESULTS = {Step.DONE: "succeeded", Step.FAILED: "failed", Step.ROLLBACK_FAILED: "failed",
                    Step.ROLLED_BACK: "rolled_back", Step.SKIPPED: "skipped"}


@dataclass(frozen=True)
class Outcome:
    """How a finished rollout ended, as its report's front matter records it."""

    plugin: str
    rollout_id: str
    result: Phase  # Succeeded, RolledBack or Failed
    instances: Mapping[str, int]  # INSTANCE_RESULTS value -> how many


def outcome(state: RolloutState) -> Outcome:
    counts = dict.fromkeys(dict.fromkeys(INSTANCE_RESULTS.values()), 0)
    for inst in state.instances.values():
        if inst.step in INSTANCE_RESULTS:
            counts[INSTANCE_RESULTS[inst.step]] += 1
    return Outcome(state.plugin, state.rollout_id, state.phase, counts)


def _front_matter(state: RolloutState) -> str:
    """A YAML header that tools (and a restarted reconciler's metrics) read without parsing the tables."""
    done = outcome(state)
    counts = ", ".join(f"{result}: {count}" for result, count in done.instances.items())
    return (f"---\nplugin: {state.plugin}\nversion: \"{state.target_version}\"\nrolloutId: \"{state.rollout_id}\"\n"
            f"result: {state.phase.value}\nfinished: {_time(state.finished)}\ninstances: {{{counts}}}\n---\n")


def read_outcome(text: str) -> Outcome | None:
    """The outcome a report records: its front matter, or for a report written before it had one, its title,
    record table and instance table. None when the text is not a finished rollout's report."""
    if text.startswith("---\n"):
        try:
            head = yaml.safe_load(text[4:].split("\n---\n", 1)[0])
            return Outcome(str(head["plugin"]), str(head["rolloutId"]), Phase(head["result"]),
                           {str(k): int(v) for k, v in dict(head["instances"]).items()})
        except (yaml.YAMLError, KeyError, ValueError, TypeError):
            return None
    return _outcome_from_tables(text)


def _outcome_from_tables(text: str) -> Outcome | None:
    title = re.match(r"# (\S+) \S+: (\w+)\n", text)
    rollout = re.search(r"^\| Rollout \| `([0-9a-f]+)`", text, flags=re.M)
    if title is None or rollout is None or title.group(2) not in {p.value for p in Phase if p.terminal}:
        return None
    counts = dict.fromkeys(dict.fromkeys(INSTANCE_RESULTS.values()), 0)
    table = text.split("\n## Instances\n", 1)[-1].split("\n## ", 1)[0]
    for row in re.finditer(r"^\| [^|]+ \| [^|]+ \| [^|]+ \| (\w+) \|", table, flags=re.M):
        if row.group(1) in {s.value for s in INSTANCE_RESULTS}:
            counts[INSTANCE_RESULTS[Step(row.group(1))]] += 1
    return Outcome(title.group(1), rollout.group(1), Phase(title.group(2)), counts)


def _time(value: datetime | None) -> str:
    return fmt_time(value) or "-"


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return human_duration((end - start).total_seconds())


def _verdicts(batch: BatchState) -> str:
    parts = []
    for metric in batch.metrics:
        if metric.last is None:
            parts.append(f"{metric.name}: no reading")
            continue
        value = "-" if metric.last.value is None else f"{metric.last.value:.4g}"
        parts.append(f"{metric.name} {value} {metric.last.verdict.value} "
                     f"({metric.readings} readings, {metric.failures} failed)")
    return "; ".join(parts) or "-"


def _rollback_took(state: RolloutState) -> str:
    """How long the rollback took, from its start (the breach or the command) to its verified end."""
    if state.rollback_started is None:
        return ""
    end = state.finished or state.updated
    took = f"; the rollback took {human_duration((end - state.rollback_started).total_seconds())}"
    if "rollback-slow" in state.alerts:
        took += " (longer than the deadline: rollback_slow alerted)"
    return took


def table_cell(text: str) -> str:
    """Free text (reasons, names, messages) inside a Markdown table cell: one line, and a `|` cannot end the cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _took(batch: BatchState) -> str:
    took = _duration(batch.started, batch.ended)
    if batch.waited_seconds:
        took += f" (waited {human_duration(batch.waited_seconds)} for dependencies)"
    return took


def _artifact_rows(state: RolloutState) -> list[str]:
    """Who signed the desired revision, the image the artifact gate pinned, its signer and scan summary (README
    "Supply chain"); none of them when they were not checked."""
    rows = [f"| Commit signer | {table_cell(state.desired_signer)} |"] if state.desired_signer else []
    found = state.artifact
    if not found.get("digest"):
        return rows
    rows.append(f"| Artifact | `{found.get('image', '')}@{found['digest']}` |")
    if found.get("signer"):
        rows.append(f"| Artifact signer | `{found['signer']}` |")
    if found.get("scan"):
        rows.append(f"| Scan | {table_cell(found['scan'])} |")
    return rows


def render_report(state: RolloutState, labels: Mapping[str, Mapping[str, str]] | None = None,
                  approvals: Mapping[str, str] | None = None) -> str:
    """Markdown for reports/<plugin>/<version>-<rolloutId>.md.

    `labels` maps an instance id to its cluster's labels (for the environment line); `approvals` maps a batch
    name to who approved it (from the approvals record, when the batch state does not carry it).
    """
    labels = labels or {}
    approvals = approvals or {}
    tiers = Counter(labels.get(iid, {}).get("tier", "untiered") for iid in state.instances)
    environment = ", ".join(f"{tier} ({count})" for tier, count in sorted(tiers.items())) or "-"
    lines = [
        f"# {state.plugin} {state.target_version}: {state.phase.value}",
        "",
        "| Record | |",
        "|---|---|",
        f"| Date | {_time(state.started)} to {_time(state.finished)} ({_duration(state.started, state.finished)}) |",
        f"| Plugin | {state.plugin} |",
        f"| Version | {state.from_version or '(none)'} -> {state.target_version} |",
        f"| Environment | {environment} |",
        f"| Operator | {table_cell(state.requested_by or 'unknown')} |",
        f"| Result | {state.phase.value} |",
        f"| Note | {table_cell(state.reason)} |",
        f"| Rollout | `{state.rollout_id}`, desired commit `{state.desired_commit[:12]}`, policy `{state.policy}` |",
        *_artifact_rows(state),
        "",
        "## Batches",
        "",
        "| # | Batch | Instances | Started | Ended | Took | Result | Approved by | Verdicts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for batch in state.batches:
        approved = batch.approved_by or approvals.get(batch.name) or "-"
        lines.append(
            f"| {batch.index + 1} | {batch.name} | {len(batch.instances)} | {_time(batch.started)} | "
            f"{_time(batch.ended)} | {_took(batch)} | {batch.phase.value} | {table_cell(approved)} | "
            f"{table_cell(_verdicts(batch))} |"
        )
    if not state.batches:
        lines.append("| - | no batch started | | | | | | | |")
    lines += ["", "## Instances", "", "| Instance | Batch | Runs | Step | Rollback to | Note |",
              "|---|---|---|---|---|---|"]
    batch_of = {iid: b.name for b in state.batches for iid in b.instances}
    for iid, inst in sorted(state.instances.items()):
        lines.append(f"| {iid} | {batch_of.get(iid, '-')} | {inst.version or '-'} | {inst.step.value} | "
                     f"{inst.rollback_to or '-'} | {table_cell(inst.message or '')} |")
    lines += ["", "## Rollbacks", ""]
    rolled = [iid for iid, inst in state.instances.items() if inst.step in (Step.ROLLED_BACK, Step.ROLLBACK_FAILED)]
    if rolled or state.phase in (Phase.ROLLED_BACK, Phase.ROLLING_BACK):
        failed = [iid for iid in rolled if state.instances[iid].step is Step.ROLLBACK_FAILED]
        lines.append(f"- Rolled back {len(rolled) - len(failed)} instance(s), {len(failed)} failed, "
                     f"asked by {state.rollback_by or 'grayops'}; rollbacks since the last success: {state.rollbacks}"
                     + _rollback_took(state))
    else:
        lines.append("- none")
    if state.cleanup:  # README "Strategies": what grayops removed once the rollout settled
        lines += ["", "## Cleanup", ""]
        lines += [f"- {iid}: {table_cell(done or 'not done yet')}" for iid, done in sorted(state.cleanup.items())]
    lines += ["", "## Approvals", ""]
    granted = [(b.name, b.approved_by or approvals.get(b.name)) for b in state.batches]
    granted = [(name, by) for name, by in granted if by]
    lines += [f"- batch {name}: approved by {by}" for name, by in granted] or ["- none required"]
    lines += ["", "## Timeline", ""]
    lines += [f"- {_time(h.at)} **{h.phase.value}** {h.reason}" for h in state.history]
    return _front_matter(state) + "\n".join(lines) + "\n"
