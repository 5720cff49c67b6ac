"""A whole fleet revision from its files' text: parsed, checked across files, and refused as a whole.

`load_fleet` takes the text of every file (path -> text), so it is pure and the same for a working tree, a
commit or a test table. An invalid revision raises `FleetInvalid` with every error found, each printed as
`path:line: field: message`; the caller keeps the last good revision in force.

What is read at all is decided here too, from a listing of the tree (`survey`: which paths are fleet files,
which are the reconciler's record, which are errors, which are ignored) and from the bytes of each file
(`decode_text`), so the daemon reading git objects and `grayops validate` reading a working tree apply the same
rules (README "Limits"). A reader hands `load_fleet` a `RevisionFiles`: the texts it could read and the errors of
the files it refused to read. Errors are root causes: a file that could not be read or parsed does not also
produce "no policy named" or "no plugin named" in the files that refer to it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, cast, get_args, get_origin

from pydantic import BaseModel, ValidationError

from reconciler.core import foreign, yamlpos
from reconciler.core.layout import (
    ACCESS_PATH,
    ANALYSIS_DIRECTORY,
    DIRECTORY_KINDS,
    FLEET_DIRECTORIES,
    RECORD_DIRECTORIES,
    SETTINGS_PATH,
    YAML_SUFFIXES,
)
from reconciler.core.plan import matches
from reconciler.core.spec import (
    FILE_KINDS,
    Access,
    AckRecord,
    AdapterModels,
    ApprovalRecord,
    Approvals,
    Plugin,
    Policy,
    PolicySpec,
    RetryRecord,
    Settings,
    Strict,
    is_union_tag,
    picks,
    settings_model,
)

# Limits on what a revision can make grayops read (README "Limits").
MAX_FILE_BYTES = 1 << 20  # one fleet file (grayops.yaml, a plugin, a policy, ...)
MAX_REVISION_BYTES = 32 << 20  # every fleet file of a revision together
MAX_RECORD_BYTES = 64 << 20  # one status file or report, written by grayops (large fleets have large ones)


@dataclass(frozen=True, order=True)
class FleetError:
    """One problem; `line` 0 is a problem with the file as a whole (what it is, its name, its size)."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = show_path(self.path) + (f":{self.line}" if self.line else "")
        what = f"{_escaped(self.field)}: " if self.field else ""
        return f"{where}: {what}{_escaped(self.message)}"


def show_path(path: str) -> str:
    """A path as printed in a message: quoted and escaped like a Python literal when it has control characters,
    so a file name can never split a log line or an alert (or forge a line of its own)."""
    return path if path.isprintable() else repr(path)


def _escaped(text: str) -> str:
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
    retries: Mapping[str, tuple[RetryRecord, ...]] = field(default_factory=dict)  # `grayops retry` records
    acks: Mapping[str, tuple[AckRecord, ...]] = field(default_factory=dict)  # acknowledged alerts, by plugin


# --- what a revision's tree holds, and what of it is read ------------------------------------------------


