"""`grayops schema`: the JSON Schema of the fleet repository format, generated from the registry's models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import policies
from reconciler.cli.errors import DONE, Failed
from reconciler.cli.options import Subparsers
from reconciler.cli.wiring import full_registry
from reconciler.core.schema import fleet_schema_text

SHIPPED = Path(policies.__file__).resolve().parent / "schema" / "fleet.schema.json"


def add_parser(sub: Subparsers) -> None:
    schema = sub.add_parser("schema", help="print the JSON Schema of the fleet repository format")
    schema.add_argument("--write", action="store_true", help="write policies/schema/fleet.schema.json")
    schema.add_argument("--check", action="store_true", help="exit 1 when the shipped schema is stale")
    schema.set_defaults(func=schema_command)


def schema_command(args: argparse.Namespace) -> int:
    text = fleet_schema_text(full_registry().models)
    if args.check:
        if policies.schema_text() != text:
            raise Failed("policies/schema/fleet.schema.json is stale: run `grayops schema --write`")
        print("schema up to date")
    elif args.write:
        SHIPPED.write_text(text, encoding="utf-8")
        print(f"wrote {SHIPPED}")
    else:
        sys.stdout.write(text)
    return DONE
