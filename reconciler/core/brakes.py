"""The emergency brake at a refused revision (README "Pause and rollback at an invalid HEAD"). Pure.

A revision with any error is refused as a whole and the last good one stays in force; but a pause or a rollback
must not wait for someone to fix an unrelated typo. So a plugin whose own file still reads correctly on its
own is paused when that file says `paused: true`, and rolled back when its `version` is set back to the
`fromVersion` of its rollout; nothing else of the refused revision is taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pydantic import ValidationError

from reconciler.core import yamlpos
from reconciler.core.fleet import Fleet
from reconciler.core.model import RolloutState
from reconciler.core.spec import Plugin


def plugin_alone(path: str, text: str | None) -> Plugin | None:
    """The plugin file read on its own (no other file consulted); None when it is not a valid Plugin named
    after its file."""
    if text is None:
        return None
    try:
        plugin = Plugin.model_validate(yamlpos.load(text).data)
    except (yamlpos.YamlSyntaxError, ValidationError):
        return None
    stem = path.rpartition("/")[2].rsplit(".", 1)[0]
    return plugin if plugin.metadata.name == stem else None


def with_brakes(good: Fleet, files: Mapping[str, str],
                states: Mapping[str, RolloutState]) -> tuple[Fleet, tuple[str, ...]]:
    """The last good revision with the pauses and rollbacks the refused revision's plugin files ask for, and
    one line per brake taken."""
    plugins = dict(good.plugins)
    taken: list[str] = []
    for name, plugin in good.plugins.items():
        path = good.plugin_paths[name]
        asked = plugin_alone(path, files.get(path))
        if asked is None:
            continue
        spec = plugin.spec
        update: dict[str, object] = {}
        if asked.spec.paused and not spec.paused:
            update["paused"] = True
            taken.append(f"{path} pauses {name}")
        state = states.get(name)
        if (state is not None and state.target_version == spec.version and state.from_version is not None
                and asked.spec.version == state.from_version != spec.version):
            update["version"] = state.from_version
            taken.append(f"{path} rolls {name} back to {state.from_version}")
        if update:
            plugins[name] = plugin.model_copy(update={"spec": spec.model_copy(update=update)})
    return (replace(good, plugins=plugins) if taken else good), tuple(taken)