class EntryKind(StrEnum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    SUBMODULE = "submodule"
    FIFO = "FIFO"
    SOCKET = "socket"
    DEVICE = "device"


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a revision's tree (a git tree entry, or a working tree's lstat), never followed."""

    path: str
    kind: EntryKind
    size: int = 0  # bytes, for files


@dataclass(frozen=True)
class Survey:
    desired: tuple[TreeEntry, ...]  # fleet files to read, within the limits
    records: tuple[TreeEntry, ...]  # status/ and reports/ files (the reconciler's record)
    errors: tuple[FleetError, ...]  # entries that refuse the revision


_KIND_MESSAGES = {
    EntryKind.SYMLINK: "symlinks are not allowed in a fleet repository",
    EntryKind.SUBMODULE: "submodules are not allowed in a fleet repository",
}
_RECORD_NAMES = tuple(d.rstrip("/") for d in RECORD_DIRECTORIES)
_TOP_DIRECTORIES = (*FLEET_DIRECTORIES, *_RECORD_NAMES)


def survey(entries: Iterable[TreeEntry]) -> Survey:
    """Sort a tree's entries into fleet files to read, record files, errors and the rest (ignored).

    Names starting with a dot are ignored (.git, .github/, .gitlab-ci.yml, editor files), as are files that are
    not YAML outside the record. Everything under the fleet and record directories must be a regular file or a
    directory; YAML is read only from the top (grayops.yaml, access.yaml) and directly inside plugins/,
    policies/, approvals/ and analysis/: YAML anywhere else is an error naming the file, never silently skipped.
    """
    desired: list[TreeEntry] = []
    records: list[TreeEntry] = []
    errors: list[FleetError] = []
    stems: dict[tuple[str, str], str] = {}
    total = 0
    for entry in sorted(entries, key=lambda e: e.path):
        path, parts = entry.path, entry.path.split("/")
        if any(part.startswith(".") for part in parts) or entry.kind is EntryKind.DIRECTORY:
            continue
        if not path.isprintable():
            errors.append(FleetError(path, 0, "", "control characters are not allowed in file names"))
            continue
        problem = _misplaced(entry, parts)
        if problem is not None:
            errors.append(FleetError(path, 0, "", problem))
            continue
        if parts[0] in _RECORD_NAMES:
            records.append(entry)
            continue
        if not path.endswith(YAML_SUFFIXES) or (len(parts) == 1 and path not in (SETTINGS_PATH, ACCESS_PATH)):
            continue
        if entry.size > MAX_FILE_BYTES:
            errors.append(FleetError(path, 0, "", f"{entry.size} bytes, over the {_mib(MAX_FILE_BYTES)} limit of "
                                                  "a fleet file"))
            continue
        if len(parts) == 2:
            first = stems.setdefault((parts[0], parts[1].rsplit(".", 1)[0]), path)
            if first != path:
                errors.append(FleetError(path, 0, "", f"{show_path(first)} is there too: keep one of them"))
                desired = [e for e in desired if e.path != first]
                continue
        total += entry.size
        if total > MAX_REVISION_BYTES:
            errors.append(FleetError(path, 0, "", f"the fleet files reach {total} bytes with this one, over the "
                                                  f"{_mib(MAX_REVISION_BYTES)} limit of a revision"))
            continue
        desired.append(entry)
    return Survey(tuple(desired), tuple(records), tuple(errors))


def _misplaced(entry: TreeEntry, parts: list[str]) -> str | None:
    """Why an entry refuses the revision where it is (None: it is fine there, read or ignored)."""
    top, is_yaml = parts[0], entry.path.endswith(YAML_SUFFIXES)
    if top in _TOP_DIRECTORIES:
        if len(parts) == 1:
            return _KIND_MESSAGES.get(entry.kind, f"must be a directory, not a {entry.kind}")
        if entry.kind is not EntryKind.FILE:
            return _not_a_file(entry.kind)
        if top in FLEET_DIRECTORIES and len(parts) > 2 and is_yaml:
            return f"not read: {top}/ holds its files directly, not in subdirectories"
        return None
    if len(parts) == 1:
        if entry.path in (SETTINGS_PATH, ACCESS_PATH):
            return _not_a_file(entry.kind) if entry.kind is not EntryKind.FILE else None
        if is_yaml:
            return ("not read: the only YAML files at the top are grayops.yaml and access.yaml"
                    + _did_you_mean(entry.path, (SETTINGS_PATH, ACCESS_PATH)))
        return None
    if is_yaml:
        dirs = ", ".join(f"{d}/" for d in FLEET_DIRECTORIES)
        records = " and ".join(RECORD_DIRECTORIES)
        return f"not read: YAML outside {dirs}, {records}" + _did_you_mean(top, FLEET_DIRECTORIES, suffix="/")
    return None


def _not_a_file(kind: EntryKind) -> str:
    return _KIND_MESSAGES.get(kind, f"{kind}s are not allowed in a fleet repository")


def _did_you_mean(word: str, choices: Iterable[str], suffix: str = "") -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}{suffix}?)" if close else ""


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def decode_text(path: str, data: bytes) -> str | FleetError:
    """A file's bytes as text, or the error that says where it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        return FleetError(path, line, "file", f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})")


