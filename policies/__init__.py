"""Built-in rollout policies and the JSON Schema of the fleet repository format.

Owns: `builtin/*.yaml` (canary-waves, rolling, all-at-once), which any plugin may name in `spec.policy`
unless the fleet repository defines a policy of the same name, and `schema/fleet.schema.json`, generated from
the models in `reconciler.core.spec` by `grayops schema` (a test keeps it in step).
Must not: hold code beyond reading these files.
"""

from __future__ import annotations

from importlib import resources


def builtin_policies() -> dict[str, str]:
    """Built-in policy name -> YAML text."""
    folder = resources.files(__name__).joinpath("builtin")
    return {
        entry.name.removesuffix(".yaml"): entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".yaml")
    }


def schema_text() -> str:
    """The committed JSON Schema of the fleet repository format."""
    return resources.files(__name__).joinpath("schema", "fleet.schema.json").read_text(encoding="utf-8")
