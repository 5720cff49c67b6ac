"""The status codec: status/<plugin>.yaml <-> `RolloutState` (README "Git as the record").

`dump_status` writes deterministic YAML (sorted keys, block style, nothing that changes without a transition), so
a commit happens only when a rollout moved. The instances are grouped by state: each state (step, version, last
good version, message) once, with the names in it, under the time their current upgrade or rollback began. A
transition of a 10,000-instance plugin then changes a few groups' lines, not every instance's, and a batch's
progress reads as names moving from one group to another. `model.to_doc` is the plain form (one entry per
instance) that the API and `-o json` show; status files written before the grouped form hold it and are read
the same (they are rewritten grouped with the next transition).

`load_status` is the one reader, for the reconciler, the CLI and the bot alike: anything it cannot read (not YAML
grayops writes, anchors or aliases, not a mapping, a field missing or of the wrong form) raises
`StatusUnreadable`, whose text names the file in one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import yaml

from reconciler.core import yamlemit, yamlpos
from reconciler.core.fleet import MAX_RECORD_BYTES, show_path
from reconciler.core.model import (
    InstanceState,
    OpenAlertRecord,
    Phase,
    RolloutState,
    Step,
    fmt_time,
    from_doc,
    parse_time,
    to_doc,
)

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # status files of large fleets are large: the C loader
_STEPS = {step: index for index, step in enumerate(Step)}
# What instances of one group share: step, version, rollbackTo, lastGood (None: none recorded), message, smoked,
# atStep (README "Strategies": the smoke tests passed and a stepped instance's step, which a restart resumes).
_GroupKey = tuple[Step, str | None, str | None, str | None, str, str, int]


def dump_status(state: RolloutState) -> str:
    """Deterministic YAML: sorted keys, block style, no stamps that change without a transition."""
    doc = to_doc(replace(state, instances={}, last_good={}))
    doc["instances"] = _groups(state)
    doc["lastGood"] = _by_version((iid, version) for iid, version in state.last_good.items()
                                  if iid not in state.instances)
    return yamlemit.dump({**doc, **_open_alerts_doc(state.open_alerts)})


def _groups(state: RolloutState) -> list[dict[str, Any]]:
    """The instances grouped by state, in the order of their steps; names sorted under their start times."""
    groups: dict[_GroupKey, dict[str | None, list[str]]] = {}
    for iid, inst in state.instances.items():
        key = (inst.step, inst.version, inst.rollback_to, state.last_good.get(iid), inst.message, inst.smoked,
               inst.at_step)
        groups.setdefault(key, {}).setdefault(fmt_time(inst.started), []).append(iid)
    return [_group_doc(key, groups[key]) for key in sorted(groups, key=_group_order)]


def _group_order(key: _GroupKey) -> tuple[Any, ...]:
    """A total order (None before any text), steps in their order: Pending, Upgrading, ..., Done, Failed, ..."""
    step, *texts, at_step = key
    return (_STEPS[step], *((text is not None, text or "") for text in texts), at_step)


def _group_doc(key: _GroupKey, by_start: Mapping[str | None, list[str]]) -> dict[str, Any]:
    """`step` and `version` always; the rest only when set, as in the plain form."""
    step, version, rollback_to, last_good, message, smoked, at_step = key
    doc: dict[str, Any] = {"step": step.value, "version": version}
    for name, value in (("rollbackTo", rollback_to), ("message", message), ("smoked", smoked), ("atStep", at_step)):
        if value:
            doc[name] = value
    if last_good is not None:
        doc["lastGood"] = last_good
    if None in by_start:
        doc["names"] = sorted(by_start[None])
    started = {at: sorted(names) for at, names in by_start.items() if at is not None}
    if started:
        doc["started"] = started
    return doc


def _by_version(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Last good versions of instances no longer selected: version -> names, sorted."""
    found: dict[str, list[str]] = {}
    for iid, version in pairs:
        found.setdefault(version, []).append(iid)
    return {version: sorted(names) for version, names in found.items()}


def _state_of(doc: dict[str, Any]) -> RolloutState:
    """The state in either form: the grouped one (`instances` a list of groups) or the plain one (a mapping)."""
    groups = doc.get("instances")
    if not isinstance(groups, list):
        return from_doc(doc)
    instances, last_good = _ungrouped(groups)
    gone = _no_longer_selected(doc.get("lastGood"))
    state = from_doc({**doc, "instances": {}, "lastGood": {}})
    # the order the plain form is read in: instances by name; last good versions of the others first
    return replace(state, instances=dict(sorted(instances.items())),
                   last_good={**dict(sorted(gone.items())), **dict(sorted(last_good.items()))})