class RevisionFiles(dict[str, str]):
    """A revision as read: path -> text of the files that could be read, and the errors of those that could not
    (a symlink, a file over the limits, bytes that are not UTF-8...). `load_fleet` reports those errors too."""

    def __init__(self, files: Mapping[str, str], errors: Iterable[FleetError] = ()) -> None:
        super().__init__(files)
        self.errors = tuple(sorted(set(errors)))
        # Equal for two readings of the same content; taken once, as a reader returns what it read unchanged.
        self.key = hash((tuple(sorted(self.items())), self.errors))


# --- loading -----------------------------------------------------------------------------------------------


_FileKey = tuple[str, str, type[Strict]]  # path, text, model
_ParsedFile = tuple[Strict | None, yamlpos.Located | None, tuple[FleetError, ...]]  # model, lines, errors


class Parsed:
    """The plugin, policy and approvals files of the last revision loaded with it, as parsed (by path, text and
    model): loading the next revision parses only the files that changed, not 10,000 plugin files again for one
    pause (README "Sizing"). Holds one revision's files at most; not shared between threads."""

    def __init__(self) -> None:
        self._last: dict[_FileKey, _ParsedFile] = {}
        self._now: dict[_FileKey, _ParsedFile] = {}

    def parse(self, path: str, text: str, model: type[M], errors: list[FleetError],
              located: dict[str, yamlpos.Located]) -> M | None:
        """What `_parse` gives, from the last revision when the file is the same."""
        key: _FileKey = (path, text, model)
        found = self._now.get(key) or self._last.get(key)
        if found is None:
            mine: list[FleetError] = []
            found = (_parse(path, text, model, mine, located), located.get(path), tuple(mine))
        self._now[key] = found
        if found[1] is not None:
            located[path] = found[1]
        errors.extend(found[2])
        return cast(M | None, found[0])

    def loaded(self) -> None:
        """A revision is loaded: keep its files only."""
        self._last, self._now = self._now, {}


def load_fleet(files: Mapping[str, str], builtin_policies: Mapping[str, str] | None = None, *,
               adapters: AdapterModels, parsed: Parsed | None = None) -> Fleet:
    """Parse and cross-check a revision. `builtin_policies` maps a policy name to its YAML text; `adapters` are
    the registry's settings models, which grayops.yaml's clusters, metrics and notifiers are validated with.

    `files` maps paths to texts; a `RevisionFiles` also brings the errors of the files its reader refused.
    `parsed`: the files of the last revision loaded with it, not parsed again when they are the same.
    """
    try:
        return _load_fleet(files, builtin_policies, adapters, parsed)
    finally:
        if parsed is not None:
            parsed.loaded()


