"""The supply chain in the daemon (README "Supply chain"): the trust roots and grayops' own signing key for the
process's life, and the judgement of a revision's commit against them.

`SupplyChain.open(--trust, --signing-key)` loads the roots (an error names every bad file: grayops does not start
on them) and checks the signing key; `refresh()` loads the roots again when their directory changes (a Secret
updated in place) and keeps the last good ones when the new ones are bad. `sign_in(clone)` makes git sign every
commit made in grayops' clone (its records, the commands it commits, the rebases that rewrite them).
`CommitTrust.judge` is the revision source's question: is the commit at HEAD trusted under the rule in force?
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from reconciler.adapters.trust.commits import CommitVerifier, SigningConfig, SigningKeyError, signing_config
from reconciler.adapters.trust.roots import TrustRoots, TrustRootsError, load_trust_roots
from reconciler.core.trust import CommitVerdict

log = logging.getLogger("grayops")


class TrustSetupError(Exception):
    """`--trust` or `--signing-key` cannot be used; the message is one line naming the file and why."""


class SupplyChain:
    """The trust roots in force and the key grayops signs with. Without `--trust` the roots are empty: they trust
    nothing, so a required signature never verifies."""

    def __init__(self, directory: Path | None, roots: TrustRoots, signing: SigningConfig | None) -> None:
        self.directory, self.roots, self.signing = directory, roots, signing
        self.verifier = CommitVerifier(roots)
        self._seen = _fingerprint(directory)

    @classmethod
    def open(cls, directory: str | None, signing_key: str | None) -> SupplyChain:
        """Load `directory`'s roots and check `signing_key`; raises TrustSetupError."""
        path = Path(directory).resolve() if directory else None
        try:
            roots = load_trust_roots(path) if path else TrustRoots()
            signing = signing_config(signing_key) if signing_key else None
        except (TrustRootsError, SigningKeyError) as err:
            flag = "--trust" if isinstance(err, TrustRootsError) else "--signing-key"
            raise TrustSetupError(f"{flag}: {err}") from None
        if signing is not None and path is not None and not roots.has_commit_key(signing.key_id):
            raise TrustSetupError(f"--signing-key: its key {signing.key_id} is not an allowed signer in {path}; "
                                  "add its public key there, or grayops' own commits would not verify")
        try:
            made = cls(path, roots, signing)
        except TrustRootsError as err:
            raise TrustSetupError(f"--trust: {err}") from None
        atexit.register(made.close)  # the verifier's throwaway keyring
        if path is not None:
            log.info("%s", roots.describe())
        return made

    @property
    def own_keys(self) -> tuple[str, ...]:
        return (self.signing.key_id,) if self.signing else ()

    def refresh(self) -> None:
        """Load the roots again if their directory changed; bad new roots are logged and the last good stay."""
        seen = _fingerprint(self.directory)
        if self.directory is None or seen == self._seen:
            return
        self._seen = seen
        try:
            roots = load_trust_roots(self.directory)
            verifier = CommitVerifier(roots)
        except TrustRootsError as err:
            log.error("trust roots in %s changed but cannot be used, the last good ones stay in force: %s",
                      self.directory, err)
            return
        self.verifier.close()
        self.roots, self.verifier = roots, verifier
        log.info("trust roots reloaded: %s", roots.describe())

    def sign_in(self, clone: Path) -> None:
        """Make git sign every commit in `clone` with grayops' key (worktrees share the clone's config); without
        one, sign none, whatever key the clone was told before (a stale one would make every commit fail)."""
        settings = self.signing.config if self.signing else (("commit.gpgsign", "false"),)
        for key, value in settings:
            subprocess.run(["git", "config", key, value], cwd=clone, check=True, capture_output=True,
                           stdin=subprocess.DEVNULL)

    def close(self) -> None:
        self.verifier.close()


def _fingerprint(directory: Path | None) -> tuple[tuple[str, int, int], ...]:
    """What tells that a trust directory changed: each entry's name, size and mtime, through its symlinks."""
    if directory is None:
        return ()
    return tuple(_entries(directory))


def _entries(directory: Path) -> Iterator[tuple[str, int, int]]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return
    for name in names:
        try:
            info = (directory / name).stat()
        except OSError:
            yield name, -1, -1
            continue
        yield name, info.st_size, info.st_mtime_ns


class CommitTrust:
    """Judges the commit a revision is read from, and remembers the last revision it verified, so grayops' own
    commits above it pass and the walk stays short."""

    def __init__(self, supply: SupplyChain | None) -> None:
        self._supply = supply or SupplyChain(None, TrustRoots(), None)
        self._verified: str | None = None
        self._alerted: set[str] = set()
        self.signer: str | None = None  # who vouched for the revision in force ("alice@example.com (SHA256:...)")

    def judge(self, repo: Path, head: str) -> CommitVerdict:
        """The verdict on the revision at `head` (README "Supply chain": the head decides, grayops' own commits
        vouch for nothing)."""
        known = (self._verified,) if self._verified else ()
        verdict = self._supply.verifier.verify_revision(repo, head, self._supply.own_keys, known)
        if not verdict.verified and not self._supply.roots.commit_signers:
            verdict = _no_roots(verdict)
        return replace(verdict, commit=verdict.decided_by or head)  # the commit that decided, for the alert

    def verified(self, commit: str, verdict: CommitVerdict | None = None) -> None:
        """`commit`'s revision is in force; `verdict` is its signature's, None when none was required."""
        self._verified = commit
        if verdict is None:
            self.signer = None
        elif verdict.key is not None:  # else only grayops' own commits above the last one: its signer stands
            self.signer = f"{verdict.signer} ({verdict.key})" if verdict.signer else verdict.key

    def first_alert(self, verdict: CommitVerdict) -> bool:
        """True once per refused commit: the alert is not repeated for the same commit."""
        key = verdict.decided_by or verdict.commit
        if key in self._alerted:
            return False
        self._alerted.add(key)
        return True

    def refresh(self) -> None:
        self._supply.refresh()

    def sign_in(self, clone: Path) -> None:
        self._supply.sign_in(clone)


def _no_roots(verdict: CommitVerdict) -> CommitVerdict:
    return replace(verdict, reason=f"{verdict.reason or verdict.status}; no commit signer is trusted (grayops run "
                                   "--trust DIR with an allowed_signers file or OpenPGP keys)")


def last_change(clone: Path, commit: str, path: str) -> str | None:
    """The newest commit at or below `commit` that changed `path` (None: none did, or git cannot tell)."""
    done = subprocess.run(["git", "log", "-1", "--format=%H", commit, "--", path], cwd=clone, capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL)
    found = done.stdout.strip()
    return found if done.returncode == 0 and found else None
