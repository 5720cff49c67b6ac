"""Trust roots: the keys grayops trusts, read from a directory outside the fleet repository (`grayops run --trust
DIR`, a mounted Secret), so no commit can widen its own trust (README "Supply chain").

Owns reading that directory. Its files, by name:

    allowed_signers        commit signers' SSH keys, git's allowed-signers format (`gpg.ssh.allowedSignersFile`)
    *.asc, *.gpg           commit signers' OpenPGP public keys (armored or binary), read with gpg
    *.pem, *.pub           artifact signers' public keys, PEM (ECDSA P-256, Ed25519; cosign's `cosign.pub`)

Names starting with a dot are skipped (a mounted Secret's `..data` and its timestamped directory); the files it
links to are read through their symlinks, which are the Secret's own. Any other entry, a malformed key, a private
key or an empty file is an error naming the file and why: `load_trust_roots` raises `TrustRootsError` with every
error, never a partial set of roots. Files are at most 1 MiB each.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.adapters.trust.keys import ArtifactKey, SshSigner, parse_allowed_signers, parse_pem_keys

ALLOWED_SIGNERS = "allowed_signers"
OPENPGP_SUFFIXES = (".asc", ".gpg")
PEM_SUFFIXES = (".pem", ".pub")
MAX_ROOT_BYTES = 1 << 20
GPG_TIMEOUT = 30.0


class TrustRootsError(Exception):
    """The trust directory cannot be used as it is: `errors` has one line per problem, each naming its file."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = tuple(errors)


@dataclass(frozen=True)
class OpenPgpKey:
    fingerprint: str
    user_ids: tuple[str, ...]
    path: Path


@dataclass(frozen=True)
class TrustRoots:
    """What a trust directory holds. Empty roots trust nothing: a required signature then never verifies."""

    directory: Path | None = None
    ssh_signers: tuple[SshSigner, ...] = ()
    allowed_signers: Path | None = None  # the file git is pointed at
    openpgp_keys: tuple[OpenPgpKey, ...] = ()
    artifact_keys: tuple[ArtifactKey, ...] = field(default=())

    @property
    def commit_signers(self) -> int:
        return len(self.ssh_signers) + len(self.openpgp_keys)

    def has_commit_key(self, key: str) -> bool:
        """Whether `key` (SHA256:... of an SSH key, or an OpenPGP fingerprint) is an allowed commit signer."""
        return any(s.key_id == key for s in self.ssh_signers) or \
            any(k.fingerprint.upper() == key.upper() for k in self.openpgp_keys)

    def describe(self) -> str:
        """`trust roots in /etc/grayops/trust: 2 SSH signer(s), 1 OpenPGP key(s), 1 artifact key(s) (sha256:...)`."""
        keys = ", ".join(k.key_id for k in self.artifact_keys)
        return (f"trust roots in {self.directory}: {len(self.ssh_signers)} SSH signer(s), "
                f"{len(self.openpgp_keys)} OpenPGP key(s), {len(self.artifact_keys)} artifact key(s)"
                + (f" ({keys})" if keys else ""))


def load_trust_roots(directory: Path) -> TrustRoots:
    """Every key in `directory`; raises TrustRootsError listing every problem (never a partial set)."""
    errors: list[str] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError as err:
        raise TrustRootsError([f"{directory}: cannot be read ({err.strerror})"]) from None
    signers: list[SshSigner] = []
    allowed: Path | None = None
    pgp: list[OpenPgpKey] = []
    artifact: list[ArtifactKey] = []
    for name in names:
        if name.startswith("."):
            continue
        path = directory / name
        data = _read(path, errors)
        if data is None:
            continue
        if name == ALLOWED_SIGNERS:
            allowed = path
            _take_ssh(path, data, signers, errors)
        elif name.endswith(OPENPGP_SUFFIXES):
            found = inspect_openpgp(path)
            if isinstance(found, str):
                errors.append(found)
            else:
                pgp.extend(found)
        elif name.endswith(PEM_SUFFIXES):
            keys = parse_pem_keys(data, str(path))
            if isinstance(keys, str):
                errors.append(keys)
            else:
                artifact.extend(keys)
        else:
            errors.append(f"{path}: not a trust root file (allowed_signers, *.asc or *.gpg for commit signers, "
                          f"*.pem or *.pub for artifact signers)")
    errors.extend(_duplicates(artifact))
    if errors:
        raise TrustRootsError(errors)
    return TrustRoots(directory, tuple(signers), allowed, tuple(pgp), tuple(artifact))


