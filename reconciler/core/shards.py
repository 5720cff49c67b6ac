"""Sharding (README "Sharding"): which shard a plugin belongs to, and which shard Leases a replica should hold.

Pure: the replica's view of the Leases (who holds each shard, and which replicas are live) is passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Set
from dataclasses import dataclass


def shard_of(plugin: str, shards: int) -> int:
    """The plugin's shard, 0..shards-1: the same in every process and on every machine (Python's `hash` of a str
    is salted per process, so it cannot be used here)."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    digest = hashlib.blake2b(plugin.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def fair_share(shards: int, replicas: int) -> int:
    """The most shards one replica holds while `replicas` are live: ceil(shards / replicas)."""
    return -(-shards // max(1, replicas))


@dataclass(frozen=True)
class Claims:
    keep: tuple[int, ...]  # held, renewed
    take: tuple[int, ...]  # free or expired: try to take
    release: tuple[int, ...]  # held beyond the fair share now that more replicas are live: hand over


def claims(shards: int, holders: Mapping[int, str | None], me: str, live: Set[str]) -> Claims:
    """What replica `me` does with the shard Leases this round. `holders`: shard -> the identity holding its Lease
    unexpired (None or absent: free or expired); `live`: the replicas seen live (holders and present ones).

    A replica keeps up to its fair share of what it holds, hands the rest over, and takes free shards up to its
    fair share, starting at an offset of its own so that replicas starting together try different shards first.
    """
    share = fair_share(shards, len(live | {me}))
    mine = sorted(shard for shard in range(shards) if holders.get(shard) == me)
    keep, release = mine[:share], mine[share:]
    start = shard_of(me, shards)
    free = [(start + i) % shards for i in range(shards) if holders.get((start + i) % shards) is None]
    return Claims(tuple(keep), tuple(free[:max(0, share - len(keep))]), tuple(release))
