"""The status codec (core/status.py): the grouped form round-trips exactly, the plain form written before it
reads the same, equal states give equal bytes, and a batch's progress is a small diff (README "Git as the
record")."""

from __future__ import annotations

import difflib
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core import yamlemit
from reconciler.core.model import (
    BatchPhase,
    BatchState,
    HistoryEntry,
    InstanceState,
    MetricTrack,
    Phase,
    Reading,
    RolloutState,
    Step,
    Verdict,
    to_doc,
)
from reconciler.core.status import StatusUnreadable, dump_status, load_status

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
VERSIONS = (None, "1.4.0", "1.5.0", "1.6.0-rc.1", "2.0.0")
MESSAGES = ("", "", "", "waiting: cluster prod-3 unreachable", "verifying", "upgrade to 1.6.0 failed: CrashLoop")


def plain_form(state: RolloutState) -> str:
    """The status file as grayops wrote it before the grouped form: one entry per instance."""
    return yamlemit.dump(to_doc(state))


def fleet(seed: int, size: int) -> RolloutState:
    """A random-ish rollout of `size` instances: steps, versions, start times, messages and last good versions
    drawn by `seed`; some last good versions belong to instances no longer selected."""
    rng = random.Random(seed)
    names = [f"{rng.choice(['canary', 'prod', 'eu-west'])}-{i}/{rng.choice(['billing', 'plugins'])}"
             for i in range(size)]
    starts = [T0 + timedelta(seconds=s, milliseconds=rng.choice((0, 250, 999))) for s in range(0, 40, 3)]
    instances = {
        iid: InstanceState(step=rng.choice(list(Step)), version=rng.choice(VERSIONS),
                           rollback_to=rng.choice(VERSIONS), started=rng.choice((None, *starts)),
                           message=rng.choice(MESSAGES), smoked=rng.choice(("", "upgrade 1.6.0")),
                           at_step=rng.choice((0, 0, 1, 2)))
        for iid in rng.sample(names, len(names))  # in no particular order
    }
    last_good = {iid: rng.choice(VERSIONS[1:]) for iid in names if rng.random() < 0.7}
    last_good |= {f"gone-{i}/billing": rng.choice(VERSIONS[1:]) for i in range(rng.randrange(4))}
    cut = rng.randrange(size + 1)
    reading = Reading("error_rate", Verdict.SUCCESSFUL, 0.01, T0 + timedelta(seconds=5), "0.01 <= 0.05")
    batches = (
        BatchState(0, "canary", tuple(names[:cut]), BatchPhase.PASSED, T0, T0 + timedelta(seconds=2),
                   T0 + timedelta(seconds=9), metrics=(MetricTrack("error_rate", reading, 0, 3, covered=7.0),)),
        BatchState(1, "rest", tuple(names[cut:]), rng.choice(list(BatchPhase)), T0 + timedelta(seconds=9)),
    )
    return RolloutState(
        plugin="billing", rollout_id=f"r{seed:09d}", target_version="1.6.0", desired_commit="c0ffee",
        policy="canary-waves", phase=rng.choice(list(Phase)), reason="batch rest started", started=T0,
        updated=T0 + timedelta(seconds=40), from_version="1.5.0", requested_by="alice", batches=batches,
        instances=instances, last_good=last_good, history=(HistoryEntry(T0, Phase.PENDING, "begins"),),
        notes={"slackTs": "1.2"}, digests={"1.5.0": "sha256:" + "a" * 64},
    )


FLEETS = [(seed, size) for seed in range(12) for size in (0, 1, 7, 60)]


@pytest.mark.parametrize(("seed", "size"), FLEETS)
def test_a_fleet_dumped_and_loaded_is_the_same_model(seed: int, size: int) -> None:
    state = fleet(seed, size)
    assert load_status(dump_status(state)) == state


@pytest.mark.parametrize(("seed", "size"), FLEETS)
def test_a_status_file_in_the_plain_form_loads_to_the_same_model(seed: int, size: int) -> None:
    state = fleet(seed, size)
    old = load_status(plain_form(state))
    assert old == state
    assert list(old.instances) == list(load_status(dump_status(state)).instances)  # read in the same order too
    assert list(old.last_good) == list(load_status(dump_status(state)).last_good)
    assert dump_status(old) == dump_status(state)  # and rewritten grouped as if written so


@pytest.mark.parametrize(("seed", "size"), FLEETS)
def test_the_same_state_gives_the_same_bytes_whatever_the_order_it_was_built_in(seed: int, size: int) -> None:
    state = fleet(seed, size)
    shuffled = list(state.instances.items())
    random.Random(seed).shuffle(shuffled)
    again = replace(state, instances=dict(shuffled), last_good=dict(reversed(list(state.last_good.items()))))
    assert dump_status(again) == dump_status(state)
    assert dump_status(load_status(dump_status(state))) == dump_status(state)  # nothing to commit after a restart


