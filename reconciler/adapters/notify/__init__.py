"""Notifiers: where transitions and alerts go (README "Slack", "Adding an adapter").

Owns: the log notifier (always on), the generic webhook, PagerDuty, the `FanOut` that hands every event to each
notifier, and the `Outbox` (a bounded queue drained by a background thread, with retries) that every remote
notifier sends through. Each notifier module declares its `type`, its settings model and its builder.

Must not: block the reconciler (remote notifiers only queue), raise out of `notify`, or write a secret (a
routing key, a signing secret) to a log line or a message.
"""