def _read(path: Path, errors: list[str]) -> bytes | None:
    try:
        info = path.stat()  # through the Secret's symlinks
        if not stat.S_ISREG(info.st_mode):
            errors.append(f"{path}: not a regular file")
            return None
        if info.st_size > MAX_ROOT_BYTES:
            errors.append(f"{path}: {info.st_size} bytes, over the limit of {MAX_ROOT_BYTES}")
            return None
        data = path.read_bytes()
    except OSError as err:
        errors.append(f"{path}: cannot be read ({err.strerror})")
        return None
    if not data.strip():
        errors.append(f"{path}: empty")
        return None
    return data


def _take_ssh(path: Path, data: bytes, signers: list[SshSigner], errors: list[str]) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        errors.append(f"{path}: not UTF-8 text")
        return
    found, problems = parse_allowed_signers(text, str(path))
    signers.extend(found)
    errors.extend(problems)
    if not found and not problems:
        errors.append(f"{path}: no signer (only comments)")


def _duplicates(keys: Sequence[ArtifactKey]) -> list[str]:
    seen: dict[str, str] = {}
    errors = []
    for key in keys:
        first = seen.setdefault(key.fingerprint, key.source)
        if first != key.source:
            errors.append(f"{key.source}: the same key as {first} ({key.key_id})")
    return errors


# --- OpenPGP, through gpg ----------------------------------------------------------------------------------


def inspect_openpgp(path: Path) -> list[OpenPgpKey] | str:
    """The public keys in an OpenPGP key file, read by gpg without importing them anywhere; or why not."""
    with tempfile.TemporaryDirectory(prefix="grayops-gpg-") as home:
        done = run_gpg(Path(home), "--with-colons", "--import-options", "show-only", "--import", str(path))
    if isinstance(done, str):
        return f"{path}: {done}"
    keys: list[OpenPgpKey] = []
    for line in done.stdout.splitlines():
        kind, *fields = line.split(":")
        if kind in ("sec", "ssb"):
            return f"{path}: holds a secret key; trust roots hold public keys only"
        if kind == "pub":
            keys.append(OpenPgpKey("", (), path))
        elif kind == "fpr" and keys and not keys[-1].fingerprint and len(fields) > 8:  # the primary key's
            keys[-1] = OpenPgpKey(fields[8], keys[-1].user_ids, path)
        elif kind == "uid" and keys and len(fields) > 8:
            keys[-1] = OpenPgpKey(keys[-1].fingerprint, (*keys[-1].user_ids, fields[8]), path)
    if done.returncode != 0 or not keys:
        said = [line.removeprefix("gpg: ") for line in done.stderr.splitlines() if line.strip()]
        return f"{path}: not an OpenPGP public key ({said[-1] if said else 'gpg read no key'})"
    return keys


def run_gpg(home: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str] | str:
    """gpg in batch mode on `home` (a throwaway GNUPGHOME), never starting an agent; or why it could not run."""
    home.mkdir(mode=0o700, exist_ok=True)
    conf = home / "gpg.conf"
    if not conf.exists():
        conf.write_text("no-autostart\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPG")}
    env.update(GNUPGHOME=str(home), LC_ALL="C")
    try:
        done = subprocess.run(["gpg", "--batch", "--no-tty", *args], input=input, capture_output=True,
                              env=env, timeout=GPG_TIMEOUT, check=False)
    except OSError as err:
        return f"gpg cannot run ({err.strerror}); install gnupg to use OpenPGP keys"
    except subprocess.TimeoutExpired:
        return f"gpg took longer than {GPG_TIMEOUT:g}s"
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode("utf-8", "replace"),
                                       done.stderr.decode("utf-8", "replace"))