def _load_fleet(files: Mapping[str, str], builtin_policies: Mapping[str, str] | None, adapters: AdapterModels,
                cache: Parsed | None) -> Fleet:
    errors: list[FleetError] = list(files.errors) if isinstance(files, RevisionFiles) else []
    builtins: dict[str, PolicySpec] = {}
    for name, text in (builtin_policies or {}).items():
        policy = _parse(f"<builtin>/{name}.yaml", text, Policy, errors, {})
        if policy is not None:
            builtins[name] = policy.spec

    settings: Settings | None = None
    access: Access | None = None
    plugins: dict[str, Plugin] = {}
    policies: dict[str, PolicySpec] = {}
    approvals: dict[str, tuple[ApprovalRecord, ...]] = {}
    retries: dict[str, tuple[RetryRecord, ...]] = {}
    acks: dict[str, tuple[AckRecord, ...]] = {}
    plugin_paths: dict[str, str] = {}
    policy_paths: dict[str, str] = {}
    approval_paths: dict[str, str] = {}
    templates: dict[tuple[str, str], _Found] = {}  # (kind, name) -> where and what

    found = survey(TreeEntry(path, EntryKind.FILE, len(text.encode("utf-8", "surrogatepass")))
                   for path, text in files.items())
    errors.extend(found.errors)
    if SETTINGS_PATH not in files and not any(e.path == SETTINGS_PATH for e in errors):
        errors.append(FleetError(SETTINGS_PATH, 1, "file", "missing: every fleet repository needs grayops.yaml"))
    located: dict[str, yamlpos.Located] = {}
    for entry in found.desired:
        path = entry.path
        text = files[path]
        directory, _, filename = path.rpartition("/")
        stem = filename.rsplit(".", 1)[0]
        if path == SETTINGS_PATH:
            settings = _parse(path, text, settings_model(adapters), errors, located)
        elif path == ACCESS_PATH:
            access = _parse(path, text, Access, errors, located)
        elif directory == ANALYSIS_DIRECTORY:
            _read_template(path, text, templates, errors)
        elif directory in DIRECTORY_KINDS:
            model = FILE_KINDS[DIRECTORY_KINDS[directory]]
            parsed = (cache.parse if cache else _parse)(path, text, model, errors, located)
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
                if parsed.retries:
                    retries[name] = tuple(parsed.retries)
                if parsed.acks:
                    acks[name] = tuple(parsed.acks)

    # Files that failed above are the root causes: what refers to them is not reported missing as well.
    broken = _broken_names(errors)
    for name, path in policy_paths.items():
        policies[name] = _resolve_templates(policies[name], path, located[path], templates,
                                            (ANALYSIS_DIRECTORY, "*") in broken, errors)
    known_policies = {**builtins, **policies}
    for name, plugin in plugins.items():
        _check_plugin(plugin, plugin_paths[name], located[plugin_paths[name]], plugins, known_policies, broken,
                      errors)
    if settings is not None:
        errors.extend(_unmeasured_metrics(settings, plugins, known_policies, policy_paths, located))
        errors.extend(_empty_selections(settings, plugins, plugin_paths, located))
    errors.extend(_dependency_cycles(plugins, plugin_paths, located))
    if ACCESS_PATH not in {e.path for e in errors}:
        errors.extend(_unknown_owners(plugins, access, plugin_paths, located))
    for name, path in approval_paths.items():
        if name not in plugins and ("plugins", name) not in broken:
            errors.append(FleetError(path, 1, "metadata.name", f"no plugin named {name!r} (plugins/{name}.yaml)"))

    if errors or settings is None:
        raise FleetInvalid(errors)
    return Fleet(settings, plugins, known_policies, access, approvals, plugin_paths, policy_paths, retries, acks)


def _broken_names(errors: Iterable[FleetError]) -> set[tuple[str, str]]:
    """(directory, name) of every fleet file with an error of its own; ("analysis", "*") when any template has one."""
    broken: set[tuple[str, str]] = set()
    for error in errors:
        parts = error.path.split("/")
        if len(parts) >= 2 and parts[0] in FLEET_DIRECTORIES:
            broken.add((parts[0], parts[-1].rsplit(".", 1)[0]))
            if parts[0] == ANALYSIS_DIRECTORY:
                broken.add((ANALYSIS_DIRECTORY, "*"))
    return broken


M = TypeVar("M", bound=Strict)


def _parse(path: str, text: str, model: type[M], errors: list[FleetError],
           parsed: dict[str, yamlpos.Located]) -> M | None:
    try:
        located = parsed[path] = yamlpos.load(text)
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
            message = _message(model, located, loc, detail)
            errors.append(FleetError(path, located.line_of(loc), _format_loc(loc), message))
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


def _message(model: type[BaseModel], located: yamlpos.Located, loc: tuple[str | int, ...], detail: Any) -> str:
    kind = detail["type"]
    if kind == "unquoted_version":  # echo the version as written: YAML reads 1.10 as the number 1.1
        written, read_as = located.unquoted.get(loc, (str(detail["input"]), "something else"))
        return f'version {written} must be quoted, as in "{written}" (unquoted, YAML reads it as {read_as})'
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, located.data, loc[:-1])
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
    lines: yamlpos.Located,
    plugins: Mapping[str, Plugin],
    policies: Mapping[str, PolicySpec],
    broken: set[tuple[str, str]],
    errors: list[FleetError],
) -> None:
    spec = plugin.spec
    if spec.policy not in policies and ("policies", spec.policy) not in broken:
        known = ", ".join(sorted(policies)) or "none"
        errors.append(
            FleetError(path, lines.line_of(("spec", "policy")), "spec.policy",
                       f"no policy named {spec.policy!r} (known: {known})")
        )
    for index, dependency in enumerate(spec.depends_on):
        if dependency == plugin.metadata.name:
            errors.append(FleetError(path, lines.line_of(("spec", "dependsOn", index)),
                                     f"spec.dependsOn[{index}]", "a plugin cannot depend on itself"))
        elif dependency not in plugins and ("plugins", dependency) not in broken:
            errors.append(FleetError(path, lines.line_of(("spec", "dependsOn", index)),
                                     f"spec.dependsOn[{index}]", f"no plugin named {dependency!r}"))


