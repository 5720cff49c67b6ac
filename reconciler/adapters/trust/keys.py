"""Trust root files, parsed: pure functions from a file's bytes to keys, or to an error naming the file and why.

Owns the formats (README "Supply chain"):

- `allowed_signers`, git's SSH format (ssh-keygen(1) "ALLOWED SIGNERS"): `principals [options] keytype base64-key
  [comment]`, one signer per line; each line is checked (the key decodes and is of its stated type, the options
  are ones ssh-keygen knows) so a typo is an error at load time, not a commit refused later for no clear reason;
- PEM public keys of artifact signers (`*.pem`, `*.pub` as cosign writes `cosign.pub`): ECDSA P-256 or Ed25519,
  each with its key id, `sha256:` + the first 16 hex digits of the SHA-256 of its DER SubjectPublicKeyInfo
  (`fingerprint` has all 64), and `verify(signature, payload)` as cosign signs: ECDSA with SHA-256 (DER
  signature), Ed25519 over the payload itself.

OpenPGP keys need gpg to read; `roots` does that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

SSH_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
                 "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
# The options an allowed_signers line may carry (ssh-keygen(1)); a flag or a name="value".
_SSH_OPTIONS = {"cert-authority": False, "namespaces": True, "valid-after": True, "valid-before": True}
_TIMESTAMP = re.compile(r"\d{8}(\d{4}(\d{2})?)?Z?")


@dataclass(frozen=True)
class SshSigner:
    """One line of allowed_signers."""

    principals: tuple[str, ...]
    key_type: str
    key_id: str  # SHA256:<base64>, as ssh-keygen -l and git's %GK print it
    options: tuple[str, ...]
    line: int


def ssh_key_id(blob: bytes) -> str:
    """`SHA256:...`, the fingerprint ssh-keygen prints for a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_allowed_signers(text: str, path: str) -> tuple[list[SshSigner], list[str]]:
    """The signers of an allowed_signers file and its errors (`path:line: message`), every line checked."""
    signers: list[SshSigner] = []
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = _signer(line, number)
        if isinstance(found, str):
            errors.append(f"{path}:{number}: {found}")
        else:
            signers.append(found)
    return signers, errors


