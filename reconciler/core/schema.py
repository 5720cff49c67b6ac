"""The JSON Schema of the fleet repository format, generated from the models so it can never drift from them."""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from reconciler.core.spec import FILE_KINDS

SCHEMA_ID = "https://grayops.dev/schema/v1/fleet.schema.json"


def fleet_schema() -> dict[str, Any]:
    """One schema for every file kind (Settings, Plugin, Policy, Access, Approvals), told apart by `kind`."""
    keys, top = models_json_schema([(model, "validation") for model in FILE_KINDS.values()], by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "grayops fleet repository, format v1",
        "description": "grayops.yaml (Settings), plugins/*.yaml (Plugin), policies/*.yaml (Policy), access.yaml "
                       "(Access) and approvals/*.yaml (Approvals).",
        "oneOf": [keys[(model, "validation")] for model in FILE_KINDS.values()],
        "$defs": top["$defs"],
    }


def fleet_schema_text() -> str:
    return json.dumps(fleet_schema(), indent=2, sort_keys=True) + "\n"
