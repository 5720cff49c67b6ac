"""A whole fleet revision from its files' text: parsed, checked across files, and refused as a whole.

`load_fleet` takes the text of every file (path -> text), so it is pure and the same for a working tree, a
commit or a test table. An invalid revision raises `FleetInvalid` with every error found, each printed as
`path:line: field: message`; the caller keeps the last good revision in force.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from reconciler.core import foreign, yamlpos
from reconciler.core.spec import (
    FILE_KINDS,
    Access,
    AdapterModels,
    ApprovalRecord,
    Approvals,
    Plugin,
    Policy,
    PolicySpec,
    Settings,
    Strict,
    is_union_tag,
    picks,
    settings_model,
)

SETTINGS_PATH = "grayops.yaml"
ACCESS_PATH = "access.yaml"
# Directory -> the kind its files must hold.
DIRECTORY_KINDS = {"plugins": "Plugin", "policies": "Policy", "approvals": "Approvals"}
# Foreign analysis templates (Argo Rollouts, Flagger), kept unchanged; policies reference them.
ANALYSIS_DIRECTORY = "analysis"
# Written by the reconciler only; never part of the desired state.
RECORD_DIRECTORIES = ("status/", "reports/")


@dataclass(frozen=True, order=True)
class FleetError:
    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


class FleetInvalid(Exception):
    """The revision is refused; `errors` lists every problem found, sorted by file and line."""

    def __init__(self, errors: list[FleetError]) -> None:
        self.errors = tuple(sorted(errors))
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class Fleet:
    """One valid revision of the fleet repository's desired state."""

    settings: Settings
    plugins: Mapping[str, Plugin]
    policies: Mapping[str, PolicySpec]
    access: Access | None = None
    approvals: Mapping[str, tuple[ApprovalRecord, ...]] = field(default_factory=dict)
    plugin_paths: Mapping[str, str] = field(default_factory=dict)
    policy_paths: Mapping[str, str] = field(default_factory=dict)


def is_desired_path(path: str) -> bool:
    """Files that make up the desired state (what humans change), as opposed to the reconciler's record."""
    return path.endswith((".yaml", ".yml")) and not path.startswith(RECORD_DIRECTORIES)


def load_fleet(files: Mapping[str, str], builtin_policies: Mapping[str, str] | None = None, *,
               adapters: AdapterModels) -> Fleet:
    """Parse and cross-check a revision. `builtin_policies` maps a policy name to its YAML text; `adapters` are
    the registry's settings models, which grayops.yaml's clusters, metrics and notifiers are validated with."""
    errors: list[FleetError] = []
    builtins: dict[str, PolicySpec] = {}
    for name, text in (builtin_policies or {}).items():
        policy = _parse(f"<builtin>/{name}.yaml", text, Policy, errors)
        if policy is not None:
            builtins[name] = policy.spec

    settings: Settings | None = None
    access: Access | None = None
    plugins: dict[str, Plugin] = {}
    policies: dict[str, PolicySpec] = {}
    approvals: dict[str, tuple[ApprovalRecord, ...]] = {}
    plugin_paths: dict[str, str] = {}
    policy_paths: dict[str, str] = {}
    approval_paths: dict[str, str] = {}
    templates: dict[tuple[str, str], _Found] = {}  # (kind, name) -> where and what

    if SETTINGS_PATH not in files:
        errors.append(FleetError(SETTINGS_PATH, 1, "file", "missing: every fleet repository needs grayops.yaml"))
    for path in sorted(files):
        if not is_desired_path(path):
            continue
        text = files[path]
        directory, _, filename = path.rpartition("/")
        stem = filename.rsplit(".", 1)[0]
        if path == SETTINGS_PATH:
            settings = _parse(path, text, settings_model(adapters), errors)
        elif path == ACCESS_PATH:
            access = _parse(path, text, Access, errors)
        elif directory == ANALYSIS_DIRECTORY:
            _read_template(path, text, templates, errors)
        elif directory in DIRECTORY_KINDS:
            model = FILE_KINDS[DIRECTORY_KINDS[directory]]
            parsed = _parse(path, text, model, errors)
            if parsed is None:
                continue
            name = parsed.metadata.name  # type: ignore[attr-defined]
            if name != stem:
                errors.append(FleetError(path, 1, "metadata.name", f"{name!r} must match the file name {stem!r}"))
            elif isinstance(parsed, Plugin):
                plugins[name], plugin_paths[name] = parsed, path
            elif isinstance(parsed, Policy):
                policies[name], policy_paths[name] = parsed.spec, path
            elif isinstance(parsed, Approvals):
                approvals[name], approval_paths[name] = tuple(parsed.approvals), path

    for name, path in policy_paths.items():
        policies[name] = _resolve_templates(policies[name], path, files[path], templates, errors)
    known_policies = {**builtins, **policies}
    if settings is not None:
        errors.extend(_missing_queries(settings, plugins, plugin_paths, known_policies, policy_paths, files))
    for name, plugin in plugins.items():
        _check_plugin(plugin, plugin_paths[name], files[plugin_paths[name]], plugins, known_policies, errors)
    errors.extend(_dependency_cycles(plugins, plugin_paths, files))
    for name, path in approval_paths.items():
        if name not in plugins:
            errors.append(FleetError(path, 1, "metadata.name", f"no plugin named {name!r} (plugins/{name}.yaml)"))

    if errors or settings is None:
        raise FleetInvalid(errors)
    return Fleet(settings, plugins, known_policies, access, approvals, plugin_paths, policy_paths)


