"""The command as a user meets it: help that explains, the schema in step with the models, the demo."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from policies import schema_text
from reconciler.cli import full_registry
from reconciler.core.schema import fleet_schema_text
from tests.conftest import grayops


def test_help_lists_every_command_with_examples() -> None:
    done = grayops("--help")
    assert done.returncode == 0
    for command in ("run", "status", "pause", "resume", "rollback", "approve", "report", "plan", "validate", "demo"):
        assert re.search(rf"^\s+{command}\s+\S", done.stdout, flags=re.M), command
    assert "examples:" in done.stdout


def test_run_help_explains_once() -> None:
    text = " ".join(grayops("run", "--help").stdout.split())
    assert "--once exit once nothing is progressing" in text and "awaiting approval" in text


def test_the_shipped_schema_is_generated_from_the_models() -> None:
    assert schema_text() == fleet_schema_text(full_registry().models), "run `grayops schema --write`"
    assert grayops("schema", "--check").returncode == 0


def test_the_demo_rolls_back_a_bad_version_and_shows_the_record(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run([sys.executable, "-m", "reconciler.cli", "demo", "--keep", str(tmp_path / "demo"),
                           "--no-progress"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "billing is RolledBack" in out and "the fleet runs: 1.5.0" in out
    assert re.search(r"^[0-9a-f]{7} billing: revert billing to 1.5.0: 1.6.0 was rolled back$", out, flags=re.M)
    assert out.count("reports/billing/") == 3
    assert (tmp_path / "demo" / "fleet.git").is_dir()


def test_the_secure_demo_refuses_an_unsigned_version_and_rolls_out_a_signed_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = grayops("demo", "--secure", "--keep", str(tmp_path / "demo"), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    out, logged = done.stdout, done.stderr
    unsigned = re.search(r"^([0-9a-f]{7}) N \(unsigned\) +Mallory +billing: upgrade to 1.6.0", out, flags=re.M)
    assert unsigned, out
    assert re.search(rf"ALERT untrusted_revision \(critical\): revision {unsigned[1]}[0-9a-f]* refused.*untrusted: "
                     rf"commit {unsigned[1]}[0-9a-f]* by Mallory <mallory@example.com>: unsigned", logged), logged
    assert "the fleet stayed on 1.4.0" in out and "billing is Succeeded at 1.5.0; the fleet runs: 1.5.0" in out
    assert re.search(r"^[0-9a-f]{7} G alice@example.com +Alice Ops +billing: upgrade to 1.5.0", out, flags=re.M)
    assert re.search(r"^and \d+ records by grayops, signed: G grayops@example.com$", out, flags=re.M)
    assert "1.6.0 Pending" not in logged and "-> 1.6.0" not in logged  # never started
    # the artifact part (docker-registry is installed where the tests run): each version's image verified, and
    # Alice's signed 1.7.0, whose image nobody signed, held with nothing touched
    pinned = re.search(r"^billing 1.5.0 runs as (127\.0\.0\.1:(\d+))/plugins/billing@sha256:[0-9a-f]{64}, its "
                       r"signature verified with sha256:[0-9a-f]{16} \(cosign.pub\)$", out, flags=re.M)
    assert pinned, out
    assert (f"billing 1.7.0 is Pending, waiting for the artifact gate (artifact_untrusted: no signature: "
            f"{pinned[1]}/plugins/billing:sha256-") in out and "no instance touched, the fleet runs: 1.5.0" in out
    assert "ALERT artifact_untrusted (critical): billing 1.7.0: no instance touched" in logged
    with pytest.raises(OSError):  # the demo's registry is stopped when it ends
        socket.create_connection(("127.0.0.1", int(pinned[2])), timeout=5).close()


def test_the_secure_demo_without_docker_registry_says_it_skips_the_artifact_part(tmp_path: Path) -> None:
    tools = tmp_path / "bin"  # what the demo needs on PATH, without docker-registry
    tools.mkdir()
    for tool in ("git", "ssh-keygen"):
        found = shutil.which(tool)
        assert found, tool
        (tools / tool).symlink_to(found)
    done = grayops("demo", "--secure", "--keep", str(tmp_path / "demo"), "--no-progress", env={"PATH": str(tools)})
    assert done.returncode == 0, done.stderr[-3000:]
    skipped = [line for line in done.stderr.splitlines() if "artifact part" in line]
    assert len(skipped) == 1 and skipped[0].endswith(
        "the artifact part is skipped: docker-registry (the CNCF distribution registry) is not installed; apt-get "
        "install docker-registry to see an unsigned image refused too"), skipped
    assert "billing is Succeeded at 1.5.0; the fleet runs: 1.5.0" in done.stdout and "runs as" not in done.stdout
