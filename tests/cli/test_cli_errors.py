"""The CLI's one error boundary (README "The CLI"): each kind of error is an exit code and one line, never a
traceback; the real command shows it for errors a user meets."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.adapters.gitrepo import GitError, RemoteUnavailable, WorkdirBusy
from reconciler.cli.errors import Failed, UsageError, guarded
from reconciler.commands import CommandRefused
from reconciler.core.fleet import FleetError, FleetInvalid
from reconciler.core.status import StatusUnreadable
from tests.conftest import grayops


def raising(err: BaseException) -> Callable[[], int]:
    def command() -> int:
        raise err

    return command


INVALID = FleetInvalid([FleetError("plugins/billing.yaml", 3, "spec.version", "field required"),
                        FleetError("grayops.yaml", 0, "", "not a mapping")])

CASES = [
    (Failed("no plugin named 'ghost' (known: billing)"), 1, ["grayops: no plugin named 'ghost' (known: billing)"]),
    (UsageError("cannot serve telemetry on x: bad"), 2, ["grayops: cannot serve telemetry on x: bad"]),
    (INVALID, 1, ["grayops.yaml: not a mapping", "plugins/billing.yaml:3: spec.version: field required"]),
    (GitError("git fetch failed:\n  fatal: no such remote"), 1, ["grayops: git fetch failed: fatal: no such remote"]),
    (RemoteUnavailable("cannot reach /nowhere.git"), 1, ["grayops: cannot reach /nowhere.git"]),
    (WorkdirBusy(Path("/w"), 42), 1,
     ["grayops: /w is in use by another grayops run (pid 42); one reconciler per workdir"]),
    (CommandRefused("nothing to approve"), 1, ["grayops: nothing to approve"]),
    (StatusUnreadable("status/billing.yaml", "not a mapping"), 1, ["grayops: status/billing.yaml: not a mapping"]),
    (PermissionError(errno.EACCES, "Permission denied", "/var/lib/grayops"), 1,
     ["grayops: /var/lib/grayops: permission denied"]),
    (OSError("disk on fire"), 1, ["grayops: disk on fire"]),
    (KeyboardInterrupt(), 130, ["grayops: interrupted"]),
    (ZeroDivisionError("division by zero"), 1,
     ["grayops: unexpected ZeroDivisionError: division by zero (GRAYOPS_DEBUG=1 shows where)"]),
    (RuntimeError("two\nlines"), 1, ["grayops: unexpected RuntimeError: two lines (GRAYOPS_DEBUG=1 shows where)"]),
]


@pytest.mark.parametrize(("err", "code", "lines"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_each_error_is_an_exit_code_and_its_line(err: BaseException, code: int, lines: list[str],
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAYOPS_DEBUG", raising=False)
    assert guarded(raising(err)) == code
    out, err_text = capsys.readouterr()
    assert out == "" and err_text.splitlines() == lines


def test_a_command_that_returns_keeps_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert guarded(lambda: 0) == 0 and guarded(lambda: 1) == 1
    assert capsys.readouterr().err == ""


def test_grayops_debug_adds_the_traceback(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYOPS_DEBUG", "1")
    assert guarded(raising(ZeroDivisionError("division by zero"))) == 1
    text = capsys.readouterr().err
    assert text.startswith("Traceback") and text.splitlines()[-1].startswith("grayops: unexpected ZeroDivisionError")


def test_an_unexpected_error_logs_its_traceback_at_debug_only(caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAYOPS_DEBUG", raising=False)
    with caplog.at_level(logging.DEBUG, logger="grayops"):
        guarded(raising(ZeroDivisionError("division by zero")))
        guarded(raising(Failed("said")))
    assert [(r.levelno, r.exc_info is not None) for r in caplog.records] == [(logging.DEBUG, True)]


def test_system_exit_passes_through() -> None:
    with pytest.raises(SystemExit):
        guarded(raising(SystemExit(2)))


# --- the real command ------------------------------------------------------------------------------------------


def test_a_workdir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    workdir = tmp_path / "a-file" / "work"
    done = grayops("run", "--repo", str(tmp_path / "fleet.git"), "--workdir", str(workdir), "--once")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"grayops: {workdir}: not a directory"]


def test_a_malformed_listen_address_is_a_usage_error(tmp_path: Path) -> None:
    done = grayops("run", "--repo", str(tmp_path / "fleet.git"), "--workdir", str(tmp_path / "w"), "--once",
                   "--listen", "nowhere", "--no-progress")
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["grayops: cannot serve telemetry on nowhere: --listen 'nowhere': expected "
                                        "HOST:PORT, e.g. 0.0.0.0:9100"]


def test_validate_of_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    done = grayops("validate", str(tmp_path / "missing"))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"grayops: {tmp_path / 'missing'}: no such file or directory"]
