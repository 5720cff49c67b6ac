"""Fixtures: a factory that starts real Prometheus servers and stops them after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.prom.promserver import Prometheus

StartPrometheus = Callable[[Sequence[str]], Prometheus]


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    """`start_prometheus(["127.0.0.1:PORT", ...])` -> a running server scraping those targets every second."""
    started: list[Prometheus] = []

    def start(targets: Sequence[str]) -> Prometheus:
        server = Prometheus(tmp_path / f"prometheus-{len(started)}", targets)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
