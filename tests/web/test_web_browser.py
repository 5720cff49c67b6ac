"""The web view in a real browser over a live sim rollout: `grayops run` and `grayops dashboard` in child
processes on a real git remote, chromium following a rollout from the canary to done and through a rollback,
live (server-sent events, no reload), with the keyboard, and the same pages as a plain HTTP client reads them.
Screenshots are saved where the test prints (README "Web view")."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests.conftest import Human, free_port, plugin_yaml, settings_yaml, stop_process, wait_for
from tests.web.browser import artifacts_dir, chromium, screenshot, text, texts

TIERS = {"canary": 1, "staging": 2, "prod": 5}
FAULTS = "sim:\n  upgradeSeconds: 0.05\n  faults:\n    - {version: \"1.6.0\", errorRate: 0.2}\n"
# Bakes long enough for a person (and the test) to watch each batch go by.
WATCH_POLICY = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: watch}
spec:
  order: {label: tier, values: [canary, staging, prod]}
  batches:
    - {name: canary, size: 1, bake: 3s}
    - {name: wave-1, size: 50%, bake: 3s}
    - {name: all, size: 100%, bake: 3s}
  maxParallel: 4
  instanceTimeout: 20s
  analysis:
    interval: 250ms
    metrics:
      - {name: error_rate, max: 0.05}
      - {name: latency_p99_ms, max: 500}
"""
WAIT = 120.0  # seconds: only bounds a failure


def child(tmp_path: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "reconciler.cli", *args], stdout=log, stderr=subprocess.STDOUT)


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8")


def answers(url: str) -> bool:
    try:
        return fetch(url)[0] == 200
    except OSError:
        return False