M = TypeVar("M", bound=Strict)


def _parse(path: str, text: str, model: type[M], errors: list[FleetError]) -> M | None:
    try:
        located = yamlpos.load(text)
    except yamlpos.YamlSyntaxError as err:
        errors.append(FleetError(path, err.line, "yaml", err.message))
        return None
    if not isinstance(located.data, dict):
        errors.append(FleetError(path, 1, "document", "must be a mapping with apiVersion, kind, ..."))
        return None
    expected_kind = model.__name__
    kind = located.data.get("kind")
    if kind is not None and kind != expected_kind:
        line = located.line_of(("kind",))
        errors.append(FleetError(path, line, "kind", f"expected {expected_kind!r} in this file, found {kind!r}"))
        return None
    try:
        return model.model_validate(located.data)
    except ValidationError as err:
        for detail in err.errors():
            loc = _clean_loc(located.data, tuple(detail["loc"]))
            errors.append(
                FleetError(path, located.line_of(loc), _format_loc(loc), _message(model, located.data, loc, detail))
            )
        return None


def _clean_loc(data: Any, loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """Drop pydantic's union tags (e.g. `exec` in verify.0.exec.command), keeping the path into the document."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
        elif isinstance(part, str) and is_union_tag(node, part):
            continue  # a discriminated-union tag, not a field
        else:
            node = None
        out.append(part)
    return tuple(out)


def _format_loc(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "document"


def _message(model: type[BaseModel], data: Any, loc: tuple[str | int, ...], detail: Any) -> str:
    kind = detail["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, data, loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        suffix = f"; did you mean {hint[0]!r}?" if hint else (f"; allowed: {', '.join(allowed)}" if allowed else "")
        return f"unknown field{suffix}"
    if kind == "missing":
        return "required field is missing"
    message = str(detail["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _allowed_fields(model: type[BaseModel], data: Any, loc: tuple[str | int, ...]) -> list[str]:
    """The YAML field names allowed at `loc`, found by walking the model's annotations alongside the data."""
    current: Any = model
    node = data
    for part in loc:
        if get_origin(current) is dict:  # a key of a mapping: its values' type
            current = get_args(current)[1]
        elif not isinstance(part, int):
            owner = _one_model(current, node)
            if owner is None:
                return []
            found = next((f for n, f in owner.model_fields.items() if (f.alias or n) == part), None)
            if found is None:
                return []
            current = found.annotation
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    owner = _one_model(current, node)
    return sorted(f.alias or n for n, f in owner.model_fields.items()) if owner else []


def _one_model(annotation: Any, node: Any) -> type[BaseModel] | None:
    """The model `annotation` holds for `node`: in a tagged union, the member whose tag the data names."""
    models = _models_in(annotation)
    if len(models) > 1 and isinstance(node, dict):
        models = [m for m in models if picks(m, node)]
    return models[0] if len(models) == 1 else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModels inside list[X], X | None, Annotated[A | B, ...] and the like."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()):  # Annotated[X, ...] keeps X in __args__ too
        found += [m for m in _models_in(arg) if m not in found]
    return found


def _check_plugin(
    plugin: Plugin,
    path: str,
    text: str,
    plugins: Mapping[str, Plugin],
    policies: Mapping[str, PolicySpec],
    errors: list[FleetError],
) -> None:
    lines = yamlpos.load(text)
    spec = plugin.spec
    if spec.policy not in policies:
        known = ", ".join(sorted(policies)) or "none"
        errors.append(
            FleetError(path, lines.line_of(("spec", "policy")), "spec.policy",
                       f"no policy named {spec.policy!r} (known: {known})")
        )
    for index, dependency in enumerate(spec.depends_on):
        if dependency == plugin.metadata.name:
            errors.append(FleetError(path, lines.line_of(("spec", "dependsOn", index)),
                                     f"spec.dependsOn[{index}]", "a plugin cannot depend on itself"))
        elif dependency not in plugins:
            errors.append(FleetError(path, lines.line_of(("spec", "dependsOn", index)),
                                     f"spec.dependsOn[{index}]", f"no plugin named {dependency!r}"))


def _dependency_cycles(
    plugins: Mapping[str, Plugin], paths: Mapping[str, str], files: Mapping[str, str]
) -> list[FleetError]:
    """One error per cycle in dependsOn, reported on the first plugin of the cycle in name order."""
    graph = {name: [d for d in p.spec.depends_on if d in plugins and d != name] for name, p in plugins.items()}
    errors: list[FleetError] = []
    seen_cycles: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):]
                key = frozenset(cycle)
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    start = min(cycle)
                    i = cycle.index(start)
                    ordered = [*cycle[i:], *cycle[:i], start]
                    line = yamlpos.load(files[paths[start]]).line_of(("spec", "dependsOn"))
                    errors.append(FleetError(paths[start], line, "spec.dependsOn",
                                             f"dependency cycle: {' -> '.join(ordered)}"))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return errors


