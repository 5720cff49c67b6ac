"""A fleet repository as hostile input: what a commit can make GitRepo and the CLI's read-only views read or write.

Real git (a bare remote, a human's clone, the reconciler's clone) and the real `grayops validate` / `plan`
commands. The desired state is read from git objects, never through the working tree; a working tree (validate)
is read without following a symlink or opening anything but a regular file; writes never go through a symlink.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from reconciler.adapters.gitrepo import GitError, GitRepo
from reconciler.cli import full_registry
from reconciler.core.fleet import FleetInvalid, load_fleet
from reconciler.shell import Reconciler
from tests.conftest import FAST_POLICY, FakeClock, Human, git, grayops, make_fleet_repo, plugin_yaml, settings_yaml

SETTINGS = settings_yaml({"canary": 1, "prod": 2})
GOOD = {"grayops.yaml": SETTINGS, "policies/fast.yaml": FAST_POLICY,
        "plugins/billing.yaml": plugin_yaml("billing", "1.0.0")}
EVIL = plugin_yaml("billing", "6.6.6")

ADAPTERS = full_registry().models


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside every repository, with a plugin file an attacker would like grayops to read."""
    place = tmp_path / "outside"
    place.mkdir()
    (place / "billing.yaml").write_text(EVIL)
    return place


@pytest.fixture
def human(tmp_path: Path) -> Human:
    human = make_fleet_repo(tmp_path)
    human.commit("fleet", GOOD)
    return human


@pytest.fixture
def repo(human: Human, tmp_path: Path) -> GitRepo:
    clone = GitRepo(str(human.remote), tmp_path / "work")
    clone.ensure_clone()
    return clone


