"""Commit signatures, verified by git itself against the trust roots; and grayops' own commits, signed.

Owns (README "Supply chain"):

- `CommitVerifier(roots)`: `verify(repo, commit)` runs `git verify-commit --raw` (the decision) and reads git's
  signature fields (`%G?`, signer, key) for the verdict, with `gpg.ssh.allowedSignersFile` pointed at the roots'
  allowed_signers and, for OpenPGP, a throwaway GNUPGHOME holding only the roots' keys (trusted ultimately: being
  in the trust directory is the trust), never the user's keyring and never an agent. It never raises: a commit
  that cannot be checked is refused with the reason.
- `verify_revision(repo, head, own_keys, known_good)`: the rule for a revision. Only the head needs a trusted
  signature, and a signer who signs on top of unsigned commits vouches for them (as Argo CD and Flux verify the
  head); but grayops' own commits (its records and the commands it commits for chat and CLI users, signed with its
  `--signing-key`) vouch for nothing: the first commit down the first-parent line that is not grayops' own
  decides, so a grayops commit rebased onto an unsigned push cannot launder it. The walk stops at `known_good`
  (the last revision already verified).
- `signing_config(key)`: the git settings that make git sign grayops' commits with `key` (an SSH private key
  file, or an OpenPGP key id in the ambient GNUPGHOME), to pass as `-c` options or write into the clone's config;
  rebases then re-sign the commits they rewrite.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, cast

from reconciler.adapters.gitrepo import _git_env
from reconciler.adapters.trust.keys import ssh_key_id
from reconciler.adapters.trust.roots import TrustRoots, TrustRootsError, run_gpg
from reconciler.core.trust import CommitStatus, CommitVerdict, is_own_commit

GIT_TIMEOUT = 60.0
WALK_LIMIT = 1000  # first-parent commits looked at for one revision before giving up
_FIELDS = "%H%x1f%G?%x1f%GS%x1f%GK%x1f%GF%x1f%GP%x1f%an <%ae>%x1e"
_STATUS: dict[str, tuple[CommitStatus, str]] = {
    "B": ("bad_signature", "bad signature (the commit or its signature was altered)"),
    "U": ("unknown_signer", "signed by a key that is not an allowed signer"),
    "E": ("unknown_signer", "signed by a key that is not among the trusted keys"),
    "X": ("expired", "the signature has expired"),
    "Y": ("expired", "signed by an expired key"),
    "R": ("revoked", "signed by a revoked key"),
    "N": ("unsigned", "unsigned"),
}


@dataclass(frozen=True)
class _Signature:
    """One commit as `git log` shows its signature (`_FIELDS`)."""

    commit: str
    code: str
    signer: str
    key: str
    author: str


class CommitVerifier:
    """Verifies commits against one set of trust roots. `close()` removes its throwaway keyring."""

    def __init__(self, roots: TrustRoots, scratch: Path | None = None) -> None:
        self.roots = roots
        self._home = Path(tempfile.mkdtemp(prefix="grayops-trust-", dir=scratch))
        self._gnupg = self._home / "gnupg"
        self._allowed = roots.allowed_signers or self._empty_allowed_signers()
        try:
            self._import_openpgp()
        except BaseException:
            self.close()
            raise

    def _empty_allowed_signers(self) -> Path:
        path = self._home / "allowed_signers"
        path.write_text("")
        return path

    def _import_openpgp(self) -> None:
        self._gnupg.mkdir(mode=0o700)
        for path in dict.fromkeys(k.path for k in self.roots.openpgp_keys):
            done = run_gpg(self._gnupg, "--quiet", "--import", str(path))
            if isinstance(done, str) or done.returncode != 0:
                said = done if isinstance(done, str) else done.stderr.strip().splitlines()[-1:]
                raise TrustRootsError([f"{path}: gpg cannot import it ({said})"])
        if self.roots.openpgp_keys:
            trust = "".join(f"{k.fingerprint}:6:\n" for k in self.roots.openpgp_keys).encode()
            done = run_gpg(self._gnupg, "--quiet", "--import-ownertrust", input=trust)
            if isinstance(done, str) or done.returncode != 0:
                raise TrustRootsError([f"{self.roots.directory}: gpg cannot trust the OpenPGP keys"])

    def close(self) -> None:
        shutil.rmtree(self._home, ignore_errors=True)

    def __enter__(self) -> CommitVerifier:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- one commit -------------------------------------------------------------------------------------

    def verify(self, repo: Path, commit: str) -> CommitVerdict:
        """`commit`'s signature judged by git against the roots; never raises."""
        try:
            shown = self._git(repo, "show", "-s", f"--format={_FIELDS}", commit, "--")
            signatures = _parse(shown.stdout)
            if shown.returncode != 0 or len(signatures) != 1:
                return CommitVerdict(commit, "error", reason=f"git cannot show it: {_complaint(shown.stderr)}")
            decided = self._git(repo, "verify-commit", "--raw", signatures[0].commit)
        except (OSError, subprocess.TimeoutExpired) as err:
            return CommitVerdict(commit, "error", reason=f"git could not verify it: {err}")
        return _verdict(signatures[0], decided.returncode == 0, decided.stderr)

    # --- a revision ---------------------------------------------------------------------------------------

    def verify_revision(self, repo: Path, head: str, own_keys: Sequence[str] = (),
                        known_good: Collection[str] = (), limit: int = WALK_LIMIT) -> CommitVerdict:
        """The verdict on the revision at `head` (see the module's rule); `commit` is `head`, `decided_by` the
        commit whose signature decided. Never raises."""
        try:
            for seen, signature in enumerate(self._first_parents(repo, head, known_good)):
                if seen >= limit:
                    return CommitVerdict(head, "error", reason=f"no commit but grayops' own in the {limit} commits "
                                                               f"below it")
                verdict = _verdict(signature, signature.code == "G", "")
                if is_own_commit(verdict, own_keys):
                    continue
                if verdict.verified:  # git log said so: git verify-commit decides
                    verdict = self.verify(repo, signature.commit)
                return replace(verdict, commit=head, decided_by=signature.commit)
        except (OSError, subprocess.TimeoutExpired, _GitFailed) as err:
            return CommitVerdict(head, "error", reason=f"git could not list its history: {err}")
        if known_good:
            return CommitVerdict(head, "verified", reason=None, decided_by=next(iter(known_good)),
                                 signer="grayops (its own commits above a verified revision)")
        return CommitVerdict(head, "error", reason="only grayops' own commits: nobody allowed signed this history")

    def _first_parents(self, repo: Path, head: str, known_good: Collection[str]) -> Iterator[_Signature]:
        """The commits from `head` down its first-parent line, stopping before any of `known_good`; git checks
        each signature as it lists it, so the walk stops as soon as one decides."""
        command = ["git", *self._config(), "log", "--first-parent", f"--format={_FIELDS}", head,
                   *(f"^{c}" for c in known_good), "--"]
        with tempfile.TemporaryFile() as errors, subprocess.Popen(
                command, cwd=repo, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL,
                env=self._env()) as proc:
            stdout = cast("Iterator[bytes]", proc.stdout)
            buffer = b""
            try:
                for chunk in stdout:
                    buffer += chunk
                    while b"\x1e" in buffer:
                        record, _, buffer = buffer.partition(b"\x1e")
                        yield from _parse(record.decode("utf-8", "replace"))
            finally:
                if proc.poll() is None:  # stopped early: the rest of the history is not needed
                    proc.kill()
                proc.wait(timeout=GIT_TIMEOUT)
            if proc.returncode != 0:
                errors.seek(0)
                raise _GitFailed(_complaint(errors.read().decode("utf-8", "replace")))

    # --- running git ----------------------------------------------------------------------------------------

    def _config(self) -> list[str]:
        return ["-c", f"gpg.ssh.allowedSignersFile={self._allowed}", "-c", "gpg.program=gpg",
                "-c", "gpg.ssh.program=ssh-keygen", "-c", "gpg.minTrustLevel=undefined"]

    def _env(self) -> dict[str, str]:
        env = _git_env()
        env["GNUPGHOME"] = str(self._gnupg)
        return env

    def _git(self, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *self._config(), *args], cwd=repo, capture_output=True, text=True,
                              encoding="utf-8", errors="replace", env=self._env(), timeout=GIT_TIMEOUT,
                              check=False)


