"""Who is who, and the two-person rule on approvals (README "The two-person rule"), by tables."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from reconciler.cli import full_registry
from reconciler.core.effects import Change, Observations, RefusedApproval
from reconciler.core.fleet import FleetInvalid, load_fleet
from reconciler.core.model import Phase
from reconciler.core.people import ApprovalEvidence, Directory, judge_approvals, same_person, version_people
from reconciler.core.spec import Access, ApprovalRecord
from tests.conftest import settings_yaml
from tests.core.test_engine import World, desired, installed, make_policy, run

ACCESS = Access.model_validate({
    "apiVersion": "grayops.dev/v1", "kind": "Access",
    "people": [{"name": "alice", "slack": "U0OPS1", "emails": ["alice@example.com", "a.ops@corp.example"],
                "aliases": ["Alice Ops", "ops-al"]},
               {"name": "bob", "slack": "U0REL1", "emails": ["bob@example.com"]}],
})
PEOPLE = Directory.of(ACCESS)
NOBODY = Directory.of(None)

SAME = {
    # without an entry: names and emails compare case-insensitively, an email also by its local part
    "same name, other case": ("alice ops", "Alice Ops <x@y.z>", NOBODY, True),
    "CLI name is the email's local part": ("alice", "Alice Ops <alice@example.com>", NOBODY, True),
    "email in any case": ("ALICE@Example.com", "Alice Ops <alice@example.com>", NOBODY, True),
    "Slack name is the local part": ("U0OPS1 (alice)", "Alice Ops <alice@example.com>", NOBODY, True),
    "someone else": ("bob", "Alice Ops <alice@example.com>", NOBODY, False),
    "a name is not a part of another": ("ali", "Alice Ops <alice@example.com>", NOBODY, False),
    "a Slack ID alone is unknown": ("U0OPS1", "Alice Ops <alice@example.com>", NOBODY, False),
    # with people: every name, email and Slack ID of one entry is that person
    "Slack ID of the entry": ("U0OPS1 (al)", "Alice Ops <other@example.net>", PEOPLE, True),
    "second email of the entry": ("U0OPS1", "A. Ops <a.ops@corp.example>", PEOPLE, True),
    "alias": ("ops-al", "Alice Ops <alice@example.com>", PEOPLE, True),
    "entry name": ("alice", "Someone <a.ops@corp.example>", PEOPLE, True),
    "two entries": ("U0REL1 (rita)", "Alice Ops <alice@example.com>", PEOPLE, False),
    "entry and stranger": ("carol", "Alice Ops <alice@example.com>", PEOPLE, False),
    # an API token acts for its person: `<person> (api token <name>)`, as its commits' Requested-By says
    "API token of the entry": ("alice (api token release-bot)", "Alice Ops <alice@example.com>", PEOPLE, True),
    "API token of another": ("bob (api token release-bot)", "Alice Ops <alice@example.com>", PEOPLE, False),
    "API token, no entry": ("alice (api token ci)", "Alice Ops <alice@example.com>", NOBODY, True),
}


@pytest.mark.parametrize(("a", "b", "directory", "same"), SAME.values(), ids=SAME.keys())
def test_same_person(a: str, b: str, directory: Directory, same: bool) -> None:
    assert same_person(a, b, directory) is same
    assert same_person(b, a, directory) is same


def test_the_deprecated_identities_map_still_joins_a_slack_user_to_their_names() -> None:
    old = Directory.of(Access.model_validate({"apiVersion": "grayops.dev/v1", "kind": "Access",
                                              "identities": {"U0OPS1": ["Alice Ops", "al"]}}))
    assert same_person("U0OPS1 (x)", "Alice Ops <z@example.net>", old)
    assert same_person("al", "U0OPS1", old)
    assert not same_person("U0REL1 (rita)", "Alice Ops <z@example.net>", old)


def test_one_name_listed_for_two_people_is_an_error_with_its_line() -> None:
    access = ("apiVersion: grayops.dev/v1\nkind: Access\npeople:\n"
              "  - {name: alice, emails: [alice@example.com]}\n"
              "  - {name: bob, emails: [ALICE@example.com]}\n")
    with pytest.raises(FleetInvalid) as err:
        load_fleet({"grayops.yaml": settings_yaml({"prod": 1}), "access.yaml": access}, adapters=full_registry().models)
    assert "access.yaml:3: people: ALICE@example.com is listed for both alice and bob" in str(err.value)


OWN = ("grayops", "grayops@localhost")
ALICE = "Alice Ops <alice@example.com>"


def change(author: str = ALICE, committer: str | None = None, **trailers: str) -> Change:
    return Change("c0ffee1234", author=author, committer=committer or author,
                  trailers=tuple((k.replace("_", "-").lower(), v) for k, v in trailers.items()))


VERSION_PEOPLE = {
    "a human commit: author only, its Requested-By is a claim": (
        change(requested_by="Bob Builder"), [("the version's author", ALICE)]),
    "author and committer": (
        change("Carol Dev <carol@example.com>", ALICE),
        [("the version's author", "Carol Dev <carol@example.com>"), ("the version's committer", ALICE)]),
    "grayops's own commit: its Requested-By is who asked": (
        change("grayops <grayops@localhost>", requested_by="U0OPS1 (alice)"),
        [("the version's author", "grayops <grayops@localhost>"), ("who asked for the version", "U0OPS1 (alice)")]),
}


@pytest.mark.parametrize(("version", "expected"), VERSION_PEOPLE.values(), ids=VERSION_PEOPLE.keys())
def test_who_stands_behind_a_version_commit(version: Change, expected: list[tuple[str, str]]) -> None:
    assert [(p.role, p.who) for p in version_people(version, OWN)] == expected


def record(by: str, batch: str = "all", commit: str = "c0ffee1") -> ApprovalRecord:
    return ApprovalRecord(version="1.6.0", batch=batch, desired_commit=commit, by=by, at="2025-03-01T12:00:00Z")


def cli_approval(by: str, batch: str = "all") -> Change:
    """The commit `grayops approve --as <by>` makes."""
    return change("grayops <grayops@localhost>", grayops_action="approve", approved_by=by, grayops_batch=batch,
                  desired_commit="c0ffee1234", requested_by=by)


HUMAN_EDIT = change(ALICE)  # Alice commits approvals/<plugin>.yaml by hand

JUDGED = {
    "another person, through grayops": (record("bob"), (cli_approval("bob"),), None),
    "the author, through grayops": (record("alice"), (cli_approval("alice"),),
                                    "alice (the approver) is the same person as Alice Ops <alice@example.com> "
                                    "(the version's author)"),
    "the author's Slack ID, through grayops": (record("U0OPS1 (al)"), (cli_approval("U0OPS1 (al)"),),
                                               "the same person as Alice Ops"),
    "written by the author, naming someone else": (record("bob"), (HUMAN_EDIT,),
                                                   "Alice Ops <alice@example.com> is both who wrote the approval "
                                                   "and the version's author"),
    "by hand, by another person": (record("bob"), (change("Bob B <bob@example.com>"),), None),
    "an edit by grayops that is not this approval": (record("bob"), (cli_approval("carol"),),
                                                     "no commit since the version commit wrote this approval"),
    "a commit that is not in the history": (record("bob", commit="0000000"), (),
                                            "desired commit 0000000 is not in the history"),
}


@pytest.mark.parametrize(("approval", "edits", "refused"), JUDGED.values(), ids=JUDGED.keys())
def test_approvals_are_judged_by_who_wrote_them_and_who_committed_the_version(
        approval: ApprovalRecord, edits: tuple[Change, ...], refused: str | None) -> None:
    evidence = {"c0ffee1": ApprovalEvidence(change(), edits), "0000000": ApprovalEvidence(None, ())}
    accepted, refusals = judge_approvals((approval,), evidence, PEOPLE, OWN)
    if refused is None:
        assert (accepted, refusals) == ((approval,), ())
    else:
        assert accepted == () and len(refusals) == 1 and refusals[0].record == approval
        assert refused in refusals[0].reason and "two-person rule" in refusals[0].reason


@dataclass
class RefusingWorld(World):
    refused: tuple[RefusedApproval, ...] = ()

    def observe(self) -> Observations:
        return replace(super().observe(), refused_approvals=self.refused)


def test_the_engine_alerts_on_a_refused_approval_once_says_why_and_never_counts_it() -> None:
    state, world, now = installed("1.5.0")
    gated = RefusingWorld(versions=world.versions)
    policy = make_policy(batches=[{"name": "canary", "size": 1, "bake": "1s"},
                                  {"name": "all", "size": "100%", "bake": "1s", "approval": True}])
    want = desired("1.6.0", policy, commit="abcdef123456")
    waiting = run(want, gated, state, now)
    assert waiting.state is not None and waiting.state.phase is Phase.AWAITING_APPROVAL
    why = "alice (the approver) is the same person as Alice Ops (the version's author) (two-person rule)"
    gated.refused = (RefusedApproval(record("alice", commit="abcdef1"), why),
                     RefusedApproval(record("alice", commit="0000000"), "another rollout's"))
    still = run(want, gated, waiting.state, waiting.now, ticks=5)
    assert still.state is not None and still.state.phase is Phase.AWAITING_APPROVAL
    assert still.alerts() == ["approval_refused"]  # once, for the approval bound to this rollout
    assert still.state.reason == f"batch all awaits approval; the approval by alice was refused: {why}"
    assert len(still.state.batches) == 1
