"""`grayops run --shards N` refuses what cannot be sharded in one line, exit 2, before it clones or reaches a
cluster (README "Sharding")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Human, grayops


@pytest.mark.parametrize(("options", "line"), [
    (["--shards", "0"], "--shards: 0: at least 1"),
    (["--shards", "2", "--leader-elect"], "--shards and --leader-elect: choose one"),
])
def test_run_refuses_shards_it_cannot_use(fleet_repo: Human, tmp_path: Path, options: list[str], line: str) -> None:
    done = grayops("run", "--repo", str(fleet_repo.remote), "--workdir", str(tmp_path / "work"), "--no-progress",
                   *options, env={"KUBECONFIG": str(tmp_path / "none")})
    assert done.returncode == 2, done.stderr
    assert line in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "work" / "repo").exists()  # refused before cloning
