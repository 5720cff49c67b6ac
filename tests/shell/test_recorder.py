"""The recorder over a record store in memory: one status commit per plugin per tick, a line for each transition and
the trailers README "Git as the record" lists, the report with it, the engine's own edits of a plugin file, nothing
twice."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler.core import yamlemit
from reconciler.core.effects import CommitSpec, InstanceObservation, Observations, WriteReport
from reconciler.core.engine import Decision, Transition, decide
from reconciler.core.model import Phase, RolloutState, to_doc
from reconciler.core.status import dump_status, load_status
from reconciler.shell.recorder import Recorder, trailers
from tests.conftest import plugin_yaml
from tests.core.test_engine import T0, desired
from tests.shell.fakes import FakeStore

STATUS = "status/billing.yaml"


def first_decision() -> Decision:
    """billing 1.4.0 -> 1.5.0 asked by alice: the rollout starts and its canary batch with it (two transitions)."""
    want = desired("1.5.0", by="alice")
    return decide(None, want, Observations(instances={ref.id: InstanceObservation("1.4.0", True)
                                                      for ref in want.instances}), T0)


def test_a_ticks_transitions_are_one_status_commit_that_says_each_of_them() -> None:
    store, decision = FakeStore(), first_decision()
    Recorder(store).record(decision, desired("1.5.0", by="alice"), "plugins/billing.yaml", {})
    [commit] = store.commits
    assert len(decision.transitions) == 2
    assert commit.message == [f"billing 1.5.0: {t.reason}" for t in decision.transitions]  # every reason kept
    assert commit.status and list(commit.files) == [STATUS]
    assert commit.files[STATUS] == dump_status(decision.state)  # the status as the tick left it


def test_the_trailers_are_the_last_transitions() -> None:
    store, decision = FakeStore(), first_decision()
    want = desired("1.5.0", by="alice")
    Recorder(store).record(decision, want, "plugins/billing.yaml", {})
    [commit] = store.commits
    assert dict(commit.trailers) == {"Grayops-Rollout": decision.state.rollout_id, "Grayops-Action": "batch-start",
                                     "Grayops-Batch": "canary", "Requested-By": "alice",
                                     "Desired-Commit": want.desired_commit}


@pytest.mark.parametrize(("action", "expected"), [
    ("pause", "bob"),  # who paused
    ("rollback", "carol"), ("rolled-back", "carol"),  # who asked for the rollback
    ("resume", "dave"),  # who committed the resume
    ("batch-pass", "alice"),  # anything else: who asked for the rollout
])
def test_requested_by_is_the_person_behind_the_action(action: str, expected: str) -> None:
    state = replace(first_decision().state, paused_by="bob", rollback_by="carol")
    want = desired("1.5.0", by="dave")
    assert ("Requested-By", expected) in trailers(state, want, Transition("why", action, Phase.PROGRESSING))


def test_an_approved_batch_names_its_approver() -> None:
    state = first_decision().state
    approved = replace(state, batches=(replace(state.batches[0], approved_by="rita"),))
    found = trailers(approved, desired("1.5.0"), Transition("batch canary started", "batch-start",
                                                            Phase.PROGRESSING, "canary"))
    assert ("Approved-By", "rita") in found and found[-1][0] == "Desired-Commit"


def test_the_report_is_in_the_ticks_commit() -> None:
    store, decided = FakeStore(), first_decision()
    decision = replace(decided, effects=(*decided.effects, WriteReport("billing")))
    Recorder(store).record(decision, desired("1.5.0"), "plugins/billing.yaml", {"canary": "rita"})
    [commit] = store.commits
    report = f"reports/billing/1.5.0-{decision.state.rollout_id}.md"
    assert list(commit.files) == [STATUS, report] and "rita" in (commit.files[report] or "")


def test_a_commit_spec_edits_the_plugin_file_keeping_the_rest_and_says_why() -> None:
    path = "plugins/billing.yaml"
    store = FakeStore({path: plugin_yaml("billing", "1.6.0") + "  # keep this comment\n"})
    state: RolloutState = replace(first_decision().state, target_version="1.6.0", from_version="1.5.0")
    revert = CommitSpec("billing", "version", "1.5.0", "rollback", "1.6.0 was rolled back: error_rate 0.2 > 0.05")
    Recorder(store).record(Decision(state, (revert,)), desired("1.6.0"), path, {})
    [commit] = store.commits
    assert commit.message == "billing: 1.6.0 was rolled back: error_rate 0.2 > 0.05" and not commit.status
    assert 'version: "1.5.0"' in store.files[path] and "# keep this comment" in store.files[path]
    assert dict(commit.trailers) == {"Grayops-Rollout": state.rollout_id, "Grayops-Action": "rollback",
                                     "Requested-By": "grayops", "Desired-Commit": state.desired_commit,
                                     "Grayops-Reason": revert.reason}


def test_no_transition_no_commit() -> None:
    store = FakeStore()
    Recorder(store).record(Decision(first_decision().state), desired("1.5.0"), "plugins/billing.yaml", {})
    assert store.commits == []


def test_recorded_again_only_where_the_store_lost_it() -> None:
    state = first_decision().state
    other = replace(state, plugin="auth")
    store = FakeStore({STATUS: dump_status(state)})
    Recorder(store).record_again({"billing": state, "auth": other})
    [commit] = store.commits
    assert list(commit.files) == ["status/auth.yaml"] and ("Grayops-Action", "record") in commit.trailers


def test_states_are_read_back_and_an_unreadable_one_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    state = first_decision().state
    store = FakeStore({STATUS: dump_status(state), "status/auth.yaml": "- not\n- a status\n",
                       "status/web.yaml": "a: &x [1]\nb: *x\n"})
    assert Recorder(store).states() == {"billing": load_status(dump_status(state), STATUS)}
    said = caplog.text
    assert "status/auth.yaml: unreadable status, not a mapping" in said and "auth starts without" in said
    assert "status/web.yaml: unreadable status" in said and "anchors" in said


def test_new_reports_are_given_once() -> None:
    store = FakeStore({"reports/billing/1.5.0-r1.md": "one"})
    recorder = Recorder(store)
    assert recorder.new_reports() == {"reports/billing/1.5.0-r1.md": "one"}
    store.files["reports/billing/1.6.0-r2.md"] = "two"
    assert recorder.new_reports() == {"reports/billing/1.6.0-r2.md": "two"}
    assert recorder.new_reports() == {}


def test_a_status_in_the_per_instance_form_is_read_and_written_grouped_at_the_next_transition() -> None:
    started = first_decision().state
    store = FakeStore({STATUS: yamlemit.dump(to_doc(started))})  # as grayops wrote it before the grouped form
    recorder = Recorder(store)
    read = recorder.states()["billing"]
    assert read == load_status(dump_status(started), STATUS)
    paused = Transition("paused: incident 42", "pause", Phase.PAUSED)
    recorder.record(Decision(replace(read, phase=Phase.PAUSED), transitions=(paused,)), desired("1.5.0"),
                    "plugins/billing.yaml", {})
    assert store.files[STATUS] == dump_status(replace(read, phase=Phase.PAUSED))
    assert "instances:\n  - " in (store.files[STATUS] or "")  # a list of groups, no longer one entry per instance