def rollout_of(count: int, started: int) -> RolloutState:
    """`count` instances on 1.5.0, the first `started` of them upgraded to 1.6.0 in waves of ten."""
    names = [f"prod-{i:05d}/billing" for i in range(count)]
    instances = {
        iid: InstanceState(Step.DONE, "1.6.0", "1.5.0", T0 + timedelta(seconds=i // 10)) if i < started
        else InstanceState(Step.PENDING, "1.5.0", "1.5.0")
        for i, iid in enumerate(names)
    }
    return RolloutState(
        plugin="billing", rollout_id="r1", target_version="1.6.0", desired_commit="c0ffee", policy="canary-waves",
        phase=Phase.PROGRESSING, reason="batch all started", started=T0, updated=T0, from_version="1.5.0",
        batches=(BatchState(0, "all", tuple(names), BatchPhase.UPGRADING, T0),), instances=instances,
        last_good=dict.fromkeys(names, "1.5.0"))


def test_a_wave_moving_on_is_its_names_moving_between_groups() -> None:
    before = rollout_of(1000, 500)
    moving = [f"prod-{i:05d}/billing" for i in range(500, 510)]
    after = replace(before, instances={**before.instances, **{
        iid: InstanceState(Step.UPGRADING, "1.5.0", "1.5.0", T0 + timedelta(seconds=60)) for iid in moving}})
    diff = [line for line in difflib.unified_diff(dump_status(before).splitlines(), dump_status(after).splitlines(),
                                                   lineterm="", n=0) if line[:1] in "+-" and line[:3] not in "+++---"]
    removed = sorted(line[1:].strip() for line in diff if line.startswith("-"))
    added = [line[1:].strip() for line in diff if line.startswith("+")]
    assert removed == [f'- "{iid}"' for iid in moving]  # out of the Pending group...
    assert [line for line in added if line.startswith('- "')] == [f'- "{iid}"' for iid in moving]  # ...into
    assert len(added) == 10 + 6  # a new group, with its lines: step, version, rollbackTo, lastGood, started, time


def test_a_name_is_written_once_in_the_groups_however_large_the_fleet() -> None:
    state = rollout_of(10_000, 10_000)
    text = dump_status(state)
    assert text.count('"prod-04321/billing"') == 2  # its batch's list, and its group
    assert text.count('step: "Done"') == 1
    assert len(text.encode()) < len(plain_form(state).encode()) / 2


def test_a_grouped_status_file_reads_as_a_person_expects() -> None:
    state = rollout_of(3, 1)
    assert dump_status(state).split("instances:\n")[-1] == (
        '  - lastGood: "1.5.0"\n'
        '    names:\n'
        '      - "prod-00001/billing"\n'
        '      - "prod-00002/billing"\n'
        '    rollbackTo: "1.5.0"\n'
        '    step: "Pending"\n'
        '    version: "1.5.0"\n'
        '  - lastGood: "1.5.0"\n'
        '    rollbackTo: "1.5.0"\n'
        '    started:\n'
        '      "2026-11-23T02:00:00.000Z":\n'
        '        - "prod-00000/billing"\n'
        '    step: "Done"\n'
        '    version: "1.6.0"\n'
        'kind: "Status"\n'
        'lastGood: {}\n'
        'paused: null\n'
        'phase: "Progressing"\n'
        'plugin: "billing"\n'
        'policy: "canary-waves"\n'
        'reason: "batch all started"\n'
        'requestedBy: null\n'
        'revertPending: false\n'
        'rollbackBy: null\n'
        'rollbackStarted: null\n'
        'rollbacksSinceSuccess: 0\n'
        'rolloutId: "r1"\n'
        'started: "2026-11-23T02:00:00.000Z"\n'
        'targetVersion: "1.6.0"\n'
        'updated: "2026-11-23T02:00:00.000Z"\n'
        'waiting: null\n'
    )


GOOD = dump_status(rollout_of(3, 1))
BROKEN = {
    "a group not a mapping": (GOOD.replace('  - lastGood: "1.5.0"\n    names:', '  - "Done"\n  - names:', 1),
                              "a field has the wrong form"),
    "names not a list": (GOOD.replace('    names:\n      - "prod-00001/billing"\n      - "prod-00002/billing"\n',
                                      '    names: "prod-00001/billing"\n'), "names is not a list"),
    "a name listed twice": ('"prod-00000/billing"'.join(GOOD.rsplit('"prod-00002/billing"', 1)),
                            "instance prod-00000/billing is listed twice"),
    "a step that does not exist": (GOOD.replace('step: "Pending"', 'step: "Sleeping"'),
                                   "'Sleeping' is not a valid Step"),
    "a group without a step": (GOOD.replace('    step: "Pending"\n', ""), "a field is missing: step"),
    "started not a mapping": (GOOD.replace('      "2026-11-23T02:00:00.000Z":\n        - "prod-00000/billing"\n',
                                           '      - "prod-00000/billing"\n'), "started is not a mapping"),
    "a start that is no time": (GOOD.replace('"2026-11-23T02:00:00.000Z":', '"soon":'),
                                "Invalid isoformat string"),
    "a name that is no text": (GOOD.replace('- "prod-00001/billing"', "- 42"), "42 is not a string"),
    "last good names not a list": (GOOD.replace("lastGood: {}", 'lastGood: {"1.4.0": "gone-1/billing"}'),
                                   "lastGood 1.4.0 is not a list"),
    "a gone instance with two last good versions": (
        GOOD.replace("lastGood: {}", 'lastGood: {"1.4.0": ["gone-1/billing"], "1.5.0": ["gone-1/billing"]}'),
        "lastGood lists instance gone-1/billing twice"),
}


@pytest.mark.parametrize(("text", "why"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_grouped_status_is_refused_in_one_line(text: str, why: str) -> None:
    assert text != GOOD
    with pytest.raises(StatusUnreadable) as raised:
        load_status(text, "status/billing.yaml")
    assert str(raised.value).startswith("status/billing.yaml: unreadable status, ")
    assert why in str(raised.value) and "\n" not in str(raised.value)
