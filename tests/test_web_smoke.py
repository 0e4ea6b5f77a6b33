"""Debian's Chromium starts headless under Playwright and runs our ES modules' syntax."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser


def test_chromium_runs_es_modules(browser: Any) -> None:
    page = browser.new_page()
    try:
        page.set_content(
            "<div id=out></div><script type=module>"
            "const m = new Map([['a', 1]]); document.getElementById('out').textContent ="
            " `ok ${m.get('a') ?? 0}`;</script>"
        )
        page.wait_for_function("document.getElementById('out').textContent !== ''")
        assert page.text_content("#out") == "ok 1"
        assert "Chrom" in browser.version or browser.version[0].isdigit()
    finally:
        page.close()
