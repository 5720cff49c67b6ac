"""The habits of command-line tools (README "The CLI"): every command described in its --help, `version`, shell
completion that a real bash runs, --repo taken from GRAYOPS_REPO or the clone one stands in, `validate FILE...`."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path

import yaml

from reconciler import __version__
from reconciler.cli.main import build_parser
from tests.conftest import FAST_POLICY, Human, grayops, plugin_yaml, remote_file, settings_yaml
from tests.e2e.test_run import TIERS, run_once

FLEET = {"grayops.yaml": settings_yaml(TIERS), "policies/fast.yaml": FAST_POLICY,
         "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")}


def test_every_command_describes_itself_in_its_help() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "cmd").choices
    assert commands is not None
    undescribed = [name for name, command in dict(commands).items() if not (command.description or "").strip()]
    assert undescribed == []
    shown = grayops("status", "--help")
    assert "Show rollouts: phase, batch, instances, last reason." in shown.stdout


def test_version_says_grayops_git_and_python() -> None:
    assert grayops("version", "--short").stdout.strip() == __version__
    versions = json.loads(grayops("version", "--json").stdout)
    assert versions["grayops"] == __version__
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert versions["git"][0].isdigit()


def complete(line: str, tmp_path: Path) -> list[str]:
    """What bash offers after `line`, with the script `grayops completion bash` prints sourced."""
    (tmp_path / "grayops").write_text(f"#!/bin/sh\nexec {sys.executable} -m reconciler.cli \"$@\"\n")
    (tmp_path / "grayops").chmod(0o755)
    script = grayops("completion", "bash").stdout
    words = line.split(" ")
    probe = (f"{script}\nCOMP_LINE={line!r}; COMP_POINT={len(line)}; COMP_WORDS=({' '.join(map(repr, words))}); "
             f"COMP_CWORD={len(words) - 1}; _python_argcomplete grayops {words[-1]!r} {words[-2]!r}; "
             "printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)})
    return [word.strip() for word in done.stdout.splitlines() if word.strip()]


def test_bash_completes_commands_and_options(tmp_path: Path) -> None:
    assert complete("grayops pa", tmp_path) == ["pause"]
    assert set(complete("grayops st", tmp_path)) == {"status"}
    assert "--reason" in complete("grayops pause billing --re", tmp_path)
    for shell in ("zsh", "fish"):
        script = grayops("completion", shell)
        assert script.returncode == 0 and "grayops" in script.stdout
    assert grayops("completion", "tcsh").returncode == 2


def test_repo_defaults_to_the_clone_one_stands_in(fleet_repo: Human, tmp_path: Path) -> None:
    human = fleet_repo
    human.commit("fleet: billing 1.5.0", FLEET)
    paused = grayops("pause", "billing", "--reason", "incident 42", "--as", "alice", cwd=human.clone)
    assert paused.returncode == 0, paused.stderr
    remote_plugin = remote_file(human, "plugins/billing.yaml")
    assert remote_plugin is not None and yaml.safe_load(remote_plugin)["spec"]["paused"] is True
    plan = grayops("plan", "--format", "json", cwd=human.clone / "plugins")  # any directory of the clone
    assert plan.returncode == 0, plan.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = grayops("resume", "billing", "--as", "alice", cwd=elsewhere, env={"GRAYOPS_REPO": str(human.remote)})
    assert resumed.returncode == 0, resumed.stderr
    remote_plugin = remote_file(human, "plugins/billing.yaml")
    assert remote_plugin is not None and yaml.safe_load(remote_plugin)["spec"].get("paused") is False

    lost = grayops("pause", "billing", cwd=elsewhere)
    assert lost.returncode == 2  # a usage error: nothing says where to act
    assert lost.stderr.splitlines() == [f"grayops: no --repo given, GRAYOPS_REPO is not set and {elsewhere} is not "
                                        "in a git clone"]


def test_approve_defaults_to_the_login_name(fleet_repo: Human, tmp_path: Path) -> None:
    human = fleet_repo
    gated = FAST_POLICY.replace("{name: all, size: 100%, bake: 300ms}", "{name: all, size: 100%, bake: 300ms, "
                                                                         "approval: true}")
    human.commit("fleet: billing 1.5.0", FLEET | {"policies/fast.yaml": gated})
    run_once(human, tmp_path / "work")  # until the last batch awaits its approval
    approved = grayops("approve", "billing", "--batch", "all", "--repo", str(human.remote))
    assert approved.returncode == 0, approved.stderr
    assert f"Requested-By: {getpass.getuser()}" in human.log("-1", "--format=%B")


def broken_fleet(root: Path) -> None:
    for path, text in (FLEET | {"plugins/auth.yaml": plugin_yaml("auth", "2.0.0", policy="fsat")}).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def test_validate_takes_files_and_judges_each_with_its_fleet(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    broken_fleet(fleet)
    (fleet / "plugins/auth.yaml").write_text(plugin_yaml("auth", "2.0.0"))
    done = grayops("validate", "plugins/billing.yaml", "plugins/auth.yaml", cwd=fleet)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"ok: 2 plugin(s), 1 policy file(s), {sum(TIERS.values())} cluster(s)"]

    (fleet / "plugins/auth.yaml").write_text(plugin_yaml("auth", "2.0.0", policy="fsat"))
    done = grayops("validate", str(fleet / "plugins" / "billing.yaml"))
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["plugins/auth.yaml:6: spec.policy: no policy named 'fsat' (known: "
                                        "all-at-once, canary-waves, fast, rolling)",
                                        "1 error(s); the revision would be refused"]

    stray = tmp_path / "stray.yaml"
    stray.write_text(plugin_yaml("auth", "2.0.0"))
    done = grayops("validate", str(stray))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"grayops: {stray} is in no fleet repository (no grayops.yaml in its "
                                        "directory or above it)"]
