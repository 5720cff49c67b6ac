"""`-o/--output` on status, plan, report, history and validate (README "The CLI"): each command's json is checked
against a JSON Schema of what it promises, yaml is the same document, and keys are camelCase everywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import Human, grayops, plugin_yaml
from tests.e2e.test_run import run_once, seed

TEXT = {"type": "string"}
NULLABLE = {"type": ["string", "null"]}


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or list(properties)}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


STATUS = {"type": "object", "additionalProperties": obj(
    {"apiVersion": {"const": "grayops.dev/v1"}, "kind": {"const": "Status"}, "plugin": TEXT, "phase": TEXT,
     "targetVersion": TEXT, "fromVersion": NULLABLE, "rolloutId": TEXT, "reason": TEXT, "batches": {"type": "array"},
     "instances": {"type": "object"}})}
PLAN = obj({"plugins": array(obj(
    {"plugin": TEXT, "fromVersion": NULLABLE, "toVersion": TEXT, "policy": TEXT, "instances": {"type": "integer"},
     "batches": array(obj({"name": TEXT, "instances": array(TEXT), "bake": TEXT, "approval": {"type": "boolean"}})),
     "gates": array(TEXT), "shortestSeconds": {"type": "number"}, "paused": {"type": "boolean"},
     "changes": array(TEXT), "already": {"type": "integer"}, "scan": {"type": ["object", "null"]}}))})
REPORT = obj({"plugin": TEXT, "path": TEXT, "report": TEXT})
REPORT_LIST = obj({"plugin": TEXT, "reports": array(TEXT)})
HISTORY = obj({"plugin": TEXT, "rollouts": array(obj(
    {"finished": TEXT, "started": TEXT, "took": TEXT, "version": TEXT, "result": TEXT, "operator": TEXT,
     "note": TEXT, "path": TEXT}))})
VALIDATE = array(obj({"file": TEXT, "line": {"type": "integer"}, "field": TEXT, "message": TEXT}))


def shown(*args: str, code: int = 0) -> Any:
    """The json document a command prints, after checking its yaml is the same document."""
    as_json = grayops(*args, "-o", "json")
    assert as_json.returncode == code, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert yaml.safe_load(grayops(*args, "-o", "yaml").stdout) == doc
    return doc


METRICS = {"error_rate", "latency_p99_ms"}  # the policy's metric names: names the user chose, not keys of ours


def snake_keys(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        own = [k for k in doc if re.search(r"_[a-z]", k) and k not in METRICS]
        return own + [k for v in doc.values() for k in snake_keys(v)]
    if isinstance(doc, list):
        return [k for v in doc for k in snake_keys(v)]
    return []


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Human:
    """A fleet whose billing rolled out 1.5.0, then rolled 1.6.0 back."""
    from tests.conftest import make_fleet_repo

    root = tmp_path_factory.mktemp("output")
    human = make_fleet_repo(root)
    seed(human, "1.5.0")
    run_once(human, root / "work")
    human.pull()
    human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
    run_once(human, root / "work")
    human.pull()
    return human


def test_every_json_output_matches_its_schema_in_camel_case(finished: Human) -> None:
    repo = ("--repo", str(finished.clone))
    documents = {
        "status": (shown("status", *repo), STATUS),
        "plan": (shown("plan", *repo), PLAN),
        "report": (shown("report", "billing", *repo), REPORT),
        "report --list": (shown("report", "billing", "--list", *repo), REPORT_LIST),
        "history": (shown("history", "billing", *repo), HISTORY),
        "validate": (shown("validate", str(finished.clone)), VALIDATE),
    }
    for name, (doc, schema) in documents.items():
        jsonschema.validate(doc, schema)
        assert snake_keys(doc) == [], name
    history = documents["history"][0]["rollouts"]
    assert [(r["version"], r["result"]) for r in history] == [("1.5.0 -> 1.6.0", "RolledBack"),
                                                             ("(none) -> 1.5.0", "Succeeded")]
    assert documents["status"][0]["billing"]["phase"] == "RolledBack"


def test_validate_json_gives_one_item_per_error_for_ci_annotations(tmp_path: Path, finished: Human) -> None:
    broken = tmp_path / "fleet"
    for path in ("grayops.yaml", "policies/fast.yaml"):
        (broken / path).parent.mkdir(parents=True, exist_ok=True)
        (broken / path).write_text((finished.clone / path).read_text())
    (broken / "plugins").mkdir()
    (broken / "plugins/billing.yaml").write_text(plugin_yaml("billing", "1.5.0", policy="fsat"))
    items = shown("validate", str(broken), code=1)
    jsonschema.validate(items, VALIDATE)
    assert [(i["file"], i["line"], i["field"]) for i in items] == [("plugins/billing.yaml", 6, "spec.policy")]


def test_text_tables_have_a_header_and_aligned_columns(finished: Human) -> None:
    lines = grayops("history", "billing", "--repo", str(finished.clone)).stdout.splitlines()
    assert lines[0].split() == ["FINISHED", "VERSION", "RESULT", "OPERATOR", "TOOK"]
    starts = {line.index("RolledBack" if "RolledBack" in line else "Succeeded") for line in lines[1:]}
    assert len(lines) == 3 and starts == {lines[0].index("RESULT")}
    wide = grayops("history", "billing", "--repo", str(finished.clone), "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-2:] == ["NOTE", "REPORT"] and "reports/billing/" in wide[1]
    markdown = grayops("status", "--repo", str(finished.clone), "-o", "markdown").stdout.splitlines()
    assert markdown[0] == "| Plugin | Version | Phase | Batch | Instances | Reason |"
    assert markdown[2].startswith("| billing | 1.5.0 -> 1.6.0 | RolledBack |")


def on_a_terminal(*args: str, env: dict[str, str] | None = None) -> str:
    """What grayops prints to a terminal (a pseudo-terminal of 200 columns), colour codes included."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "GRAYOPS_REPO")} | (env or {})
    environment["TERM"] = "xterm-256color"
    process = subprocess.Popen([str(Path(sys.executable).parent / "grayops"), *args], stdout=follower,
                               stderr=subprocess.DEVNULL, env=environment)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal is closed once the command exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode()


def test_status_on_a_terminal_is_a_table_with_colour_unless_no_color(finished: Human) -> None:
    coloured = on_a_terminal("status", "--repo", str(finished.clone))
    plain = re.sub(r"\x1b\[[0-9;]*m", "", coloured).splitlines()
    assert plain[0].split() == ["PLUGIN", "PHASE", "VERSION", "BATCH", "INSTANCES", "NOTE"]
    assert plain[1].split()[:3] == ["billing", "↺", "RolledBack"]
    assert "\x1b[31m↺ RolledBack" in coloured  # red: rolled back
    muted = on_a_terminal("status", "--repo", str(finished.clone), env={"NO_COLOR": "1"})
    assert not re.search(r"\x1b\[(3[0-9]|9[0-7])m", muted) and "↺ RolledBack" in muted