def _unknown_owners(plugins: Mapping[str, Plugin], access: Access | None, plugin_paths: Mapping[str, str],
                    located: Mapping[str, yamlpos.Located]) -> list[FleetError]:
    """Each owner is the name of one of access.yaml's people (README "Owners and escalation")."""
    people = {" ".join(p.name.split()).casefold(): p.name for p in (access.people if access else [])}
    errors: list[FleetError] = []
    for name, plugin in sorted(plugins.items()):
        for index, person in enumerate(plugin.spec.owners):
            if " ".join(person.split()).casefold() not in people:
                path = plugin_paths[name]
                known = ", ".join(people.values()) or "none"
                errors.append(FleetError(path, located[path].line_of(("spec", "owners", index)),
                                         f"spec.owners[{index}]",
                                         f"{person!r} is not a name of access.yaml's people: (listed: {known})"))
    return errors


def _dependency_cycles(
    plugins: Mapping[str, Plugin], paths: Mapping[str, str], located: Mapping[str, yamlpos.Located]
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
                    line = located[paths[start]].line_of(("spec", "dependsOn"))
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


def _resolve_templates(policy: PolicySpec, path: str, lines: yamlpos.Located,
                       templates: Mapping[tuple[str, str], _Found], templates_broken: bool,
                       errors: list[FleetError]) -> PolicySpec:
    """The policy with the metrics of the foreign templates it references added to its analysis."""
    refs = policy.analysis.templates
    if not refs:
        return policy
    metrics = list(policy.analysis.metrics)
    for index, ref in enumerate(refs):
        loc: tuple[str | int, ...] = ("spec", "analysis", "templates", index)
        found = templates.get((ref.kind, ref.name))
        if found is None and templates_broken:
            continue  # the template may be the one that failed: its own error says so
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


def _unmeasured_metrics(settings: Settings, plugins: Mapping[str, Plugin], policies: Mapping[str, PolicySpec],
                        policy_paths: Mapping[str, str], located: Mapping[str, yamlpos.Located]) -> list[FleetError]:
    """Every metric a plugin's policy judges must be one the provider measures: with prometheus a query, with sim
    one of the sim's metrics (any other would never have data, and every bake would wait for it): the provider's
    settings say which (`missing_query`)."""
    errors: list[FleetError] = []
    used = sorted({p.spec.policy for p in plugins.values() if p.spec.policy in policies})
    for name in used:
        for index, metric in enumerate(policies[name].analysis.metrics):
            message = settings.metrics.missing_query(metric)
            if message is None:
                continue
            path = policy_paths.get(name, SETTINGS_PATH)
            line = located[path].line_of(("spec", "analysis", "metrics", index)) if path in located else 1
            errors.append(FleetError(path, line, f"spec.analysis.metrics[{index}].name", message))
    return errors


def _empty_selections(settings: Settings, plugins: Mapping[str, Plugin], plugin_paths: Mapping[str, str],
                      located: Mapping[str, yamlpos.Located]) -> list[FleetError]:
    """A plugin whose targets select no cluster would "succeed" on no instance: an error, with what there is."""
    errors: list[FleetError] = []
    clusters = settings.clusters
    for name, plugin in sorted(plugins.items()):
        targets = plugin.spec.targets
        if any(matches(targets, cluster.labels) for cluster in clusters):
            continue
        wanted = " and ".join(f"{key} {' or '.join(values) or '(no value listed)'}" for key, values in targets.items())
        have = "; ".join(f"{key} {', '.join(values)}" if values else f"no label {key}"
                         for key in targets
                         for values in [sorted({c.labels[key] for c in clusters if key in c.labels})])
        path = plugin_paths[name]
        errors.append(FleetError(path, located[path].line_of(("spec", "targets")), "spec.targets",
                                 f"selects no cluster: no cluster in grayops.yaml has {wanted} (clusters have {have})"))
    return errors
