"""Sharding's pure rules: a plugin's shard (stable, evenly spread) and which shard Leases a replica claims."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from reconciler.core.shards import Claims, claims, fair_share, shard_of


@pytest.mark.parametrize(("plugin", "shards", "expected"), [
    ("billing", 3, 2), ("search", 3, 1), ("checkout", 3, 1), ("inventory", 3, 0),
    ("billing", 10, 1), ("search", 10, 6), ("auth", 10, 8), ("payments", 10, 9),
    ("anything", 1, 0),
])
def test_a_plugins_shard_is_pinned(plugin: str, shards: int, expected: int) -> None:
    # pinned values: a change of the hash would move every plugin to another shard across an upgrade
    assert shard_of(plugin, shards) == expected


def test_a_plugins_shard_is_the_same_in_another_process() -> None:
    names = [f"plugin-{i}" for i in range(200)]
    code = ("import sys; from reconciler.core.shards import shard_of; "
            "print(' '.join(str(shard_of(n, 7)) for n in sys.argv[1:]))")
    # PYTHONHASHSEED differs per process by default: a salted hash would disagree here
    other = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, check=True)
    assert other.stdout.split() == [str(shard_of(n, 7)) for n in names]


@pytest.mark.parametrize("shards", [3, 10, 16])
def test_plugins_spread_evenly_over_the_shards(shards: int) -> None:
    counts = Counter(shard_of(f"tenant-{i}-plugin", shards) for i in range(20_000))
    expected = 20_000 / shards
    assert set(counts) == set(range(shards))
    assert all(abs(count - expected) < 0.06 * expected for count in counts.values()), counts


def test_no_shards_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("billing", 0)


@pytest.mark.parametrize(("shards", "replicas", "share"), [
    (3, 1, 3), (3, 2, 2), (3, 3, 1), (3, 4, 1), (10, 3, 4), (10, 10, 1), (1, 0, 1),
])
def test_fair_share(shards: int, replicas: int, share: int) -> None:
    assert fair_share(shards, replicas) == share


# shard_of("a", 3) == 2: where replica "a" starts looking for free shards
@pytest.mark.parametrize(("holders", "me", "live", "expected"), [
    ({}, "a", set(), Claims(keep=(), take=(2, 0, 1), release=())),  # alone: everything, from its offset
    ({}, "a", {"b"}, Claims(keep=(), take=(2, 0), release=())),  # b is live: two at most
    ({0: "b"}, "a", {"b"}, Claims(keep=(), take=(2, 1), release=())),  # b's shard is not free
    ({0: "a", 1: "a", 2: "a"}, "a", {"a"}, Claims(keep=(0, 1, 2), take=(), release=())),  # renew all
    ({0: "a", 1: "a", 2: "a"}, "a", {"b", "c"}, Claims(keep=(0,), take=(), release=(1, 2))),  # others came
    ({0: "a", 1: "b", 2: None}, "a", {"b"}, Claims(keep=(0,), take=(2,), release=())),  # an expired one
    ({0: "b", 1: "c"}, "a", {"b", "c"}, Claims(keep=(), take=(2,), release=())),  # a dead replica's shard
    ({0: "b", 1: "b", 2: "c"}, "a", {"b", "c"}, Claims(keep=(), take=(), release=())),  # nothing free: wait
])
def test_what_a_replica_claims(holders: dict[int, str | None], me: str, live: set[str], expected: Claims) -> None:
    assert claims(3, holders, me, live) == expected
