"""A real browser for the web view's tests: Debian's chromium driven by its chromium-driver through selenium,
headless, with a fresh profile and nothing that calls out to the network."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextmanager
def chromium(width: int = 1360, height: int = 900) -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="grayops-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                     "--disable-extensions", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                     "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def artifacts_dir(fallback: Path) -> Path:
    """Where screenshots go: $GRAYOPS_TEST_ARTIFACTS/web, else the test's own temporary directory."""
    root = os.environ.get("GRAYOPS_TEST_ARTIFACTS")
    folder = (Path(root) / "web") if root else fallback / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def text(driver: webdriver.Chrome, css: str) -> str:
    """The visible text of the first element matching `css`, whitespace folded; "" when there is none (or it was
    just swapped)."""
    try:
        return " ".join(str(driver.find_element(By.CSS_SELECTOR, css).text).split())
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def texts(driver: webdriver.Chrome, css: str) -> list[str]:
    try:
        return [" ".join(str(element.text).split()) for element in driver.find_elements(By.CSS_SELECTOR, css)]
    except StaleElementReferenceException:
        return []


def screenshot(driver: webdriver.Chrome, folder: Path, name: str) -> Path:
    """The whole page (the window grown to its height), saved as `name`.png."""
    width = int(driver.execute_script("return window.outerWidth"))
    driver.set_window_size(width, 600)  # measured from a short window: a tall one makes every page as tall
    height = int(driver.execute_script("return Math.min(6000, document.documentElement.scrollHeight)"))
    driver.set_window_size(width, max(600, height + 120))
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
