"""The shell: the one place that joins the pure core to the adapters, one tick at a time (README "Architecture").

Its parts: `revisions` (the revision in force, from the clone), `desired` (what the engine is given), `recorder`
(commits, before anything is acted on), `effects` (acting and notifying), `remote` (fetch, push and the remote's
health), `divergence` (conflicts and rewritten histories), `alerts` (fleet-wide alerts and holds), `isolation`
(one plugin's fault holds that rollout only) and `tick`, the `Reconciler` that wires them.
"""

from reconciler.shell.tick import Reconciler, TickReport

__all__ = ["Reconciler", "TickReport"]
