"""Secrets named in grayops.yaml (`{env: NAME}` or `{file: PATH}`), read when they are used, never stored.

Read at each use, so a rotated file is picked up; a missing one is `SecretMissing`, whose message names the
variable or file and never holds a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.core.spec import SecretRef


class SecretMissing(Exception):
    pass


def read_secret(ref: SecretRef, environ: Mapping[str, str]) -> str:
    if ref.env is not None:
        value = environ.get(ref.env)
        if not value:
            raise SecretMissing(f"environment variable {ref.env} is not set")
        return value
    assert ref.file is not None
    try:
        return Path(ref.file).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise SecretMissing(f"cannot read {ref.file}: {err.strerror or err}") from None
