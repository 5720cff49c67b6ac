"""Planning: selection, order and cumulative batches, by table and by property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.plan import cumulative_count, cut, order_instances, plan, select_instances
from reconciler.core.spec import BatchSpec, ClusterSpec, PluginSpec, PolicySpec

TIERS = ["canary", "staging", "prod"]


def policy(sizes: list[int | str], order: bool = True) -> PolicySpec:
    return PolicySpec.model_validate({
        "order": {"label": "tier", "values": TIERS} if order else None,
        "batches": [{"name": f"b{i}", "size": size} for i, size in enumerate(sizes)],
    })


def clusters(tiers: list[str]) -> list[ClusterSpec]:
    return [ClusterSpec(name=f"c{i:03d}", labels={"tier": tier}) for i, tier in enumerate(tiers)]


@pytest.mark.parametrize(
    ("size", "total", "expected"),
    [("10%", 25, 3), ("10%", 10, 1), ("50%", 3, 2), ("100%", 7, 7), (1, 7, 1), (20, 7, 7), ("33.3%", 3, 1)],
    ids=["10pct-of-25-rounds-up", "10pct-of-10", "half-of-3", "all", "one", "count-capped", "third"],
)
def test_cumulative_count(size: int | str, total: int, expected: int) -> None:
    assert cumulative_count(size, total) == expected


def test_selection_is_label_match_times_namespaces() -> None:
    spec = PluginSpec(version="1", targets={"tier": ["canary", "prod"]}, namespaces=["a", "b"])
    refs = select_instances(spec, clusters(["canary", "staging", "prod"]))
    assert [r.id for r in refs] == ["c000/a", "c000/b", "c002/a", "c002/b"]


def test_no_namespaces_means_one_instance_per_cluster() -> None:
    refs = select_instances(PluginSpec(version="1"), clusters(["prod", "prod"]))
    assert [r.id for r in refs] == ["c000/plugins", "c001/plugins"]


def test_canary_tier_goes_first_and_unlisted_tiers_last() -> None:
    refs = select_instances(PluginSpec(version="1"), clusters(["prod", "edge", "canary", "staging"]))
    ordered = order_instances(refs, policy(["100%"]))
    assert [r.label("tier") for r in ordered] == ["canary", "staging", "prod", "edge"]


def test_the_canary_waves_shape_on_20_instances() -> None:
    spec = PluginSpec(version="1")
    batches = plan(spec, clusters(["canary"] * 2 + ["staging"] * 6 + ["prod"] * 12), policy([1, "10%", "50%", "100%"]))
    assert [len(b.instances) for b in batches] == [1, 1, 8, 10]
    assert batches[0].instances[0].label("tier") == "canary"


def test_empty_batches_are_dropped() -> None:
    batches = plan(PluginSpec(version="1"), clusters(["prod"] * 3), policy([1, "10%", "100%"]))
    assert [b.name for b in batches] == ["b0", "b2"]


def test_a_changed_policy_only_cuts_what_is_not_assigned() -> None:
    refs = order_instances(select_instances(PluginSpec(version="1"), clusters(["canary"] + ["prod"] * 9)),
                           policy(["100%"]))
    done = {refs[0].id, refs[1].id}
    rest = cut(refs, policy([1, "50%", "100%"]).batches, done)
    assert [(b.name, len(b.instances)) for b in rest] == [("b1", 3), ("b2", 5)]
    assert not done & {r.id for b in rest for r in b.instances}


sizes = st.lists(st.integers(1, 99), min_size=0, max_size=4, unique=True).map(sorted)


@settings(max_examples=200, deadline=None)
@given(
    tiers=st.lists(st.sampled_from([*TIERS, "edge"]), min_size=0, max_size=60),
    percents=sizes,
    first=st.integers(1, 5),
    namespaces=st.integers(1, 3),
)
def test_plan_properties(tiers: list[str], percents: list[int], first: int, namespaces: int) -> None:
    spec = PluginSpec(version="1", namespaces=[f"ns{i}" for i in range(namespaces)])
    pol = policy([first, *[f"{p}%" for p in percents], "100%"])
    fleet = clusters(tiers)
    batches = plan(spec, fleet, pol)
    placed = [ref.id for batch in batches for ref in batch.instances]
    total = len(tiers) * namespaces
    # every instance is in exactly one batch
    assert len(placed) == len(set(placed)) == total
    # no batch is empty, and the order label is respected across batches
    assert all(batch.instances for batch in batches)
    rank = {t: i for i, t in enumerate(TIERS)}
    ranks = [rank.get(ref.label("tier") or "", len(TIERS)) for batch in batches for ref in batch.instances]
    assert ranks == sorted(ranks)
    # cumulative sizes: after each batch, exactly the count its size asks for is done
    done = 0
    for batch in batches:
        done += len(batch.instances)
        assert done == cumulative_count(batch.spec.size, total)
    # deterministic: the same inputs give the same batches, whatever the inventory's order
    assert plan(spec, list(reversed(fleet)), pol) == batches


def test_batch_spec_sizes_are_normalised() -> None:
    assert BatchSpec(name="a", size="10 %").size == "10%"
    assert BatchSpec(name="a", size="3").size == 3