def listing(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def symlink(human: Human, path: str, target: str | Path) -> None:
    link = human.clone / path
    if link.is_dir() and not link.is_symlink():
        git(human.clone, "rm", "-rq", path)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def refreshed(repo: GitRepo) -> GitRepo:
    repo.fetch()
    assert repo.integrate() is None
    return repo


def errors_at_head(repo: GitRepo) -> list[str]:
    with pytest.raises(FleetInvalid) as caught:
        load_fleet(repo.desired_files(), adapters=ADAPTERS)
    return [str(e) for e in caught.value.errors]


# --- reading the desired state from git objects ---------------------------------------------------------------


@pytest.mark.parametrize(("path", "target", "expected"), [
    pytest.param("plugins/billing.yaml", "OUTSIDE/billing.yaml",
                 "plugins/billing.yaml: symlinks are not allowed in a fleet repository", id="file-outside"),
    pytest.param("plugins/billing.yaml", "billing.yaml",
                 "plugins/billing.yaml: symlinks are not allowed in a fleet repository", id="loop"),
    pytest.param("plugins/billing.yaml", "/dev/zero",
                 "plugins/billing.yaml: symlinks are not allowed in a fleet repository", id="dev-zero"),
    pytest.param("plugins/billing.yaml", "/nonexistent/billing.yaml",
                 "plugins/billing.yaml: symlinks are not allowed in a fleet repository", id="dangling"),
    pytest.param("plugins", "OUTSIDE",
                 "plugins: symlinks are not allowed in a fleet repository", id="directory-outside"),
    pytest.param("grayops.yaml", "OUTSIDE/billing.yaml",
                 "grayops.yaml: symlinks are not allowed in a fleet repository", id="settings"),
])
def test_a_symlink_refuses_the_revision_and_is_never_followed(human: Human, repo: GitRepo, outside: Path,
                                                               path: str, target: str, expected: str) -> None:
    symlink(human, path, target.replace("OUTSIDE", str(outside)))
    human.commit("a symlink")
    found = errors_at_head(refreshed(repo))
    assert expected in found, found
    assert not any("6.6.6" in e for e in found)
    assert repo.read(path) is None  # a symlink is not a file grayops reads, wherever it points


def test_a_submodule_refuses_the_revision(human: Human, repo: GitRepo) -> None:
    head = git(human.clone, "rev-parse", "HEAD").strip()
    git(human.clone, "update-index", "--add", "--cacheinfo", f"160000,{head},plugins/vendored")
    git(human.clone, "commit", "-qm", "a submodule")
    human.push()
    assert "plugins/vendored: submodules are not allowed in a fleet repository" in errors_at_head(refreshed(repo))


def test_bytes_that_are_not_utf8_refuse_the_revision_with_line_and_offset(human: Human, repo: GitRepo) -> None:
    text = plugin_yaml("billing", "1.0.0").encode() + b"\xff\n"
    (human.clone / "plugins/billing.yaml").write_bytes(text)
    human.commit("one byte more")
    found = errors_at_head(refreshed(repo))
    assert found == [f"plugins/billing.yaml:7: file: not UTF-8 text (byte 0xff at offset {len(text) - 2})"]


def test_a_huge_file_is_refused_from_its_size_without_reading_it(human: Human, repo: GitRepo) -> None:
    big = plugin_yaml("billing", "1.0.0") + "#" * (50 << 20) + "\n"
    human.commit("50 MB", {"plugins/billing.yaml": big})
    refreshed(repo)
    tracemalloc.start()
    try:
        files = repo.desired_files()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20, f"read {peak} bytes"
    with pytest.raises(FleetInvalid) as caught:
        load_fleet(files, adapters=ADAPTERS)
    assert [str(e) for e in caught.value.errors] == [
        f"plugins/billing.yaml: {len(big)} bytes, over the 1 MiB limit of a fleet file"]


def test_status_files_never_follow_a_symlink(human: Human, repo: GitRepo, outside: Path) -> None:
    human.commit("status", {"status/auth.yaml": "phase: Succeeded\n"})
    symlink(human, "status/billing.yaml", outside / "billing.yaml")
    human.commit("a status symlink")
    status = refreshed(repo).status_files()
    assert dict(status) == {"status/auth.yaml": "phase: Succeeded\n"}


def test_a_record_entry_that_refuses_the_revision_is_seen_whatever_commits_came_before(
        human: Human, repo: GitRepo, outside: Path, tmp_path: Path) -> None:
    """The fleet files are read again only when a commit changed something outside status/ and reports/, and the
    record's entries one by one as commits change them (README "Sizing"): a symlink in status/, after grayops'
    own status commits, refuses the revision as at a first read; gone again, the revision is good again."""
    assert load_fleet(repo.desired_files(), adapters=ADAPTERS).plugins["billing"].spec.version == "1.0.0"
    repo.commit({"status/billing.yaml": "phase: Progressing\n"}, "billing 1.0.0: started", status=True)
    repo.commit({"reports/billing/1.0.0-r1.md": "# billing\n"}, "billing 1.0.0: report", status=True)
    assert load_fleet(repo.desired_files(), adapters=ADAPTERS).plugins["billing"].spec.version == "1.0.0"
    assert repo.push().pending == 0
    human.pull()
    symlink(human, "status/auth.yaml", outside / "billing.yaml")
    symlink(human, "reports/billing/evil.md", outside / "billing.yaml")
    human.commit("symlinks in the record")
    refused = errors_at_head(refreshed(repo))
    fresh = GitRepo(str(human.remote), tmp_path / "fresh")
    fresh.ensure_clone()
    assert refused == errors_at_head(fresh)  # as at a start
    assert refused == ["reports/billing/evil.md: symlinks are not allowed in a fleet repository",
                       "status/auth.yaml: symlinks are not allowed in a fleet repository"]
    git(human.clone, "rm", "-q", "status/auth.yaml", "reports/billing/evil.md")
    human.commit("no more symlinks")
    assert load_fleet(refreshed(repo).desired_files(), adapters=ADAPTERS).plugins["billing"].spec.version == "1.0.0"


def test_the_working_tree_is_never_read_for_the_desired_state(human: Human, repo: GitRepo) -> None:
    (repo.path / "plugins/billing.yaml").write_text(EVIL)  # a stray write in the clone, never committed
    assert load_fleet(repo.desired_files(), adapters=ADAPTERS).plugins["billing"].spec.version == "1.0.0"
    assert repo.read("plugins/billing.yaml") == plugin_yaml("billing", "1.0.0")


# --- writing only inside the clone ------------------------------------------------------------------------------


@pytest.mark.parametrize("record", ["status", "reports"])
def test_a_record_directory_that_is_a_symlink_is_replaced_never_written_through(
        human: Human, repo: GitRepo, outside: Path, record: str) -> None:
    before = listing(outside)
    symlink(human, record, outside)
    human.commit(f"{record} points outside")
    refreshed(repo)
    path = f"{record}/billing.yaml" if record == "status" else "reports/billing/1.0.0-r1.md"
    assert repo.commit({path: "phase: Succeeded\n"}, "billing: record", status=True)
    assert listing(outside) == before  # nothing written outside the clone
    assert repo.push().pushed
    assert git(human.remote, "cat-file", "-t", f"main:{record}").strip() == "tree"  # a directory again
    assert git(human.remote, "show", f"main:{path}") == "phase: Succeeded\n"


def test_a_symlinked_directory_in_a_desired_path_is_refused_never_written_through(
        human: Human, repo: GitRepo, outside: Path) -> None:
    before = listing(outside)
    symlink(human, "plugins", outside)
    human.commit("plugins points outside")
    refreshed(repo)
    with pytest.raises(GitError, match="plugins is a symlink"):
        repo.commit({"plugins/billing.yaml": plugin_yaml("billing", "1.0.0", extra="  paused: true\n")}, "pause")
    assert listing(outside) == before


# --- the CLI's read-only views ------------------------------------------------------------------------------------


def test_validate_reads_a_working_tree_like_the_daemon_reads_a_commit(human: Human, outside: Path) -> None:
    tree = human.clone
    os.mkfifo(tree / "plugins/fifo.yaml")
    os.symlink(outside / "billing.yaml", tree / "plugins/auth.yaml")
    os.symlink("loop.yaml", tree / "plugins/loop.yaml")
    (tree / "policies/bad.yaml").write_bytes(b"apiVersion: grayops.dev/v1\n\xff\n")
    (tree / "policies/big.yaml").write_text("#" * (2 << 20))
    done = grayops("validate", str(tree), timeout=60)  # a FIFO opened for reading would block here
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    for expected in ("plugins/fifo.yaml: FIFOs are not allowed in a fleet repository",
                     "plugins/auth.yaml: symlinks are not allowed in a fleet repository",
                     "plugins/loop.yaml: symlinks are not allowed in a fleet repository",
                     "policies/bad.yaml:2: file: not UTF-8 text (byte 0xff at offset 27)",
                     f"policies/big.yaml: {2 << 20} bytes, over the 1 MiB limit of a fleet file"):
        assert expected in lines, done.stderr
    assert "6.6.6" not in done.stderr + done.stdout


def test_plan_refuses_a_working_tree_with_a_symlink(human: Human, outside: Path) -> None:
    symlink(human, "plugins/billing.yaml", outside / "billing.yaml")
    human.commit("a symlink", push=False)
    plan = grayops("plan", "--repo", str(human.clone), "--base", "HEAD")
    assert plan.returncode == 1
    assert "plugins/billing.yaml: symlinks are not allowed in a fleet repository" in plan.stderr
    assert "6.6.6" not in plan.stdout + plan.stderr


def test_report_of_a_remote_never_follows_a_symlink(human: Human, outside: Path) -> None:
    (outside / "billing").mkdir()
    (outside / "billing" / "6.6.6-r1.md").write_text("# a report from outside the repository: 6.6.6\n")
    symlink(human, "reports", outside)
    human.commit("reports points outside")
    report = grayops("report", "billing", "--repo", str(human.remote))
    assert "6.6.6" not in report.stdout
    assert report.returncode == 1 and "no report for 'billing' yet" in report.stderr


# --- the reconciler: a refused revision and a start over hostile status files ------------------------------------


def reconciler_on(human: Human, workdir: Path) -> Reconciler:
    from policies import builtin_policies

    reconciler = Reconciler(GitRepo(str(human.remote), workdir), workdir, builtin_policies(), clock=FakeClock(),
                            poll_interval=0.0)
    reconciler.start()
    return reconciler


def test_the_invalid_revision_alert_carries_the_root_errors(human: Human, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    reconciler = reconciler_on(human, tmp_path / "work")
    reconciler.tick()
    assert reconciler.fleet is not None
    human.commit("two typos", {
        "policies/fast.yaml": FAST_POLICY.replace("maxParallel: 4", "maxParalel: 4"),
        "plugins/auth.yaml": plugin_yaml("auth", "2.0.0", extra="  colour: red\n"),
        "plugins/web.yaml": plugin_yaml("web", "1.0.0", extra="  dependsOn: [auth]\n"),
    })
    with caplog.at_level("WARNING", logger="grayops.events"):
        report = reconciler.tick()
    alerts = [r.getMessage() for r in caplog.records if "ALERT invalid_revision" in r.getMessage()]
    assert len(alerts) == 1, alerts
    assert "2 error(s)" in alerts[0]
    assert "policies/fast.yaml:10: spec.maxParalel: unknown field" in alerts[0]
    assert "plugins/auth.yaml:7: spec.colour: unknown field" in alerts[0]
    assert "no policy named" not in alerts[0] and "no plugin named" not in alerts[0]
    assert len(report.invalid) == 2 and reconciler.fleet is not None  # the last good revision stays in force


def test_a_start_survives_any_status_file(human: Human, tmp_path: Path) -> None:
    bomb = "l0: &l0 [lol]\n" + "".join(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]\n" for n in range(1, 12))
    human.commit("hand-made status files", {"status/auth.yaml": "- a list\n- not a status\n",
                                            "status/web.yaml": bomb, "status/api.yaml": "phase: [\n"})
    (human.clone / "status/billing.yaml").write_bytes(b"phase: Succeeded\xff\n")
    human.commit("and one not UTF-8")
    reconciler = reconciler_on(human, tmp_path / "work")
    assert reconciler.states == {}
    reconciler.tick()
    assert reconciler.fleet is not None
