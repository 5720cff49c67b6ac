"""Fixtures: a real registry per test module (tests use their own repositories in it), or per test where the test
stops and starts it; and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.adapters.trust.oci import RegistryClient
from reconciler.core.spec import RegistrySettings
from tests.trust.registry import Registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    server = Registry(Path(tmp_path_factory.mktemp("registry"))).start()
    yield server
    server.stop()


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[Registry]:
    """A registry of this test's own, which the test may stop and start."""
    server = Registry(tmp_path / "registry").start()
    yield server
    server.stop()


def client_for(server: Registry, timeout: float = 5.0) -> RegistryClient:
    return RegistryClient([RegistrySettings(host=server.host, insecure=True)], env={}, timeout=timeout)


@pytest.fixture
def client(registry: Registry) -> Iterator[RegistryClient]:
    made = client_for(registry)
    yield made
    made.close()
