"""The desired state of the revision in force, as the engine takes it: each plugin's version, policy and
instances, the commit that asked for it, and its approvals as the two-person rule judges them.

What git says is read once per HEAD (who last changed each plugin file) or per change of the approvals files,
and instances are selected once per revision: a tick over a large fleet asks git nothing when nothing moved.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from reconciler.adapters.gitrepo import GitRepo
from reconciler.core.effects import Change, Desired
from reconciler.core.fleet import Fleet
from reconciler.core.layout import approvals_files
from reconciler.core.model import RolloutState
from reconciler.core.people import ApprovalEvidence, Directory, Judged, judge_approvals
from reconciler.core.plan import InstanceRef, select_instances
from reconciler.core.report import batches_total
from reconciler.shell.artifacts import gate_applies

log = logging.getLogger("grayops")


def judge_plugin_approvals(repo: GitRepo, fleet: Fleet, plugin: str) -> Judged:
    """The plugin's approvals split by the two-person rule, with what git says about each: who committed the
    version it approves, and who changed the approvals file since (README "The two-person rule")."""
    records = tuple(fleet.approvals.get(plugin, ()))
    evidence = {}
    for commit in dict.fromkeys(r.desired_commit for r in records):
        version = repo.change_of(commit)
        edits = tuple(repo.history(approvals_files(plugin), since=version.commit)) if version else ()
        evidence[commit] = ApprovalEvidence(version, edits)
    return judge_approvals(records, evidence, Directory.of(fleet.access), (repo.author_name, repo.author_email))


class DesiredState:
    def __init__(self, repo: GitRepo) -> None:
        self._repo = repo
        self._changes: tuple[str, dict[str, Change]] = ("", {})  # HEAD -> the last change of each plugin file
        self._changes_in: Fleet | None = None  # the revision in force they were read for
        # (fleet, changes, signer, the plugins asked for) -> the desired state made of them
        self._made: tuple[Fleet, dict[str, Change], str | None, frozenset[str] | None, dict[str, Desired]] | None = None
        self._selected_in: Fleet | None = None
        self._selected: dict[str, tuple[InstanceRef, ...]] = {}
        self._judged: dict[str, tuple[object, Judged]] = {}

    def of(self, fleet: Fleet, signed_by: str | None = None, names: Collection[str] | None = None
           ) -> dict[str, Desired]:
        """What each plugin wants (only `names`, when given: a sharded replica's, README "Sharding")."""
        head = self._repo.head()
        if self._changes[0] != head:
            self._changes = (head, self._last_changes(fleet, self._changes[0]))
        changes = self._changes[1]
        asked = frozenset(names) if names is not None else None
        made = self._made
        if made is not None and made[0] is fleet and made[1] is changes and made[2:4] == (signed_by, asked):
            return made[4]  # nothing it is made of moved: the same desired state (a hot path at scale)
        desired = {}
        for name, plugin in fleet.plugins.items():
            if names is not None and name not in names:
                continue
            spec = plugin.spec
            change = changes.get(fleet.plugin_paths[name]) or Change(head)
            desired[name] = Desired(
                plugin=name,
                version=spec.version,
                paused=spec.paused,
                policy_name=spec.policy,
                policy=fleet.policies[spec.policy],
                instances=self.instances(fleet, name),
                desired_commit=change.commit,
                change=change,
                depends_on=tuple(spec.depends_on),
                artifact_gate=gate_applies(fleet, name),
                signed_by=signed_by,
                strategy=spec.workload.strategy if spec.workload else "inPlace",  # README "Strategies"
                scale_down_delay=spec.workload.scale_down_delay if spec.workload else 600.0,
                traffic_steps=tuple(spec.workload.traffic.steps) if spec.workload and spec.workload.traffic else (),
            )
        if all(fleet.plugin_paths[name] in changes for name in fleet.plugins):  # else some name HEAD, which moves
            self._made = (fleet, changes, signed_by, asked, desired)
        return desired

    def _last_changes(self, fleet: Fleet, since: str) -> dict[str, Change]:
        """Who last changed each plugin file. When the same files are in force and no commit since the last look
        touched one (grayops' own status commits, each tick), the answer stands: no walk of the whole history."""
        paths = [fleet.plugin_paths[name] for name in fleet.plugins]
        folders = sorted({path.rpartition("/")[0] or path for path in paths})  # one pathspec each, not thousands
        if since and self._changes_in is fleet and not self._repo.history(folders, since=since, limit=1):
            return self._changes[1]
        self._changes_in = fleet
        return self._repo.last_changes(paths)

    def instances(self, fleet: Fleet, name: str) -> tuple[InstanceRef, ...]:
        """The plugin's instances in the revision in force, selected once per revision (a hot path at scale)."""
        if self._selected_in is not fleet:  # a new revision: forget the old one's selections
            self._selected_in, self._selected = fleet, {}
        found = self._selected.get(name)
        if found is None:
            found = self._selected[name] = tuple(select_instances(fleet.plugins[name].spec, fleet.settings.clusters))
        return found

    def batches_total(self, fleet: Fleet | None, state: RolloutState) -> int:
        """How many batches the rollout has in all: the started ones plus the plan of the rest."""
        if fleet is None or state.plugin not in fleet.plugins:
            return len(state.batches)
        return batches_total(fleet, state, self.instances(fleet, state.plugin))

    def approvals(self, fleet: Fleet, name: str) -> Judged:
        """The plugin's approvals split by the two-person rule (README "The two-person rule"): git says who
        committed each approved version and who wrote each approval. Judged again only when they change."""
        records = tuple(fleet.approvals.get(name, ()))
        if not records:
            return (), ()
        key = (records, fleet.access, tuple(self._repo.read(p) for p in approvals_files(name)))
        cached = self._judged.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        judged = judge_plugin_approvals(self._repo, fleet, name)
        for refused in judged[1]:
            log.warning("approvals/%s.yaml: the approval of batch %s by %s is refused: %s", name,
                        refused.record.batch, refused.record.by, refused.reason)
        self._judged[name] = (key, judged)
        return judged

    def approved(self, fleet: Fleet, state: RolloutState) -> dict[str, str]:
        """Batch -> who approved it, among the accepted approvals of this rollout's version (for its report)."""
        return {a.batch: a.by for a in self.approvals(fleet, state.plugin)[0] if a.version == state.target_version}