@pytest.fixture
def dashboard(fleet_repo: Human, tmp_path: Path) -> Iterator[str]:
    fleet_repo.commit("fleet: billing 1.5.0", {"grayops.yaml": settings_yaml(TIERS, FAULTS),
                                               "policies/watch.yaml": WATCH_POLICY,
                                               "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", "watch")})
    port = free_port()
    process = child(tmp_path, "dashboard", "dashboard", "--repo", str(fleet_repo.remote), "--port", str(port),
                    "--poll", "0.5", "--workdir", str(tmp_path / "view"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(base + "/") or process.poll() is not None, WAIT, "the dashboard to answer")
        assert process.poll() is None, (tmp_path / "dashboard.log").read_text()
        yield base
    finally:
        code = stop_process(process)
        log = (tmp_path / "dashboard.log").read_text()
        assert code == 0 and "Traceback" not in log, log


@pytest.fixture
def reconciler(fleet_repo: Human, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = child(tmp_path, "run", "run", "--repo", str(fleet_repo.remote), "--workdir", str(tmp_path / "work"),
                    "--interval", "0.1", "--poll", "0.3", "--no-progress")
    try:
        yield process
    finally:
        stop_process(process)


def phase_of(driver: webdriver.Chrome, plugin: str) -> str:
    return text(driver, f"#plugin-{plugin} .phase-text")


def progress(driver: webdriver.Chrome, element_id: str) -> tuple[str, str]:
    found = driver.find_element(By.ID, element_id)
    return str(found.get_attribute("value")), str(found.get_attribute("max"))


def kept_without_reload(driver: webdriver.Chrome) -> bool:
    """The marker set on the page before the change is still there: the page was updated, not loaded again."""
    return bool(driver.execute_script("return window.__grayopsMarker === 'set before the change'"))


def mark(driver: webdriver.Chrome) -> None:
    driver.execute_script("window.__grayopsMarker = 'set before the change'")


def focus_ring(driver: webdriver.Chrome) -> tuple[str, float]:
    style, width = driver.execute_script(
        "const s = getComputedStyle(document.activeElement); return [s.outlineStyle, parseFloat(s.outlineWidth)]")
    return str(style), float(width)


def console_errors(driver: webdriver.Chrome) -> list[str]:
    logs = driver.get_log("browser")  # type: ignore[no-untyped-call]  # selenium leaves get_log unannotated
    return [entry["message"] for entry in logs if entry["level"] == "SEVERE"]


def test_a_person_follows_a_rollout_and_a_rollback_live(fleet_repo: Human, tmp_path: Path, dashboard: str,
                                                        reconciler: subprocess.Popen[bytes]) -> None:
    shots = artifacts_dir(tmp_path)
    print(f"\nscreenshots of the web view: {shots}")
    human = fleet_repo
    with chromium() as driver:
        # The fleet page, open while the canary goes out: it follows the rollout without a reload.
        driver.get(dashboard + "/")
        assert driver.title == "Fleet · grayops"
        wait_for(lambda: text(driver, "#live").startswith("Live:"), WAIT, "the live updates to connect")
        mark(driver)
        wait_for(lambda: phase_of(driver, "billing") == "Progressing" and "canary" in text(
            driver, "#plugin-billing"), WAIT, "the canary, live on the fleet page")
        assert (text(driver, "#plugin-billing .from"), text(driver, "#plugin-billing .to")) == ("(none)", "1.5.0")
        screenshot(driver, shots, "1-fleet-canary")
        wait_for(lambda: phase_of(driver, "billing") == "Succeeded", WAIT, "the rollout to succeed, live")
        assert kept_without_reload(driver)
        assert int(driver.execute_script("return Number(document.body.dataset.updates)")) >= 2
        assert progress(driver, "batches-billing") == ("3", "3")
        assert progress(driver, "instances-billing") == ("8", "8")
        assert "✓" in text(driver, "#plugin-billing .badge")
        screenshot(driver, shots, "2-fleet-succeeded")

        # The keyboard: a visible focus ring on every link it reaches, and Enter follows the link.
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        assert driver.switch_to.active_element.text == "Skip to content"
        for _ in range(20):
            driver.switch_to.active_element.send_keys(Keys.TAB)
            active = driver.switch_to.active_element
            if active.tag_name == "a":
                style, width = focus_ring(driver)
                assert style != "none" and width >= 2, (active.text, style, width)
            if active.text == "billing":
                break
        assert driver.switch_to.active_element.text == "billing"
        screenshot(driver, shots, "3-fleet-keyboard-focus")
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        wait_for(lambda: driver.current_url.endswith("/rollouts/billing"), WAIT, "Enter to open the rollout")

        # The rollout page: batches, charts, the timeline, the report.
        wait_for(lambda: text(driver, "#live").startswith("Live:"), WAIT, "the live updates to connect")
        headings = texts(driver, "section.batch h3")
        assert headings == ["Batch 1: canary ✓ Passed", "Batch 2: wave-1 ✓ Passed", "Batch 3: all ✓ Passed"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart")) == 6  # 2 metrics x 3 batches
        assert "succeed" in texts(driver, "table.timeline .action")
        assert "billing 1.5.0: Succeeded" in text(driver, ".report")
        screenshot(driver, shots, "4-rollout-succeeded")

        # A bad version, watched on the rollout page: the rollback arrives live, on the timeline too.
        mark(driver)
        human.pull()
        human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0", "watch")})
        wait_for(lambda: text(driver, ".now .phase-text") == "RolledBack", WAIT, "the rollback, live")
        assert kept_without_reload(driver)
        assert text(driver, "h1") in ("billing 1.5.0 → 1.6.0", "billing 1.5.0 → to 1.6.0")
        rows = driver.find_elements(By.CSS_SELECTOR, "table.timeline tr.rollback")
        assert {row.find_element(By.CSS_SELECTOR, ".action").text for row in rows} >= {"rollback", "rolled-back"}
        # The rollback's own row (newest first; the revert of spec.version may already be above it).
        newest = next(row.text for row in rows if "revert" not in row.text)
        assert "↩" in newest and "grayops" in newest and "canary" in newest
        assert re.search(r"\b[0-9a-f]{10}\b", newest)  # the commit
        assert any("billing 1.6.0" in row.text and "Alice Ops" in row.text
                   for row in driver.find_elements(By.CSS_SELECTOR, "table.timeline tbody tr"))
        assert "error_rate 0.2 > max 0.05" in text(driver, "#batch-1 + .note + .reason") or \
            "error_rate 0.2 > max 0.05" in text(driver, "section.batch")
        wait_for(lambda: "billing 1.6.0: RolledBack" in text(driver, ".report"), WAIT, "the report of the rollback")
        screenshot(driver, shots, "5-rollout-rolled-back")

        # Instances: the grid, a tier chosen with the form, a cell that names its instance, its cluster.
        driver.get(dashboard + "/instances")
        cell = driver.find_element(By.CSS_SELECTOR, "table.grid td.cell[title^='canary-1/plugins billing']")
        assert cell.get_attribute("title") == "canary-1/plugins billing: 1.5.0 (RolledBack)"
        assert "s-back" in str(cell.get_attribute("class")) and "↩ 1.5.0" in cell.text
        screenshot(driver, shots, "6-instances")
        Select(driver.find_element(By.ID, "tier")).select_by_value("prod")
        driver.find_element(By.CSS_SELECTOR, ".tier-form button").click()
        wait_for(lambda: driver.current_url.endswith("/instances?tier=prod"), WAIT, "the prod tier")
        assert texts(driver, "table.grid tbody th[scope=row]") == [f"prod-{i}" for i in range(1, 6)]
        driver.find_element(By.CSS_SELECTOR, "table.grid td.cell a").click()
        wait_for(lambda: text(driver, "h1") == "Cluster prod-1", WAIT, "the cluster page")
        screenshot(driver, shots, "7-cluster")

        # History: the finished rollouts, newest first.
        driver.get(dashboard + "/history/billing")
        rows_text = texts(driver, "table.history tbody tr")
        assert [r.split()[:3] for r in rows_text] == [["1.6.0", "↩", "RolledBack"], ["1.5.0", "✓", "Succeeded"]]
        screenshot(driver, shots, "8-history")

        # Bad input: an unknown plugin, and a status file nobody can read (shown live on the open fleet page).
        driver.get(dashboard + "/rollouts/ghost")
        assert text(driver, "h1") == "No such plugin" and "known: billing" in text(driver, ".panel.error")
        screenshot(driver, shots, "9-unknown-plugin")
        driver.get(dashboard + "/")
        wait_for(lambda: text(driver, "#live").startswith("Live:"), WAIT, "the live updates to connect")
        human.pull()
        human.commit("a status file by hand", {"status/legacy.yaml": "phase: [Progressing\n"})
        wait_for(lambda: "status/legacy.yaml: unreadable status" in text(driver, "#plugin-legacy .panel.error"),
                 WAIT, "the error panel")
        assert phase_of(driver, "billing") == "RolledBack"
        screenshot(driver, shots, "10-malformed-status")
        # no script error, no refused resource (the Content-Security-Policy), but the 404 asked for above
        assert [e for e in console_errors(driver) if "/rollouts/ghost " not in e] == []

    # Without JavaScript, as a plain HTTP client fetches them, the pages read fully.
    status, fleet_html = fetch(dashboard + "/")
    assert status == 200
    assert re.search(r'id="plugin-billing".*RolledBack.*<progress id="instances-billing" max="8" value="1">',
                     fleet_html, re.S)
    assert "status/legacy.yaml: unreadable status" in fleet_html
    status, rollout_html = fetch(dashboard + "/rollouts/billing")
    assert status == 200 and '<tr class="current rollback">' in rollout_html and "rolled-back" in rollout_html
    assert fetch(dashboard + "/rollouts/ghost")[0] == 404
    assert reconciler.poll() is None  # the reconciler ran throughout
