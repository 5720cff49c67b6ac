"""Adapters: everything that touches the outside world, each behind a small Protocol in `ports`.

Owns: git (clone, watch, commit, push), the simulated fleet and its metrics, notifiers, and the registry that
knows each driver, provider and notifier by its tag and builds the ones grayops.yaml names. Adapters translate
between the world and the core's values; they make no rollout decisions. A metrics provider never raises: a
failed query is a Measurement with an error.
"""
