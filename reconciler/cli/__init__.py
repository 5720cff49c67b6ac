"""The `grayops` command (README "The CLI").

Owns: the argument parser, one module per command (or per family: `brakes` has pause, resume, rollback, approve
and retry), each with its `add_parser(sub)` and its handler; `main` builds the parser from them (`main.py`);
`wiring` builds what the daemons run (the `Reconciler`, the registry of adapters, telemetry, the hosted Slack
bot, leader election) and is the one module in `reconciler` that imports `bot`; `errors` is the one error
boundary, mapping whatever a command raises to an exit code and one line on stderr, never a traceback.
Must not: hold domain logic (checks belong to the core or to the adapter that runs them, as the PromQL check
belongs to `adapters.prometheus`), or print a traceback.
"""

from reconciler.cli.main import build_parser, main
from reconciler.cli.wiring import full_registry

__all__ = ["build_parser", "full_registry", "main"]
