"""People who sign commits, as they would: SSH keys made by ssh-keygen, OpenPGP keys made by gnupg in a GNUPGHOME
of their own (batch, no passphrase), and git told to sign with them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def run(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL).stdout


@dataclass(frozen=True)
class SshSigner:
    email: str
    key: Path  # the private key

    @property
    def public(self) -> str:
        return " ".join(self.key.with_suffix(".pub").read_text().split()[:2])

    @property
    def key_id(self) -> str:
        return run("ssh-keygen", "-l", "-f", str(self.key.with_suffix(".pub"))).split()[1]

    def line(self, options: str = "") -> str:
        """Its allowed_signers line."""
        return f"{self.email} {options + ' ' if options else ''}{self.public}\n"

    def options(self) -> list[str]:
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.key}", "-c", "commit.gpgsign=true"]


def ssh_signer(root: Path, name: str) -> SshSigner:
    key = root / f"{name}.key"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key))
    key.with_suffix(".pub").write_text((root / f"{name}.key.pub").read_text())
    return SshSigner(f"{name}@example.com", key)


@dataclass(frozen=True)
class GpgSigner:
    email: str
    home: Path  # its GNUPGHOME, with the secret key
    fingerprint: str
    program: str = "gpg"  # git's gpg.program (a wrapper that fakes the time, for an expired key)

    def export(self, path: Path) -> Path:
        path.write_text(run("gpg", "--batch", "--armor", "--export", self.fingerprint, env=self.env()))
        return path

    def env(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.home)}

    def options(self) -> list[str]:
        return ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={self.fingerprint}", "-c", "commit.gpgsign=true",
                "-c", f"gpg.program={self.program}"]

    def stop(self) -> None:
        """End the gpg-agent that signing started in its home."""
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, **self.env()}, check=False,
                       capture_output=True)


def gpg_signer(root: Path, name: str, *, faked_time: str | None = None, expires: str = "1y") -> GpgSigner:
    """A key made (and used, through `program`) at `faked_time` when given, e.g. to have one expired by now."""
    home = root / f"gnupg-{name}"
    home.mkdir(mode=0o700)
    fake = ["--faked-system-time", faked_time] if faked_time else []
    env = {"GNUPGHOME": str(home)}
    run("gpg", "--batch", "--quiet", "--passphrase", "", *fake, "--quick-gen-key",
        f"{name.title()} <{name}@example.com>", "ed25519", "sign", expires, env=env)
    listing = run("gpg", "--batch", "--with-colons", "--list-keys", env=env)
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    program = "gpg"
    if faked_time:
        wrapper = root / f"gpg-{name}"
        wrapper.write_text(f"#!/bin/sh\nexec gpg --faked-system-time {faked_time} \"$@\"\n")
        wrapper.chmod(0o755)
        program = str(wrapper)
    return GpgSigner(f"{name}@example.com", home, fingerprint, program)


def commit(repo: Path, message: str, *, options: list[str] | None = None, env: Mapping[str, str] | None = None,
           author: str = "Alice Ops <alice@example.com>") -> str:
    """A commit of one new file, signed as `options` say (none: unsigned)."""
    (repo / f"{len(list(repo.iterdir()))}.txt").write_text(message)
    run("git", "add", "-A", cwd=repo)
    name, _, email = author.partition(" <")
    run("git", "-c", f"user.name={name}", "-c", f"user.email={email.rstrip('>')}", *(options or []), "commit", "-q",
        "-m", message, cwd=repo, env=env)
    return run("git", "rev-parse", "HEAD", cwd=repo).strip()


def new_repo(path: Path) -> Path:
    run("git", "init", "-q", "-b", "main", str(path))
    return path
