"""The JSON Schema of the fleet repository format, generated from the models so it can never drift from them.

grayops.yaml's clusters, metrics and notifiers are described by the settings models of the adapters given (the
registry's), so the schema names every driver, provider and notifier the program knows.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from reconciler.core.spec import FILE_KINDS, AdapterModels, settings_model

SCHEMA_ID = "https://grayops.dev/schema/v1/fleet.schema.json"


def fleet_schema(adapters: AdapterModels) -> dict[str, Any]:
    """One schema for every file kind (Settings, Plugin, Policy, Access, Approvals), told apart by `kind`: each
    kind's model applies through an if/then on `kind`, so an editor reports the misspelt field of that kind rather
    than the best of five failed alternatives."""
    models = [settings_model(adapters) if kind == "Settings" else model for kind, model in FILE_KINDS.items()]
    keys, top = models_json_schema([(model, "validation") for model in models], by_alias=True)
    roots = [keys[(model, "validation")] for model in models]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "grayops fleet repository, format v1",
        "description": "grayops.yaml (Settings), plugins/*.yaml (Plugin), policies/*.yaml (Policy), access.yaml "
                       "(Access) and approvals/*.yaml (Approvals).",
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": list(FILE_KINDS)}},
        "allOf": [{"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]}, "then": root}
                  for kind, root in zip(FILE_KINDS, roots, strict=True)],
        "$defs": _reachable(roots, top["$defs"]),
    }


def _reachable(roots: list[Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The definitions the roots refer to, directly or not (the members that only report an unknown tag are left
    out of the unions, and so out of the schema)."""
    found: dict[str, Any] = {}
    pending = list(roots)
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name not in found:
                    found[name] = defs[name]
                    pending.append(defs[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def fleet_schema_text(adapters: AdapterModels) -> str:
    return json.dumps(fleet_schema(adapters), indent=2, sort_keys=True) + "\n"
