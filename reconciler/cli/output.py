"""`-o/--output`, one flag for every command that shows something (README "The CLI"): text for people, wide for
more of it, json and yaml for scripts (keys in camelCase, as in the files and the API), markdown for merge requests."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from reconciler.core.report import table_cell

FORMATS = ("text", "wide", "json", "yaml", "markdown")
DATA_FORMATS = ("json", "yaml")


def output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=FORMATS, default="text", metavar="FORMAT",
                        help="text (default), wide, json, yaml or markdown")


def dump(doc: Any, output: str) -> str:
    """`doc` as JSON or YAML text, ending in a newline."""
    if output == "yaml":
        text: str = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
        return text
    return json.dumps(doc, indent=2) + "\n"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; a value cannot break it (README "The CLI")."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(table_cell("-" if v is None else str(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned columns under a header row, for a terminal or a pipe alike (rich, without colour or box)."""
    table = Table(*headers, box=None, pad_edge=False, show_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 10_000  # a pipe gets whole lines
    console = Console(width=width, no_color=True, force_terminal=False, highlight=False)
    with console.capture() as captured:
        console.print(table, crop=False, overflow="ignore")
    return "\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n"
