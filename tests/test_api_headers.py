"""Security headers on the pages and the API, and the docs switch (issue 17 item 16).

Pages had no CSP, `X-Frame-Options` or `nosniff`, and /api/docs and /api/openapi.json were
public. Every response now carries the headers; the docs exist by default only on a loopback
API (`api.docs` sets it either way). Through the real app on a real database.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.web.api.headers import CSP
from storage.repository import Repository
from tests.fixtures_api import ApiHarness, make_api


@pytest.mark.parametrize(
    "path", ["/login", "/board", "/replay", "/static/login.js", "/api/calls", "/api/me", "/nowhere"]
)
def test_every_response_carries_the_security_headers(api: ApiHarness, path: str) -> None:
    r = api.client.get(path, headers=api.headers("admin"), follow_redirects=False)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    csp = r.headers["Content-Security-Policy"]
    assert csp == CSP and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_docs_on_a_loopback_api(api: ApiHarness) -> None:
    assert api.client.get("/api/openapi.json").status_code == 200
    assert api.client.get("/api/docs").status_code == 200


@pytest.mark.parametrize(("api_settings", "served"), [
    ({"host": "0.0.0.0"}, False),
    ({"host": "10.0.0.5"}, False),
    ({"host": "0.0.0.0", "docs": True}, True),
    ({"host": "127.0.0.1", "docs": False}, False),
])  # fmt: skip
def test_docs_off_by_default_beyond_loopback(
    repo: Repository, tmp_path: Path, api_settings: dict[str, object], served: bool
) -> None:
    harness = make_api(repo, tmp_path / "data", api=api_settings)
    with harness.client:
        for path in ("/api/openapi.json", "/api/docs"):
            code = harness.client.get(path, headers=harness.headers("admin")).status_code
            assert code == (200 if served else 404), (path, code)
