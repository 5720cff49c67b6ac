"""The status codec: status/<plugin>.yaml <-> `RolloutState` (README "Git as the record").

`dump_status` writes deterministic YAML (sorted keys, block style, nothing that changes without a transition), so
a commit happens only when a rollout moved. `load_status` is the one reader, for the reconciler, the CLI and the
bot alike: anything it cannot read (not YAML grayops writes, anchors or aliases, not a mapping, a field missing
or of the wrong form) raises `StatusUnreadable`, whose text names the file in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import yaml

from reconciler.core import yamlemit, yamlpos
from reconciler.core.fleet import MAX_RECORD_BYTES, show_path
from reconciler.core.model import OpenAlertRecord, Phase, RolloutState, fmt_time, from_doc, parse_time, to_doc

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # status files of large fleets are large: the C loader


def dump_status(state: RolloutState) -> str:
    """Deterministic YAML: sorted keys, block style, no stamps that change without a transition."""
    return yamlemit.dump({**to_doc(state), **_open_alerts_doc(state.open_alerts)})


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
    """The rollout state recorded in `text` (the file at `path`); raises StatusUnreadable."""
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
        state = from_doc(doc)
        alerts = _open_alerts_from(doc)
        return replace(state, open_alerts=alerts) if alerts else state
    except KeyError as err:
        raise StatusUnreadable(path, f"unreadable status, a field is missing: {err.args[0]}") from err
    except (ValueError, TypeError, AttributeError, IndexError, AssertionError) as err:
        raise StatusUnreadable(path, f"unreadable status, a field has the wrong form ({' '.join(str(err).split())})") \
            from err
