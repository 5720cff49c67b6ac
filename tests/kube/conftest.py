"""Fixtures: three emulated API servers on loopback and a kubeconfig with one context each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.kube.emulator import Emulator, kubeconfig
from tests.kube.fleet import NAMES, Fleet


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Fleet]:
    emulators = [Emulator(name).start() for name in NAMES]
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig(emulators)))
    try:
        yield Fleet(emulators, path)
    finally:
        for emulator in emulators:
            emulator.stop()
