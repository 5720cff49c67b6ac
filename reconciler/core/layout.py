"""Where everything is in a fleet repository (README "The fleet repository (format v1)"): the one module that
knows its paths.

People own grayops.yaml, access.yaml and the files of plugins/, policies/, approvals/ and analysis/; the
reconciler owns its record, status/ and reports/, kept on the branch grayops.yaml's `status.branch` names (else
the desired-state branch). Everything else builds paths with these functions and reads them back with them.
"""

from __future__ import annotations

from reconciler.core import yamlpos

SETTINGS_PATH = "grayops.yaml"
ACCESS_PATH = "access.yaml"
# Directory -> the kind its files must hold.
DIRECTORY_KINDS = {"plugins": "Plugin", "policies": "Policy", "approvals": "Approvals"}
# Foreign analysis templates (Argo Rollouts, Flagger), kept unchanged; policies reference them.
ANALYSIS_DIRECTORY = "analysis"
FLEET_DIRECTORIES = (*DIRECTORY_KINDS, ANALYSIS_DIRECTORY)
# Written by the reconciler only; never part of the desired state.
RECORD_DIRECTORIES = ("status/", "reports/")
YAML_SUFFIXES = (".yaml", ".yml")
STATUS_DIRECTORY, REPORTS_DIRECTORY = "status/", "reports/"
# The directories whose files belong to one plugin each: <dir>/<plugin>.yaml, or reports/<plugin>/...
_PLUGIN_DIRECTORIES = ("plugins", "status", "approvals", "reports")


def plugin_files(plugin: str) -> tuple[str, ...]:
    """The paths the plugin's own file may have (either suffix)."""
    return tuple(f"plugins/{plugin}{suffix}" for suffix in YAML_SUFFIXES)


def plugin_of(path: str) -> str | None:
    """The plugin whose own file `path` is (plugins/<plugin>.yaml or .yml), else None."""
    top, _, name = path.partition("/")
    stem, dot, suffix = name.rpartition(".")
    return stem if top == "plugins" and stem and dot and f".{suffix}" in YAML_SUFFIXES and "/" not in stem else None


def approvals_files(plugin: str) -> tuple[str, ...]:
    """The paths the plugin's approvals file may have (either suffix); `approvals_path` is the one grayops writes."""
    return tuple(f"approvals/{plugin}{suffix}" for suffix in YAML_SUFFIXES)


def approvals_path(plugin: str) -> str:
    return f"approvals/{plugin}.yaml"


def status_path(plugin: str) -> str:
    return f"{STATUS_DIRECTORY}{plugin}.yaml"


def status_plugin(path: str) -> str | None:
    """The plugin whose status `path` is (status/<plugin>.yaml, or .yml by hand), else None."""
    suffix = next((s for s in YAML_SUFFIXES if path.endswith(s)), None)
    if not path.startswith(STATUS_DIRECTORY) or suffix is None:
        return None
    name = path[len(STATUS_DIRECTORY):-len(suffix)]
    return name if name and "/" not in name else None


def reports_of(plugin: str) -> str:
    """The directory of the plugin's reports, as a path prefix."""
    return f"{REPORTS_DIRECTORY}{plugin}/"


def report_path(plugin: str, version: str, rollout_id: str) -> str:
    return f"{reports_of(plugin)}{version}-{rollout_id}.md"


def is_record(path: str) -> bool:
    """A path of the reconciler's record (status/ or reports/)."""
    return path.startswith(RECORD_DIRECTORIES)


def owner(path: str) -> str | None:
    """The plugin a path belongs to (plugins/, status/ or approvals/<plugin>.yaml, reports/<plugin>/...), else None."""
    top, _, rest = path.partition("/")
    if top not in _PLUGIN_DIRECTORIES or not rest:
        return None
    first = rest.split("/", 1)[0]
    return first if top == "reports" else first.rsplit(".", 1)[0]


def status_branch(settings_text: str | None) -> str | None:
    """`status.branch` of grayops.yaml as written, read before the revision is validated (so the record is found
    even at a refused revision); None when unset or unreadable."""
    if not settings_text:
        return None
    try:
        doc = yamlpos.load(settings_text).data
    except yamlpos.YamlSyntaxError:
        return None
    status = doc.get("status") if isinstance(doc, dict) else None
    branch = status.get("branch") if isinstance(status, dict) else None
    return branch if isinstance(branch, str) and branch else None