def _ungrouped(groups: list[Any]) -> tuple[dict[str, InstanceState], dict[str, str]]:
    """Each instance's state, and the last good version of those that have one."""
    instances: dict[str, InstanceState] = {}
    last_good: dict[str, str] = {}
    for group in groups:
        step, version = Step(group["step"]), group.get("version")
        rollback_to, good, message = group.get("rollbackTo"), group.get("lastGood"), group.get("message") or ""
        smoked, at_step = group.get("smoked") or "", int(group.get("atStep") or 0)
        for at, names in _named(group):
            for iid in names:
                if iid in instances:
                    raise ValueError(f"instance {iid} is listed twice")
                instances[iid] = InstanceState(step, version, rollback_to, parse_time(at), message, smoked=smoked,
                                               at_step=at_step)
                if good is not None:
                    last_good[iid] = good
    return instances, last_good


def _no_longer_selected(versions: Any) -> dict[str, str]:
    """The top-level `lastGood` (version -> names) as instance -> version."""
    gone: dict[str, str] = {}
    for version, names in _mapping(versions, "lastGood").items():
        for iid in _list(names, f"lastGood {version}"):
            if _text(iid) in gone:
                raise ValueError(f"lastGood lists instance {iid} twice")
            gone[iid] = _text(version)
    return gone


def _named(group: Mapping[str, Any]) -> list[tuple[str | None, list[str]]]:
    """A group's names with their start times (None: not started)."""
    found: list[tuple[str | None, list[str]]] = [(None, _list(group.get("names"), "names"))]
    found += [(_text(at), _list(names, f"started {at}"))
              for at, names in _mapping(group.get("started"), "started").items()]
    return [(at, [_text(iid) for iid in names]) for at, names in found]


def _mapping(value: Any, what: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} is not a mapping")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{what} is not a list")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


# --- open alerts (README "Owners and escalation"): `openAlerts:`, only while there are some ---------------------


def _open_alerts_doc(alerts: tuple[OpenAlertRecord, ...]) -> dict[str, Any]:
    if not alerts:
        return {}
    return {"openAlerts": [{"id": a.id, "kind": a.kind, "message": a.message, "raised": fmt_time(a.raised),
                            "phase": a.phase.value, "level": a.reached + 1, "batch": a.batch} for a in alerts]}


def _open_alerts_from(doc: Mapping[str, Any]) -> tuple[OpenAlertRecord, ...]:
    found = []
    for item in doc.get("openAlerts") or ():
        raised = parse_time(item["raised"])
        if raised is None:
            raise ValueError(f"open alert {item['id']} has no raised time")
        found.append(OpenAlertRecord(str(item["id"]), str(item["kind"]), str(item["message"]), raised,
                                     Phase(item["phase"]), int(item["level"]) - 1, item.get("batch")))
    return tuple(found)


class StatusUnreadable(ValueError):
    """A status/<plugin>.yaml that cannot be read as a rollout's state; its text is `path: why`, one line."""

    def __init__(self, path: str, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(f"{show_path(path)}: {why}")


def load_status(text: str, path: str = "status file") -> RolloutState:
    """The rollout state recorded in `text` (the file at `path`), in either form; raises StatusUnreadable."""
    try:
        yamlpos.check(text, MAX_RECORD_BYTES)  # grayops never writes anchors: an alias bomb is refused unread
        doc = yaml.load(text, Loader=_LOADER)
    except yamlpos.YamlSyntaxError as err:
        raise StatusUnreadable(path, f"unreadable status, not valid YAML (line {err.line}: {err.message})") \
            from err
    except yaml.YAMLError as err:  # what the checker let through and the loader does not accept
        raise StatusUnreadable(path, f"unreadable status, not valid YAML ({' '.join(str(err).split())})") from err
    if not isinstance(doc, dict):
        raise StatusUnreadable(path, "unreadable status, not a mapping of rollout fields")
    try:
        state = _state_of(doc)
        alerts = _open_alerts_from(doc)
        return replace(state, open_alerts=alerts) if alerts else state
    except KeyError as err:
        raise StatusUnreadable(path, f"unreadable status, a field is missing: {err.args[0]}") from err
    except (ValueError, TypeError, AttributeError, IndexError, AssertionError) as err:
        raise StatusUnreadable(path, f"unreadable status, a field has the wrong form ({' '.join(str(err).split())})") \
            from err
