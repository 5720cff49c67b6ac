"""The Slack bot: slash commands and buttons in, commits and Slack messages out.

Owns: parsing chat commands (`parse`), deciding who may run them from access.yaml (`access`), Block Kit
rendering of rollouts (`render`), the Bolt app and its HTTP server (`app`), and the Slack notifier that keeps
one message per rollout (`notifier`, built by `factory`; the other notifiers are in `reconciler.adapters.notify`).

Must not: change the fleet repository other than through `reconciler.commands.run_command` (every action is
a commit), make the reconciler wait on Slack (notifiers queue and send from their own thread), or decide
anything about a rollout (the engine does). `parse`, `access` and `render` are pure: no I/O, clock or env.
"""