class _GitFailed(Exception):
    pass


def _parse(text: str) -> list[_Signature]:
    found = []
    for record in text.split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) == 7 and re.fullmatch(r"[0-9a-f]{40,64}", fields[0]):
            commit, code, signer, key, fingerprint, primary, author = fields
            found.append(_Signature(commit, code, signer, primary or fingerprint or key, author))
    return found


def _verdict(signature: _Signature, accepted: bool, raw: str) -> CommitVerdict:
    """What git's status letter and `verify-commit`'s answer mean; both must say good for a verified commit."""
    base = CommitVerdict(signature.commit, "error", author=signature.author or None,
                         signer=signature.signer or None, key=signature.key or None)
    if signature.code == "G" and accepted:
        return replace(base, status="verified")
    if signature.code == "G":
        return replace(base, reason=f"git verify-commit refused it: {_complaint(raw)}")
    status, reason = _STATUS.get(signature.code, ("error", f"git reports signature status {signature.code!r}"))
    if "key has expired" in raw or "is not yet valid" in raw:  # an allowed_signers valid-before/-after window
        status, reason = "expired", "signed outside the signer's validity in allowed_signers"
    if signature.key and status != "unsigned":
        reason += f" ({signature.key})"
    return replace(base, status=status, reason=reason)


def _complaint(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("[GNUPG:]")]
    return lines[-1] if lines else "no output"


