"""`grayops dashboard` as a user runs it: a child process on a real git remote, read with a plain HTTP client,
stopped with SIGTERM while a browser's event stream is open (README "Web view")."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import FAST_POLICY, Human, free_port, grayops, plugin_yaml, settings_yaml, stop_process, wait_for


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_the_dashboard_serves_the_record_and_stops_cleanly_with_a_stream_open(fleet_repo: Human,
                                                                             tmp_path: Path) -> None:
    fleet_repo.commit("fleet", {"grayops.yaml": settings_yaml({"prod": 2}), "policies/fast.yaml": FAST_POLICY,
                                "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
    port, temp = free_port(), tmp_path / "tmp"
    temp.mkdir()
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "dashboard", "--repo",
                                    str(fleet_repo.remote), "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TMPDIR": str(temp)})
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/") or process.poll() is not None, 120, "the dashboard")
        assert process.poll() is None, log.read_text()
        assert [p.name.startswith("grayops-web-") for p in temp.iterdir()] == [True]  # its clone
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            page = response.read().decode()
        assert "billing" in page and "no rollout recorded" in page
        stream = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        stream.request("GET", "/events")
        events = stream.getresponse()
        assert events.readline().startswith(b"retry:")
    finally:
        code = stop_process(process)
    rest = events.read()  # to its end: the server ended the stream cleanly, not cut it off
    assert rest.startswith(b"event: hello\n") and rest.endswith(b"\n\n")
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text and "graceful shutdown exceeded" not in text, text
    assert list(temp.iterdir()) == []  # the clone is removed


def test_a_remote_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    done = grayops("dashboard", "--repo", str(tmp_path / "nowhere.git"), "--port", str(free_port()))
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("grayops: cannot start: cannot clone ") and "Traceback" not in done.stderr
