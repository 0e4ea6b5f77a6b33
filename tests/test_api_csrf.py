"""Cookie safety (issue 17 item 17): a CSRF header, and Secure cookies behind HTTPS.

`POST /api/alerts/{n}/acknowledge` has no body and was accepted on the cookie alone, so a
forged cross-site form could acknowledge alerts wherever a browser ignores SameSite. Now a
cookie-authenticated POST/PATCH/DELETE without `X-Callwatch-Request` is refused 403 before the
route runs; Bearer clients and reads are unaffected. That the pages send the header is shown
by tests/test_web_board.py, where a supervisor acknowledges an alert in Chromium. The
`cw_token` cookie is Secure by default once an https:// public origin is configured.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.web.api.auth import COOKIE, CSRF_HEADER
from storage.repository import Repository
from tests.fixtures_api import ApiHarness, make_api


def test_cookie_post_without_the_header_is_refused(api: ApiHarness) -> None:
    api.client.cookies.set(COOKIE, api.tokens["supervisor"])
    r = api.client.post("/api/alerts/1/acknowledge")
    assert r.status_code == 403 and CSRF_HEADER in r.json()["detail"]
    assert api.client.post("/api/logout").status_code == 403  # still signed in after this
    assert api.client.get("/api/me").status_code == 200
    r = api.client.post("/api/alerts/1/acknowledge", headers={CSRF_HEADER: "1"})
    assert r.status_code not in (401, 403)  # past authentication: the route answers
    api.client.cookies.clear()
    r = api.client.post("/api/alerts/1/acknowledge", headers=api.headers("supervisor"))
    assert r.status_code not in (401, 403)


@pytest.mark.parametrize(("api_settings", "secure"), [
    ({}, False),
    ({"public_origins": ["https://qa.example.com"]}, True),
    ({"public_origins": ["https://qa.example.com"], "cookie_secure": False}, False),
    ({"public_origins": ["http://10.0.0.5:8080"]}, False),
    ({"cookie_secure": True}, True),
])  # fmt: skip
def test_cookie_is_secure_once_a_public_https_origin_is_configured(
    repo: Repository, tmp_path: Path, api_settings: dict[str, object], secure: bool
) -> None:
    harness = make_api(repo, tmp_path / "data", api=api_settings)
    with harness.client:
        r = harness.client.post(
            "/api/login", json={"username": "qa1", "password": "correct horse battery"}
        )
        flags = [f.strip().lower() for f in r.headers["set-cookie"].split(";")]
        assert ("secure" in flags) == secure, (api_settings, flags)
