"""The pure core: fleet format, planning, analysis and the rollout engine.

Owns: frozen values (model), parsing and validation of the fleet repository (spec, yamlpos, fleet),
planning (plan), windows and durations (timing), metric judgement (analysis), the engine's
`decide(state, desired, observations, now)` (engine) and the report and status renderings.

Must not: do I/O, read the clock or the environment, log, or import anything from `reconciler.adapters`.
Everything here is a function of its arguments, so it is tested by tables and properties.
"""
