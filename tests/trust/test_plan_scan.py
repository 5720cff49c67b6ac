"""`grayops plan` shows the scan gate's verdict before the merge (README "Supply chain"): for a plugin with an `image`
and a `scan` policy, the findings per severity of the version's report in the real registry and whether it would
pass `maxSeverity`, or one line saying why that is not known; in `-o json` too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import FAST_POLICY, Human, free_port, grayops, make_fleet_repo, plugin_yaml, settings_yaml
from tests.trust.registry import Registry, trivy_report

REPO = "plugins/plan"
SCAN_POLICY = FAST_POLICY.replace("spec:\n", "spec:\n  scan: {maxSeverity: HIGH}\n", 1)


def fleet(tmp_path: Path, host: str, version: str, policy: str = SCAN_POLICY) -> Human:
    tmp_path.mkdir()
    human = make_fleet_repo(tmp_path)
    human.commit("fleet", {
        "grayops.yaml": settings_yaml({"canary": 1}, f"registries:\n  - {{host: '{host}', insecure: true}}\n"),
        "policies/fast.yaml": policy,
        "plugins/billing.yaml": plugin_yaml("billing", version, extra=f"  image: {host}/{REPO}\n")})
    return human


def plan(human: Human, *fmt: str) -> str:
    done = grayops("plan", "--repo", str(human.clone), *fmt)
    assert done.returncode == 0, done.stderr
    return done.stdout


def scan_of(human: Human) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(plan(human, "-o", "json"))["plugins"][0]["scan"]
    return found


def test_plan_shows_the_scan_summary_and_whether_it_would_pass(tmp_path: Path, registry: Registry) -> None:
    clean = registry.push_image(REPO, "1.0.0")
    registry.attach_report(REPO, clean, trivy_report([{"id": "CVE-2025-1", "severity": "HIGH"}]))
    human = fleet(tmp_path / "clean", registry.host, "1.0.0")
    image = f"{registry.host}/{REPO}:1.0.0"
    assert (f"  scan: {image}: 0 CRITICAL, 1 HIGH, 0 MEDIUM, 0 LOW, 0 UNKNOWN: passes maxSeverity HIGH\n"
            in plan(human))
    assert scan_of(human) == {"image": image, "digest": clean, "maxSeverity": "HIGH", "passes": True,
                              "counts": {"CRITICAL": 0, "HIGH": 1, "MEDIUM": 0, "LOW": 0, "UNKNOWN": 0},
                              "reason": ""}
    assert "Scan: " in plan(human, "-o", "markdown")

    bad = registry.push_image(REPO, "2.0.0")
    registry.attach_report(REPO, bad, trivy_report([{"id": "CVE-2025-9", "severity": "CRITICAL"}]))
    human = fleet(tmp_path / "bad", registry.host, "2.0.0")
    text = plan(human)
    assert f"  scan: {registry.host}/{REPO}:2.0.0: 1 CRITICAL, 0 HIGH, 0 MEDIUM, 0 LOW, 0 UNKNOWN: would block: " \
           "1 finding(s) above maxSeverity HIGH: CVE-2025-9 (CRITICAL)\n" in text
    found = scan_of(human)
    assert found["passes"] is False and found["counts"]["CRITICAL"] == 1 and "CVE-2025-9" in found["reason"]


def test_plan_says_in_one_line_why_the_scan_is_not_known(tmp_path: Path, registry: Registry) -> None:
    human = fleet(tmp_path / "missing", registry.host, "9.9.9")
    assert f"  scan: not known: {registry.host}/{REPO}:9.9.9: not found (" in plan(human)
    found = scan_of(human)
    assert found["passes"] is None and found["counts"] is None and "not found" in found["reason"]

    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    human = fleet(tmp_path / "down", down, "1.0.0")
    lines = [line for line in plan(human).splitlines() if "scan:" in line]
    assert len(lines) == 1 and lines[0].startswith(f"  scan: not known: {down}/{REPO}:1.0.0: "), lines

    human = fleet(tmp_path / "unscanned", registry.host, "1.0.0", policy=FAST_POLICY)  # no scan policy: no line
    assert "scan:" not in plan(human) and scan_of(human) is None