# --- signing grayops' own commits ----------------------------------------------------------------------------


class SigningKeyError(Exception):
    """`--signing-key` cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class SigningConfig:
    """How git signs grayops' commits, and the key id its signatures will show (for the revision rule)."""

    format: Literal["ssh", "openpgp"]
    key_id: str  # SHA256:... for SSH, the primary key's fingerprint for OpenPGP
    config: tuple[tuple[str, str], ...]

    def options(self) -> list[str]:
        """`-c key=value` pairs for a git command line."""
        return [part for key, value in self.config for part in ("-c", f"{key}={value}")]


def signing_config(key: str, env: dict[str, str] | None = None) -> SigningConfig:
    """The git settings that sign with `key`: a path to an SSH private key (unencrypted: grayops signs unattended,
    mode 0600 or stricter as ssh-keygen demands), or an OpenPGP key id, fingerprint or email whose secret key is
    in the GNUPGHOME of `env`. Raises SigningKeyError saying why not."""
    path = Path(key).expanduser()
    if path.exists() or os.sep in key:
        return _ssh_signing(path)
    return _openpgp_signing(key, dict(os.environ) if env is None else env)


def _ssh_signing(path: Path) -> SigningConfig:
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise SigningKeyError(f"{path}: cannot be read ({err.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(f"{path}: readable by others (mode {stat.S_IMODE(mode):04o}); ssh-keygen refuses to "
                              f"sign with it: make it 0600 (on Kubernetes, defaultMode: 0400 on the Secret volume)")
    try:
        done = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(path)], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except OSError as err:
        raise SigningKeyError(f"ssh-keygen cannot run ({err.strerror}); install openssh-client") from None
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) < 2:
        said = _complaint(done.stderr)
        hint = "; grayops signs unattended, so the key must have no passphrase" if "passphrase" in said else ""
        raise SigningKeyError(f"{path}: not an SSH private key ssh-keygen can use ({said}){hint}")
    key_id = ssh_key_id(base64.b64decode(fields[1]))
    return SigningConfig("ssh", key_id, (("gpg.format", "ssh"), ("user.signingkey", str(path.resolve())),
                                         ("gpg.ssh.program", "ssh-keygen"), ("commit.gpgsign", "true")))


def _openpgp_signing(key: str, env: dict[str, str]) -> SigningConfig:
    env = {**env, "LC_ALL": "C"}
    try:
        done = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys", key], capture_output=True,
                              text=True, env=env, timeout=GIT_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except OSError as err:
        raise SigningKeyError(f"gpg cannot run ({err.strerror}); install gnupg, or sign with an SSH key") from None
    fingerprints = [line.split(":")[9] for line in done.stdout.splitlines()
                    if line.startswith("fpr:") and len(line.split(":")) > 9]
    secrets = done.stdout.count("\nsec:") + done.stdout.startswith("sec:")
    if done.returncode != 0 or not fingerprints:
        raise SigningKeyError(f"{key}: neither an SSH key file nor an OpenPGP secret key in "
                              f"{env.get('GNUPGHOME', '~/.gnupg')} ({_complaint(done.stderr)})")
    if secrets != 1:
        raise SigningKeyError(f"{key}: matches {secrets} OpenPGP secret keys; give its fingerprint")
    return SigningConfig("openpgp", fingerprints[0], (("gpg.format", "openpgp"), ("user.signingkey", fingerprints[0]),
                                                      ("gpg.program", "gpg"), ("commit.gpgsign", "true")))