def _signer(line: str, number: int) -> SshSigner | str:
    fields = _split_fields(line)
    if fields is None:
        return "unbalanced double quote"
    if len(fields) < 3:
        return "expected `principals [options] keytype base64-key`"
    principals = tuple(p for p in fields[0].strip('"').split(",") if p)
    if not principals:
        return "no principal (the email or name the signer is allowed as)"
    options: tuple[str, ...] = ()
    rest = fields[1:]
    if rest[0] not in SSH_KEY_TYPES and not re.match(r"(ssh|ecdsa|sk)-", rest[0]):
        options = tuple(_split_options(rest[0]))
        rest = rest[1:]
        for option in options:
            problem = _option_problem(option)
            if problem:
                return problem
    if len(rest) < 2 or rest[0] not in SSH_KEY_TYPES:
        shown = rest[0] if rest else "nothing"
        return f"unknown key type {shown!r} (one of {', '.join(SSH_KEY_TYPES)})"
    key_type, encoded = rest[0], rest[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return f"the {key_type} key is not base64"
    if _blob_type(blob) != key_type:
        return f"the key is not an {key_type} key (it says {_blob_type(blob) or 'nothing readable'})"
    return SshSigner(principals, key_type, ssh_key_id(blob), options, number)


def _split_fields(line: str) -> list[str] | None:
    """Whitespace-separated fields; a double-quoted part may hold spaces."""
    fields: list[str] = []
    current, quoted = "", False
    for char in line:
        if char == '"':
            quoted = not quoted
        if char.isspace() and not quoted:
            if current:
                fields.append(current)
            current = ""
        else:
            current += char
    if quoted:
        return None
    if current:
        fields.append(current)
    return fields


def _split_options(text: str) -> list[str]:
    options, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            options.append(current)
            current = ""
        else:
            current += char
    options.append(current)
    return options


def _option_problem(option: str) -> str | None:
    name, eq, value = option.partition("=")
    takes_value = _SSH_OPTIONS.get(name.lower())
    if takes_value is None:
        return f"unknown option {name!r} (one of {', '.join(_SSH_OPTIONS)})"
    if takes_value != bool(eq):
        return f"option {name} {'needs a value' if takes_value else 'takes no value'}"
    if name.lower().startswith("valid-") and not _TIMESTAMP.fullmatch(value.strip('"')):
        return f"option {name}: {value} is not a time (YYYYMMDD[HHMM[SS]][Z])"
    return None


def _blob_type(blob: bytes) -> str | None:
    """The key type an SSH public key blob starts with (a length-prefixed string)."""
    if len(blob) < 4:
        return None
    (size,) = struct.unpack(">I", blob[:4])
    if size > 64 or len(blob) < 4 + size:
        return None
    try:
        return blob[4:4 + size].decode("ascii")
    except UnicodeDecodeError:
        return None


# --- artifact keys (PEM) ---------------------------------------------------------------------------------------

KeyAlgorithm = Literal["ecdsa-p256", "ed25519"]
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


@dataclass(frozen=True)
class ArtifactKey:
    """A trusted artifact signer's public key."""

    key_id: str  # sha256:<16 hex>, short, for messages and records
    fingerprint: str  # sha256:<64 hex> of the DER SubjectPublicKeyInfo
    algorithm: KeyAlgorithm
    source: str  # the file it came from
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

    def verify(self, signature: bytes, payload: bytes) -> bool:
        """Whether `signature` is this key's over `payload`, as cosign signs (ECDSA P-256 with SHA-256, DER)."""
        try:
            if isinstance(self.public_key, ec.EllipticCurvePublicKey):
                self.public_key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            else:
                self.public_key.verify(signature, payload)
        except (InvalidSignature, ValueError):
            return False
        return True


def parse_pem_keys(data: bytes, path: str) -> list[ArtifactKey] | str:
    """The public keys of a PEM file (one or more `PUBLIC KEY` blocks), or why it is not one (`path: message`)."""
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        return f"{path}: no PEM block (-----BEGIN PUBLIC KEY-----)"
    keys: list[ArtifactKey] = []
    for index, (label, _) in enumerate(blocks, start=1):
        where = path if len(blocks) == 1 else f"{path} (block {index})"
        if b"PRIVATE" in label:
            return f"{where}: a private key; trust roots hold public keys only"
        if label != b"PUBLIC KEY":
            return f"{where}: a {label.decode()} block, not a PUBLIC KEY"
    for index, match in enumerate(_PEM_BLOCK.finditer(data), start=1):
        where = path if len(blocks) == 1 else f"{path} (block {index})"
        key = _artifact_key(match.group(0), where, path)
        if isinstance(key, str):
            return key
        keys.append(key)
    return keys


def _artifact_key(pem: bytes, where: str, path: str) -> ArtifactKey | str:
    try:
        public = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as err:
        return f"{where}: not a readable public key ({err})"
    algorithm: KeyAlgorithm
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, ec.SECP256R1):
            return f"{where}: an ECDSA key on {public.curve.name}; artifact keys are ECDSA P-256 or Ed25519"
        algorithm = "ecdsa-p256"
    elif isinstance(public, ed25519.Ed25519PublicKey):
        algorithm = "ed25519"
    else:
        kind = next((name for cls, name in ((rsa.RSAPublicKey, "an RSA"), (dsa.DSAPublicKey, "a DSA"),
                                            (ed448.Ed448PublicKey, "an Ed448")) if isinstance(public, cls)), "this")
        return f"{where}: {kind} key; artifact keys are ECDSA P-256 or Ed25519"
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(der).hexdigest()
    return ArtifactKey(f"sha256:{digest[:16]}", f"sha256:{digest}", algorithm, path, public)
