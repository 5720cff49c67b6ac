"""grayops reconciler: rolls plugin versions across a fleet of clusters, batch by batch, with git as the record.

Owns: the pure decision core (`core/`), the adapters to the outside world (`adapters/`), the one-tick shell
that joins them (`shell/`), the `grayops` command (`cli/`), the HTTP API (`api/`) and the web view (`web/`)
(README "Architecture"). The Slack bot lives in the sibling `bot/` package and reaches the fleet only through
the same git commands the CLI uses.
"""

__version__ = "0.1.0"