@dataclass(frozen=True)
class _Found:
    path: str
    template: foreign.Template
    located: yamlpos.Located


def _read_template(path: str, text: str, templates: dict[tuple[str, str], _Found],
                   errors: list[FleetError]) -> None:
    try:
        located = yamlpos.load(text)
    except yamlpos.YamlSyntaxError as err:
        errors.append(FleetError(path, err.line, "yaml", err.message))
        return
    if not foreign.is_foreign(located.data):
        errors.append(FleetError(path, 1, "apiVersion", f"analysis/ holds Argo Rollouts ({foreign.ARGO_API}) and "
                                                         f"Flagger ({foreign.FLAGGER_API}) templates only"))
        return
    try:
        template = foreign.read_template(located.data)
    except foreign.Invalid as err:
        errors.extend(FleetError(path, located.line_of(e.loc), _format_loc(e.loc), e.message) for e in err.errors)
        return
    key = (template.kind, template.name)
    if key in templates:
        errors.append(FleetError(path, located.line_of(("metadata", "name")), "metadata.name",
                                 f"{template.kind} {template.name!r} is also defined in {templates[key].path}"))
        return
    templates[key] = _Found(path, template, located)


def _resolve_templates(policy: PolicySpec, path: str, text: str,
                       templates: Mapping[tuple[str, str], _Found],
                       errors: list[FleetError]) -> PolicySpec:
    """The policy with the metrics of the foreign templates it references added to its analysis."""
    refs = policy.analysis.templates
    if not refs:
        return policy
    lines = yamlpos.load(text)
    metrics = list(policy.analysis.metrics)
    for index, ref in enumerate(refs):
        loc: tuple[str | int, ...] = ("spec", "analysis", "templates", index)
        found = templates.get((ref.kind, ref.name))
        if found is None:
            known = sorted(f"{kind} {name}" for kind, name in templates)
            errors.append(FleetError(path, lines.line_of(loc), _format_loc((*loc, "name")),
                                     f"no {ref.kind} named {ref.name!r} under analysis/ (known: "
                                     f"{', '.join(known) or 'none'})"))
            continue
        try:
            added = foreign.translate(found.template, ref)
        except foreign.Invalid as err:
            for error in err.errors:
                errors.append(FleetError(found.path, found.located.line_of(error.loc), _format_loc(error.loc),
                                         f"{error.message} (used by {path})"))
            continue
        for metric in added:
            if any(m.name == metric.name for m in metrics):
                errors.append(FleetError(path, lines.line_of(loc), _format_loc(loc),
                                         f"metric {metric.name!r} of {ref.kind} {ref.name} is already in the "
                                         "analysis; metric names must be unique"))
            else:
                metrics.append(metric)
    analysis = policy.analysis.model_copy(update={"metrics": metrics})
    return policy.model_copy(update={"analysis": analysis})


def _missing_queries(settings: Settings, plugins: Mapping[str, Plugin], plugin_paths: Mapping[str, str],
                     policies: Mapping[str, PolicySpec], policy_paths: Mapping[str, str],
                     files: Mapping[str, str]) -> list[FleetError]:
    """Every metric a plugin's policy judges needs a query its metrics provider can run."""
    errors: list[FleetError] = []
    used = sorted({p.spec.policy for p in plugins.values() if p.spec.policy in policies})
    for name in used:
        for index, metric in enumerate(policies[name].analysis.metrics):
            problem = settings.metrics.missing_query(metric)
            if problem is None:
                continue
            path = policy_paths.get(name, SETTINGS_PATH)
            line = yamlpos.load(files[path]).line_of(("spec", "analysis", "metrics", index)) if name in policy_paths \
                else 1
            errors.append(FleetError(path, line, f"spec.analysis.metrics[{index}].name", problem))
    return errors
