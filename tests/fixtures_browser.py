"""Playwright driving Debian's Chromium (pytest plugin): one browser per test module.

The browser is always `/usr/bin/chromium` (or CALLWATCH_TEST_CHROMIUM), installed by
scripts/test with apt-get; Playwright never downloads one. Outside CI a machine without it
skips the browser tests with the command that installs it; under CI=true scripts/test fails
on any skip, so there the browser tests always run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr_sim.harness import REPO_ROOT

CHROMIUM = Path(os.environ.get("CALLWATCH_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"


def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does it)")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    path = chromium_path()
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=str(path),
            headless=True,
            # no sandbox: CI containers run as root; no GPU on the test machines
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield b
        finally:
            b.close()


def screenshot(page: object, name: str) -> Path:
    """Save a full-page screenshot to docs/screenshots/NAME.png (shown in docs/board.md)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path
