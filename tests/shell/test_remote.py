"""Remote health over a fake remote: one alert per cause until it clears, a log line when it does, and a push
that waits for the next fetch while the remote is down or refusing (README "Git as the record")."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from reconciler.adapters.gitrepo import ConflictInfo, PushResult, RemoteUnavailable, Rewrite
from reconciler.adapters.telemetry import Telemetry
from reconciler.core.model import RolloutState
from reconciler.shell.alerts import FleetAlerts, Holds
from reconciler.shell.divergence import Divergence
from reconciler.shell.recorder import Recorder
from reconciler.shell.remote import RemoteHealth
from tests.conftest import FakeClock
from tests.shell.fakes import FakeStore, Heard

REFUSED = PushResult(False, 2, error="push of main refused by the remote: pre-receive hook declined",
                     failure="refused")
DOWN = PushResult(False, 2, error="cannot push: connection refused", failure="unreachable")
TAKEN = PushResult(True, 0)


@dataclass
class FakeRemote:
    """Answers pushes from a script; a fetch fails while `down`."""

    pushes: list[PushResult] = field(default_factory=list)
    down: bool = False
    pending: int = 2
    pushed: int = 0
    rewrites: list[Rewrite] = field(default_factory=list)

    def fetch(self) -> bool:
        if self.down:
            raise RemoteUnavailable("cannot reach origin: connection refused")
        return False

    def push(self) -> PushResult:
        self.pushed += 1
        result = self.pushes.pop(0)
        self.pending = result.pending
        return result

    def unpushed(self) -> int:
        return self.pending

    def take_rewrites(self) -> list[Rewrite]:
        found, self.rewrites = self.rewrites, []
        return found


def health(remote: FakeRemote) -> tuple[RemoteHealth, Heard, Holds]:
    heard, holds = Heard(), Holds()
    alerts = FleetAlerts(lambda: heard, Telemetry(), FakeClock())
    states: dict[str, RolloutState] = {}
    divergence = Divergence(remote, holds, alerts, Recorder(FakeStore()), states)
    return RemoteHealth(remote, alerts, Telemetry(), divergence), heard, holds


def kinds(heard: Heard) -> list[str]:
    return [event.kind for event in heard.events]


def test_a_refusing_remote_alerts_once_and_is_tried_again_only_after_a_fetch(caplog: pytest.LogCaptureFixture
                                                                             ) -> None:
    remote = FakeRemote([REFUSED, REFUSED, TAKEN])
    checked, heard, _ = health(remote)
    checked.push()
    checked.push()  # no fetch in between: not tried again
    assert remote.pushed == 1 and kinds(heard) == ["push_refused"]
    assert checked.error == REFUSED.error and checked.unpushed == 2
    checked.fetch()
    checked.push()  # refused again: still one alert
    assert remote.pushed == 2 and kinds(heard) == ["push_refused"]
    checked.fetch()
    with caplog.at_level("INFO", logger="grayops"):
        checked.push()
    assert checked.error is None and checked.unpushed == 0
    assert "git push no longer refused: accepted again" in caplog.text
    remote.pending = 1
    remote.pushes.append(REFUSED)
    checked.fetch()
    checked.push()  # a new refusal after it cleared alerts again
    assert kinds(heard) == ["push_refused", "push_refused"]


def test_an_unreachable_remote_alerts_once_however_many_fetches_fail(caplog: pytest.LogCaptureFixture) -> None:
    remote = FakeRemote([DOWN], down=True)
    checked, heard, _ = health(remote)
    for _ in range(3):
        checked.fetch()
        checked.push()  # waits for a fetch that succeeds
    assert remote.pushed == 0 and kinds(heard) == ["remote_unreachable"]
    assert checked.error == "cannot reach origin: connection refused"
    remote.down = False
    remote.pushes = [TAKEN]
    with caplog.at_level("INFO", logger="grayops"):
        checked.fetch()
    assert "git remote reachable again; pushing 2 commit(s)" in caplog.text and checked.error is None
    checked.push()
    assert remote.pushed == 1 and checked.unpushed == 0 and kinds(heard) == ["remote_unreachable"]


def test_a_push_that_finds_a_conflict_holds_the_plugins_it_touched() -> None:
    conflict = ConflictInfo(("plugins/billing.yaml", "grayops.yaml"), "grayops/conflict-1")
    remote = FakeRemote([PushResult(False, 1, conflict=conflict, error="conflict", failure="conflict")])
    checked, heard, holds = health(remote)
    checked.push()
    hold = holds.take("billing")
    assert hold is not None and hold.kind == "git_conflict" and "grayops/conflict-1" in hold.reason
    assert heard.events == []  # the held rollout alerts itself, through the engine


def test_a_conflict_outside_any_plugin_alerts_fleet_wide() -> None:
    conflict = ConflictInfo(("grayops.yaml",), "grayops/conflict-2")
    remote = FakeRemote([PushResult(False, 1, conflict=conflict, error="conflict", failure="conflict")])
    checked, heard, _ = health(remote)
    checked.push()
    assert kinds(heard) == ["git_conflict"] and heard.events[0].plugin == "*"


def test_nothing_to_push_is_no_push() -> None:
    remote = FakeRemote(pending=0)
    checked, heard, _ = health(remote)
    checked.push()
    assert remote.pushed == 0 and heard.events == [] and checked.error is None
