"""The command as a user meets it: help that explains, the schema in step with the models, the demo."""

from __future__ import annotations

import re
import subprocess
import sys

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
