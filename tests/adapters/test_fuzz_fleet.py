"""Fuzz: generated fleet trees committed to a real repository and fed through the reconciler's own tick.

Tree shapes and file contents come from hypothesis: symlinks (outside the repository, to /dev/zero, in a loop,
dangling, as a whole directory), FIFOs (in the working tree that `validate` reads: git cannot commit one), huge
and deeply nested YAML, anchors and aliases, binary bytes and other encodings, names with newlines, control
characters or `..`. The property, for each tree, through `Reconciler.tick()` (what `grayops run` does each tick)
and through the working tree reader of `grayops validate`: the revision is refused with messages that each name a
file of the tree in one line, or accepted; never an exception; nothing read from outside the repository (a
sentinel file there never shows up) and nothing written there.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from policies import builtin_policies
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.snapshot import read_tree
from reconciler.cli import full_registry
from reconciler.core.fleet import FleetError, FleetInvalid, load_fleet, show_path
from reconciler.shell import Reconciler
from tests.conftest import FAST_POLICY, FakeClock, Human, git, make_fleet_repo, plugin_yaml, settings_yaml

SENTINEL = "OUTSIDE-SENTINEL"
BASE = {"grayops.yaml": settings_yaml({"canary": 1, "prod": 1}), "policies/fast.yaml": FAST_POLICY,
        "plugins/billing.yaml": plugin_yaml("billing", "1.0.0")}
DIRECTORIES = ["", "plugins", "policies", "approvals", "analysis", "status", "reports", "reports/billing", "plugin",
               "docs", "plugins/team-a", ".github"]
PLAIN_NAMES = ["billing.yaml", "billing.yml", "auth.yaml", "fast.yaml", "grayops.yaml", "access.yaml", "x.yaml",
               "README.md", "plugins", "status", "reports", "..x.yaml", "a..b.yaml", "notes.txt", "zero.yaml"]
ODD_NAME = st.text(st.sampled_from(["a", ".", "\n", "\t", "\x1b", "\r", " ", "é", ":", "\u2028", "-"]),
                   min_size=1, max_size=8).map(lambda s: s + ".yaml").filter(lambda n: n not in (".", ".."))

ADAPTERS = full_registry().models


def deep(levels: int) -> bytes:
    return ("spec: " + "[" * levels + "]" * levels + "\n").encode()


def bomb(levels: int) -> bytes:
    lines = ["apiVersion: grayops.dev/v1\nkind: Plugin\nmetadata: {name: billing}\nspec:\n  l0: &l0 [lol]\n"]
    lines += [f"  l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]\n" for n in range(1, levels)]
    return "".join(lines).encode()


CONTENT = st.one_of(
    st.sampled_from([plugin_yaml("billing", "1.1.0"), plugin_yaml("auth", "2.0.0"), FAST_POLICY,
                     plugin_yaml("billing", "1.1.0", policy="nope"), "kind: Plugin\n", "", "[1, 2\n",
                     plugin_yaml("billing", "1.1.0", extra="  targets: {tier: [nowhere]}\n"),
                     "a: !!python/object:os.system x\n", "version: 2025-02-30\n"]).map(str.encode),
    st.binary(max_size=48),
    st.text(max_size=40).map(lambda t: t.encode("utf-16")),
    st.text(alphabet="aé€: -\n", max_size=40).map(lambda t: t.encode("latin-1", "replace")),
    st.tuples(st.just("deep"), st.integers(10, 400)),
    st.tuples(st.just("bomb"), st.integers(2, 12)),
    st.tuples(st.just("huge"), st.just((1 << 20) + 7)),
)
Payload = bytes | str | tuple[str, int]  # a file's bytes (or a recipe, printed short in a failure), a link's target


def materialize(recipe: bytes | tuple[str, int]) -> bytes:
    if isinstance(recipe, bytes):
        return recipe
    kind, size = recipe
    return deep(size) if kind == "deep" else bomb(size) if kind == "bomb" else b"#" * size



@st.composite
def entries(draw: st.DrawFn) -> list[tuple[str, str, Payload]]:
    """(path, kind, payload): kind file (bytes), symlink (target), fifo (working tree only)."""
    found = []
    for _ in range(draw(st.integers(1, 6))):
        directory = draw(st.sampled_from(DIRECTORIES))
        name = draw(st.one_of(st.sampled_from(PLAIN_NAMES), ODD_NAME))
        path = f"{directory}/{name}" if directory else name
        kind = draw(st.sampled_from(["file", "file", "symlink", "fifo"]))
        if kind == "file":
            found.append((path, kind, draw(CONTENT)))
        elif kind == "symlink":
            found.append((path, kind, draw(st.sampled_from(["OUTSIDE/billing.yaml", "OUTSIDE", "/dev/zero",
                                                            "/nonexistent/x", name, "../../outside/billing.yaml"]))))
        else:
            found.append((path, kind, b""))
    return found


def listing(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def build(human: Human, tree: list[tuple[str, str, Payload]], outside: Path, fifos: bool) -> None:
    """The base fleet, then each generated entry over it (an entry that cannot be made where it is is skipped).
    Nothing here ever writes through a symlink: what is in the way is unlinked first."""
    items: list[tuple[str, str, Payload]] = [(path, "file", text.encode()) for path, text in BASE.items()]
    for path, kind, payload in [*items, *tree]:
        target = human.clone / path
        parents = [human.clone / "/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        if any(p.is_symlink() or (p.exists() and not p.is_dir()) for p in parents):
            continue  # a generated symlink or file stands where this entry's directory would be
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                target.unlink()
            if kind == "file":
                assert not isinstance(payload, str)
                with open(target, "xb") as out:  # exclusive: never through a symlink
                    out.write(materialize(payload))
            elif kind == "symlink":
                assert isinstance(payload, str)
                os.symlink(payload.replace("OUTSIDE", str(outside)), target)
            elif fifos:
                os.mkfifo(target)
        except (OSError, AssertionError):
            continue


def with_parents(names: set[str]) -> set[str]:
    return names | {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)} | {"grayops.yaml"}


def committed_paths(human: Human) -> set[str]:
    """The paths as committed, byte for byte (text mode would turn a `\\r` in a name into `\\n`)."""
    listing = subprocess.run(["git", "ls-tree", "-r", "-z", "--name-only", "HEAD"], cwd=human.clone, check=True,
                             capture_output=True).stdout.decode("utf-8", errors="replace")
    return with_parents(set(listing.split("\0")) - {""})


def disk_paths(root: Path) -> set[str]:
    found = set()
    for folder, dirs, files in os.walk(root):  # never follows a symlinked directory
        rel = os.path.relpath(folder, root)
        dirs[:] = [d for d in dirs if not (rel == "." and d == ".git")]
        found |= {name if rel == "." else f"{rel}/{name}" for name in [*dirs, *files]}
    return with_parents(found)


def check_errors(errors: tuple[FleetError, ...], paths: set[str]) -> None:
    for error in errors:
        line = str(error)
        assert line.isprintable(), f"not one printable line: {line!r}"
        assert SENTINEL not in line
        assert error.path in paths, f"{line!r} names no file of the tree"


def check_lines(lines: tuple[str, ...], paths: set[str]) -> None:
    for line in lines:
        assert line.isprintable() and SENTINEL not in line, repr(line)
        assert any(line.startswith(show_path(path) + ":") for path in paths), f"{line!r} names no file of the tree"


def test_any_tree_is_refused_with_messages_naming_files_or_accepted(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "billing.yaml").write_text(plugin_yaml("billing", "6.6.6") + f"# {SENTINEL}\n")
    human = make_fleet_repo(tmp_path)
    human.commit("base", BASE)
    workdir = tmp_path / "work"
    reconciler = Reconciler(GitRepo(str(human.remote), workdir), workdir, builtin_policies(), clock=FakeClock(),
                            poll_interval=0.0)
    reconciler.start()
    before = listing(outside)

    # Each example is a commit and a tick: no shrinking (a failure is reported as generated, recipes keep it short).
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              phases=[Phase.explicit, Phase.generate])
    @given(tree=entries())
    def one_tree(tree: list[tuple[str, str, Payload]]) -> None:
        git(human.clone, "fetch", "-q", "origin")
        git(human.clone, "reset", "-q", "--hard", "origin/main")
        git(human.clone, "clean", "-qfdx")
        git(human.clone, "rm", "-rq", "--ignore-unmatch", ".")
        build(human, tree, outside, fifos=False)
        git(human.clone, "add", "-A")
        git(human.clone, "commit", "-q", "--allow-empty", "-m", "generated")
        git(human.clone, "push", "-q", "origin", "HEAD:main")
        paths = committed_paths(human)

        report = reconciler.tick()  # fetch, read the revision, refuse or act, commit, push: the daemon's tick
        check_lines(report.invalid, paths)
        revision = reconciler.repo.desired_files()
        assert not any(SENTINEL in text for text in revision.values())
        assert not any(SENTINEL in text for text in reconciler.repo.status_files().values())
        try:
            fleet = load_fleet(revision, builtin_policies(), adapters=ADAPTERS)
            assert "6.6.6" not in {p.spec.version for p in fleet.plugins.values()}
        except FleetInvalid as err:
            check_errors(err.errors, paths)
        assert listing(outside) == before

        build(human, tree, outside, fifos=True)  # validate's view: the working tree, FIFOs included
        started = time.monotonic()
        on_disk = read_tree(human.clone)
        assert time.monotonic() - started < 30  # a FIFO opened for reading would block for good
        assert not any(SENTINEL in text for text in on_disk.values())
        try:
            load_fleet(on_disk, builtin_policies(), adapters=ADAPTERS)
        except FleetInvalid as err:
            check_errors(err.errors, disk_paths(human.clone))
        assert listing(outside) == before

    one_tree()
